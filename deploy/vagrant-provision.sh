#!/bin/bash
# Provision one Vagrant VM as a netprobe host or router (run by the Vagrantfile as root,
# re-runnable): install netprobe from the synced folder (from NETPROBE_WHEELHOUSE when set:
# no network needed), then
#   host:   the cluster token and inventory, the responder as a systemd service, listeners on
#           the ports its roles serve and a VXLAN device for canal (as in the netns lab), routes
#           to other segments;
#   router: IPv4 forwarding, the MTU of its links where the scenario sets one;
# and for both this machine's part of the scenario's firewall, applied with
# `netprobe lab firewall` -- the code the netns lab uses.
set -euo pipefail
: "${NETPROBE_HOST:?}" "${NETPROBE_SCENARIO:?}" "${NETPROBE_TOKEN:?}" "${NETPROBE_INVENTORY:?}"
NETPROBE_ROUTER=${NETPROBE_ROUTER:-0}
NETPROBE_WHEELHOUSE=${NETPROBE_WHEELHOUSE:-}
export DEBIAN_FRONTEND=noninteractive
if [ "$(hostname)" != "$NETPROBE_HOST" ]; then  # (Vagrant does it, except under TCG)
  echo "$NETPROBE_HOST" > /etc/hostname
  hostname "$NETPROBE_HOST"
  sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
  echo "127.0.1.1 $NETPROBE_HOST" >> /etc/hosts
fi

need=""
for pkg in python3 python3-venv nftables iptables ipset iproute2; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need="$need $pkg"
done
if [ -n "$need" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

[ -x /opt/netprobe/bin/python ] || python3 -m venv /opt/netprobe
if [ -n "$NETPROBE_WHEELHOUSE" ]; then
  # offline: the wheel built from this checkout and its dependencies, nothing from an index
  # (a box from tools/vm/build-box.sh has the dependencies in /opt/netprobe already)
  deps=""; [ -e /opt/netprobe/.netprobe-deps ] && deps="--no-deps"
  /opt/netprobe/bin/pip install -q --no-index --find-links "/vagrant/$NETPROBE_WHEELHOUSE" --force-reinstall $deps \
    "/vagrant/$NETPROBE_WHEELHOUSE"/netprobe-*.whl
else
  /opt/netprobe/bin/pip install -q --upgrade pip
  /opt/netprobe/bin/pip install -q /vagrant
fi
ln -sf /opt/netprobe/bin/netprobe /usr/local/bin/netprobe

# What the netns lab would do for this machine, from the lab's own code: routes to the other
# segments (shortest path through the routers) and the TCP/UDP ports its roles serve.
plan=$(/opt/netprobe/bin/python - "$NETPROBE_SCENARIO" "$NETPROBE_HOST" <<'PY'
import sys
from netprobe.lab.plan import routes
from netprobe.lab.spec import load_scenario
spec = load_scenario(sys.argv[1])
me = sys.argv[2]
for subnet, gateway in routes(spec).get(me, []):
    print("route", subnet, gateway)
host = next((h for h in spec.hosts if h.name == me), None)
if host is not None:
    args = [a for p in host.services.tcp for a in ("--tcp", str(p))] + [a for p in host.services.udp for a in ("--udp", str(p))]
    print("listen", *args)
    if host.services.vxlan_vni is not None:
        print("vxlan", host.services.vxlan_vni, host.address)
for router in (r for r in spec.routers if r.name == me):
    for segment, mtu in router.mtus:  # the scenario's link MTUs (mtu-black-hole)
        print("mtu", router.address_on(segment), mtu)
PY
)
while read -r kind a b; do
  case "$kind" in
    route) ip route replace "$a" via "$b" ;;
    vxlan)  # flannel's device in a canal cluster, as the lab makes it (vxlan0, UDP 4789)
      dev=$(ip -o -4 addr show to "$b" | awk '{print $2; exit}')
      ip link show vxlan0 >/dev/null 2>&1 || ip link add vxlan0 type vxlan id "$a" dstport 4789 dev "$dev" local "$b"
      ip link set vxlan0 up ;;
    mtu)  # the interface holding this address
      ip link set dev "$(ip -o -4 addr show to "$a" | awk '{print $2; exit}')" mtu "$b" ;;
  esac
done <<<"$plan"

if [ "$NETPROBE_ROUTER" = 1 ]; then
  sysctl -qw net.ipv4.ip_forward=1
  echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-netprobe-router.conf
else
  install -d -m 0755 /etc/netprobe
  ( umask 077; printf '%s' "$NETPROBE_TOKEN" > /etc/netprobe/token )
  printf '%s' "$NETPROBE_INVENTORY" > /etc/netprobe/inventory.yaml

  install -m 0644 /vagrant/deploy/netprobe-responder.service /etc/systemd/system/netprobe-responder.service
  listen=$(sed -n 's/^listen *//p' <<<"$plan")
  if [ -n "$listen" ]; then
    # stand-ins for BIRD, Typha, the apiserver, etcd: a SYN to them gets a SYN-ACK, as in the lab
    sed "s|@ARGS@|$listen|" /vagrant/deploy/netprobe-listener.service > /etc/systemd/system/netprobe-listener.service
  fi
  systemctl daemon-reload
  systemctl enable -q netprobe-responder.service
  systemctl restart netprobe-responder.service
  if [ -n "$listen" ]; then
    systemctl enable -q netprobe-listener.service
    systemctl restart netprobe-listener.service
  fi
fi

systemd-analyze time 2>/dev/null || true   # how long this VM took to boot (under TCG: slow)

# Show, then apply, this machine's part of the scenario (replaces what an earlier run loaded).
# this VM is a lab host: `lab firewall` may replace its firewall (on any other host it refuses)
mkdir -p /etc/netprobe
printf '%s %s\n' "$NETPROBE_SCENARIO" "$NETPROBE_HOST" > /etc/netprobe/lab-host
netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST" --dry-run
netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST"
if [ "$NETPROBE_ROUTER" = 1 ]; then
  echo "$NETPROBE_HOST: router ready (forwarding)"
else
  echo "$NETPROBE_HOST: ready (responder on tcp/7879; inventory /etc/netprobe/inventory.yaml)"
fi
