#!/usr/bin/env bash
# Build (or reuse) a local Vagrant box for the libvirt provider: Debian 12 with everything a
# netprobe VM needs preinstalled, because the lab's VMs have no network to install from.
#
#   tools/vm/build-box.sh CACHE_DIR [WHEELHOUSE]   # prints CACHE_DIR/netprobe-bookworm-KEY.box
#
# No box can be downloaded here, so it is made from Debian packages: mmdebstrap of bookworm, the
# vagrant user with Vagrant's insecure key, eth0 on DHCP (net.ifnames=0), an ssh host key made at
# first boot. The disk is a file with one MBR partition, filled by `mkfs.ext4 -d` at an offset
# (no loop device or partition scan needed) and made bootable by writing grub's boot.img and a
# core.img from `grub-mkimage` with dd. With a WHEELHOUSE (tools/vm/wheelhouse.sh), the box
# also carries /opt/netprobe: a venv with netprobe's dependencies installed and byte-compiled
# here, at native speed -- under TCG the VM itself needs minutes for `python3 -m venv` and pip;
# provisioning then installs only the netprobe wheel. KEY hashes this script and the names of
# the dependency wheels, so any change to either rebuilds the box.
set -euo pipefail
cache=${1:?usage: build-box.sh CACHE_DIR [WHEELHOUSE]}
wheelhouse=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
deps() { [ -z "$wheelhouse" ] || (cd "$wheelhouse" && ls *.whl | grep -v '^netprobe-' | sort); }
key=$( (cat "$here/build-box.sh"; deps) | sha256sum | cut -c1-12)
box="$cache/netprobe-bookworm-$key.box"
if [ -s "$box" ]; then echo "$box"; exit 0; fi

# >>> rootfs (this part's hash keys the cached rootfs tarball)
PACKAGES=linux-image-amd64,systemd-sysv,udev,openssh-server,sudo,python3,python3-venv,ifupdown,isc-dhcp-client,\
nftables,iptables,ipset,iproute2,kmod,procps,rsync,netbase,iputils-ping,tcpdump,less
SIZE_MB=4096
PART_START=2048   # sectors: the partition starts at 1 MiB; grub's core.img lives before it
ROOT_UUID=6e657470-726f-6265-0000-000000000001
vagrant_pub=$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -1)
[ -n "$vagrant_pub" ] || { echo "build-box: no vagrant.pub (is vagrant installed?)" >&2; exit 2; }

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
rootfs="$work/rootfs"
started=$(date +%s)
# the slow part (minutes) is cached apart: changing only the disk part costs no second mmdebstrap
tarball="$cache/rootfs-$(sed -n '/^# >>> rootfs/,/^# <<< rootfs/p' "$here/build-box.sh" | sha256sum | cut -c1-12).tar"
if [ ! -s "$tarball" ]; then
echo "build-box: mmdebstrap bookworm -> $tarball" >&2
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --customize-hook='echo netprobe-box > "$1/etc/hostname"' \
  --customize-hook="echo 'UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1' > \"\$1/etc/fstab\"" \
  --customize-hook='printf "auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n" > "$1/etc/network/interfaces"' \
  --customize-hook='chroot "$1" useradd -m -s /bin/bash -G sudo vagrant' \
  --customize-hook='echo "vagrant:vagrant" | chroot "$1" chpasswd' \
  --customize-hook='echo "vagrant ALL=(ALL) NOPASSWD: ALL" > "$1/etc/sudoers.d/vagrant"; chmod 440 "$1/etc/sudoers.d/vagrant"' \
  --customize-hook="install -d -m 700 -o 1000 -g 1000 \"\$1/home/vagrant/.ssh\"; install -m 600 -o 1000 -g 1000 $vagrant_pub \"\$1/home/vagrant/.ssh/authorized_keys\"" \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='mkdir -p "$1/etc/systemd/system/ssh.service.d"; printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" > "$1/etc/systemd/system/ssh.service.d/hostkeys.conf"' \
  --customize-hook='echo "UseDNS no" > "$1/etc/ssh/sshd_config.d/vagrant.conf"' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$tarball.part.tar" /etc/apt/sources.list.d/debian.sources
