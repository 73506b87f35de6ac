#!/usr/bin/env bash
# libvirt inside a network namespace (and a mount namespace) of its own, so nothing it makes --
# bridges, taps, dnsmasq, NAT chains, ip_forward -- lands in the root network namespace, and
# none of its state (/etc, /run, /var/lib, /var/log, /var/cache of libvirt) is shared with a
# libvirtd someone else runs on this machine.
#
#   libvirt-ns.sh start RUN_DIR NS     # netns NS + a holder process; virtlogd and libvirtd in it
#   libvirt-ns.sh exec  RUN_DIR CMD..  # run CMD inside (network and mount namespace)
#   libvirt-ns.sh stop  RUN_DIR NS     # domains, networks, every process in NS, NS, RUN_DIR
#
# The holder (`sleep infinity` in the new mount namespace, pid in RUN_DIR/holder.pid) keeps the
# bind mounts alive; `exec` enters it with nsenter. `stop` is safe to call twice and after a
# failed start.
set -euo pipefail
cmd=${1:?usage: libvirt-ns.sh start|exec|stop RUN_DIR ...}
run=${2:?RUN_DIR}
shift 2

holder() { local p; p=$(cat "$run/holder.pid" 2>/dev/null) && [ -d "/proc/$p" ] && echo "$p"; }

in_ns() {
  local p
  p=$(holder) || { echo "libvirt-ns: no holder process for $run" >&2; return 1; }
  # entering a mount namespace moves to its root directory: come back to the caller's
  nsenter -t "$p" -n -m -- env -C "$PWD" "$@"
}

case "$cmd" in
start)
  ns=${1:?NS}
  case "$ns" in npvm-*) ;; *) echo "libvirt-ns: namespace names start with npvm-" >&2; exit 2 ;; esac
  mkdir -p "$run"
  for d in etc run lib log cache; do mkdir -p "$run/libvirt/$d"; done
  cp -a /etc/libvirt/. "$run/libvirt/etc/"
  # no network or domain of the system's configuration; qemu as root without a security driver
  rm -f "$run/libvirt/etc/qemu/networks/"*.xml "$run/libvirt/etc/qemu/networks/autostart/"* "$run/libvirt/etc/qemu/"*.xml
  rm -rf "$run/libvirt/etc/storage"
  cat >> "$run/libvirt/etc/qemu.conf" <<'CONF'
# netprobe vm lab (tools/vm/libvirt-ns.sh)
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
CONF
  mkdir -p "$run/libvirt/lib/images"
  ip netns add "$ns"
  echo "$ns" > "$run/netns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" unshare --mount --propagation private -- sh -c '
    set -e
    r=$1
    mount --bind "$r/libvirt/etc" /etc/libvirt
    mount --bind "$r/libvirt/run" /run/libvirt 2>/dev/null || { mkdir -p /run/libvirt; mount --bind "$r/libvirt/run" /run/libvirt; }
    mount --bind "$r/libvirt/lib" /var/lib/libvirt
    mount --bind "$r/libvirt/log" /var/log/libvirt
    mkdir -p /var/cache/libvirt && mount --bind "$r/libvirt/cache" /var/cache/libvirt
    echo $$ > "$r/holder.pid"
    exec sleep infinity' sh "$run" </dev/null >"$run/holder.log" 2>&1 &
  for _ in $(seq 50); do holder >/dev/null && break; sleep 0.1; done
  holder >/dev/null || { echo "libvirt-ns: holder did not start: $(cat "$run/holder.log")" >&2; exit 1; }
  # qemu under nice: 2 cores shared with whatever else runs here
  in_ns virtlogd -d
  in_ns nice -n 10 libvirtd -d
  for _ in $(seq 100); do
    in_ns virsh -q -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.2
  done
  in_ns virsh -q -c qemu:///system version >/dev/null
  in_ns virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  in_ns virsh -q -c qemu:///system pool-start default >/dev/null
  echo "libvirt-ns: libvirtd up in $ns (state in $run/libvirt)" >&2
  ;;
exec)
  # exec: a signal to this process (a kill from the caller) reaches CMD itself
  p=$(holder) || { echo "libvirt-ns: no holder process for $run" >&2; exit 1; }
  exec nsenter -t "$p" -n -m -- env -C "$PWD" "$@"
  ;;
stop)
  ns=${1:-$(cat "$run/netns" 2>/dev/null || true)}
  if holder >/dev/null; then
    v() { in_ns timeout 60 virsh -q -c qemu:///system "$@" 2>/dev/null || true; }
    for d in $(v list --all --name); do
      v destroy "$d" >/dev/null; v undefine "$d" --remove-all-storage --nvram >/dev/null
    done
    for n in $(v net-list --all --name); do v net-destroy "$n" >/dev/null; v net-undefine "$n" >/dev/null; done
    v pool-destroy default >/dev/null; v pool-undefine default >/dev/null
  fi
  if [ -n "$ns" ] && [ -e "/run/netns/$ns" ]; then
    # everything in the namespace is ours: libvirtd, virtlogd, dnsmasq, qemu, ssh, the holder
    for sig in TERM KILL; do
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -z "$pids" ] && break
      kill -s "$sig" $pids 2>/dev/null || true
      for _ in $(seq 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
    done
    ip netns del "$ns"
  fi
  p=$(holder || true); [ -n "$p" ] && kill "$p" 2>/dev/null || true
  case "$run" in /*npvm-*) rm -rf "$run" ;; esac
  ;;
*) echo "libvirt-ns: unknown command $cmd" >&2; exit 2 ;;
esac
