#!/bin/bash
# Provision one Vagrant VM as a netprobe host (run by the Vagrantfile as root, re-runnable):
# install netprobe from the synced folder, install the cluster token and inventory, run the
# responder as a systemd service, and apply this host's firewall from the scenario with
# `netprobe lab firewall` -- the code the netns lab uses.
set -euo pipefail
: "${NETPROBE_HOST:?}" "${NETPROBE_SCENARIO:?}" "${NETPROBE_TOKEN:?}" "${NETPROBE_INVENTORY:?}"
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv nftables iptables ipset iproute2 >/dev/null

python3 -m venv /opt/netprobe
/opt/netprobe/bin/pip install -q --upgrade pip
/opt/netprobe/bin/pip install -q /vagrant
ln -sf /opt/netprobe/bin/netprobe /usr/local/bin/netprobe

install -d -m 0755 /etc/netprobe
( umask 077; printf '%s' "$NETPROBE_TOKEN" > /etc/netprobe/token )
printf '%s' "$NETPROBE_INVENTORY" > /etc/netprobe/inventory.yaml

install -m 0644 /vagrant/deploy/netprobe-responder.service /etc/systemd/system/netprobe-responder.service
systemctl daemon-reload
systemctl enable netprobe-responder.service
systemctl restart netprobe-responder.service

# Show, then apply, this host's part of the scenario (replaces what an earlier run loaded).
netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST" --dry-run
netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST"
echo "$NETPROBE_HOST: ready (responder on tcp/7879; inventory /etc/netprobe/inventory.yaml)"