mv "$tarball.part.tar" "$tarball"
fi
# <<< rootfs
mkdir -p "$rootfs"
tar -C "$rootfs" -xpf "$tarball" --numeric-owner

# First boot makes one ECDSA host key, not ssh-keygen -A's three: RSA 3072 alone takes TCG long.
cat > "$rootfs/etc/systemd/system/ssh.service.d/hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c "test -s /etc/ssh/ssh_host_ecdsa_key || ssh-keygen -q -t ecdsa -N '' -f /etc/ssh/ssh_host_ecdsa_key"
ExecStartPre=/usr/sbin/sshd -t
UNIT
printf 'HostKey /etc/ssh/ssh_host_ecdsa_key\nUseDNS no\n' > "$rootfs/etc/ssh/sshd_config.d/vagrant.conf"
# What `systemd-analyze blame` showed slowest on a TCG boot and a lab VM does without.
for unit in e2scrub_reap.service getty-static.service e2scrub_all.timer fstrim.timer; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

if [ -n "$wheelhouse" ]; then
  echo "build-box: /opt/netprobe with netprobe's dependencies" >&2
  mkdir -p "$rootfs/tmp/wheels"
  cp "$wheelhouse"/*.whl "$rootfs/tmp/wheels/"
  chroot "$rootfs" python3 -m venv /opt/netprobe
  # shellcheck disable=SC2046
  chroot "$rootfs" /opt/netprobe/bin/pip install -q --no-index --find-links /tmp/wheels \
    $(deps | sed 's|^|/tmp/wheels/|')
  touch "$rootfs/opt/netprobe/.netprobe-deps"   # provisioning: install the netprobe wheel alone
  rm -rf "$rootfs/tmp/wheels"
fi

kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd=$(cd "$rootfs/boot" && ls initrd.img-* | sort -V | tail -1)
mkdir -p "$rootfs/boot/grub"
cp -r /usr/lib/grub/i386-pc "$rootfs/boot/grub/"
cat > "$rootfs/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
menuentry "Debian 12 (netprobe box)" {
  search --no-floppy --fs-uuid --set=root $ROOT_UUID
  linux /boot/$kernel root=UUID=$ROOT_UUID ro net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200 quiet
  initrd /boot/$initrd
}
CFG

echo "build-box: disk image" >&2
raw="$work/box.raw"
truncate -s ${SIZE_MB}M "$raw"
printf 'label: dos\nstart=%s, type=83, bootable\n' "$PART_START" | sfdisk -q "$raw"
fs_blocks=$(( (SIZE_MB * 1024 * 1024 - PART_START * 512) / 4096 ))
mkfs.ext4 -q -F -U "$ROOT_UUID" -L root -b 4096 -E offset=$((PART_START * 512)) -d "$rootfs" "$raw" "$fs_blocks"
grub-mkimage -O i386-pc -o "$work/core.img" -p "(hd0,msdos1)/boot/grub" \
  biosdisk part_msdos ext2 search search_fs_uuid normal configfile linux echo test
[ "$(stat -c %s "$work/core.img")" -lt $(( (PART_START - 1) * 512 )) ] || { echo "build-box: core.img too big" >&2; exit 1; }
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

echo "build-box: qcow2 + box" >&2
qemu-img convert -O qcow2 "$raw" "$work/box.img"
rm -f "$raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' $(( SIZE_MB / 1024 )) > "$work/metadata.json"
printf 'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |lv|\n    lv.disk_bus = "virtio"\n  end\nend\n' > "$work/Vagrantfile"
tar -C "$work" -cf "$work/box.tar" metadata.json Vagrantfile box.img
mv "$work/box.tar" "$box"
# one box and one rootfs in the cache: older ones are dead weight (about 1 GB each)
find "$cache" -maxdepth 1 \( -name 'netprobe-bookworm-*.box' ! -name "${box##*/}" \
  -o -name 'rootfs-*.tar' ! -name "${tarball##*/}" \) -delete
echo "build-box: $box in $(( $(date +%s) - started )) s" >&2
echo "$box"
