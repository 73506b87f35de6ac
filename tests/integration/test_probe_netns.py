"""`netprobe probe` between two real namespaces: every sender-side verdict against real rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns

LISTENER = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(64); print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def listen(pair, ns: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def probe(pair, checks: str, *extra: str) -> dict:
    proc = pair.netprobe(pair.a, ["probe", pair.addr_b, "--checks", checks, "--format", "json",
                                  "--timeout", "0.5", "--retries", "1", *extra])
    assert proc.returncode in (0, 1), proc.stderr
    return {c["check"]: c for c in json.loads(proc.stdout)["cells"]}


def test_open_closed_filtered_rejected_with_nft(netns_pair):
    listener = listen(netns_pair, netns_pair.b, 179)
    try:
        netns_pair.nft(netns_pair.b, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 drop
    tcp dport 6443 reject with icmp type admin-prohibited
  }
}
""")
        cells = probe(netns_pair, "bgp,typha,etcd,apiserver")
    finally:
        listener.kill()
    assert cells["bgp"]["verdict"] == "open" and cells["bgp"]["reach"] == "allowed"
    assert cells["typha"]["verdict"] == "closed" and cells["typha"]["reach"] == "unknown"
    assert cells["etcd"]["verdict"] == "filtered" and cells["etcd"]["reach"] == "unknown"
    assert cells["etcd"]["evidence"]["attempts"] == 2
    api = cells["apiserver"]
    assert api["verdict"] == "rejected"
    assert api["evidence"]["icmp"] == {"type": 3, "code": 13, "from": netns_pair.addr_b}
    assert (api["reach"], api["where"]) == ("blocked", "destination-ingress")


def test_forged_tcp_reset_looks_closed_to_the_sender_alone(netns_pair):
    netns_pair.nft(netns_pair.b, """
table inet filter {
  chain input { type filter hook input priority 0; tcp dport 2379 reject with tcp reset; }
}
""")
    cells = probe(netns_pair, "etcd")
    assert cells["etcd"]["verdict"] == "closed"
    assert cells["etcd"]["reach"] == "unknown"


IPTABLES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 2379 -j DROP
-A INPUT -p tcp --dport 6443 -j REJECT --reject-with icmp-admin-prohibited
-A INPUT -p tcp --dport 5473 -j REJECT --reject-with tcp-reset
COMMIT
"""


@pytest.mark.parametrize("restore", ["iptables-nft-restore", "iptables-legacy-restore"])
def test_iptables_drop_and_rejects(netns_pair, restore):
    if not shutil.which(restore):
        pytest.skip(f"{restore} is not installed")
    netns_pair.exec(netns_pair.b, [restore], input=IPTABLES)
    cells = probe(netns_pair, "etcd,apiserver,typha")
    assert cells["etcd"]["verdict"] == "filtered"
    assert cells["apiserver"]["verdict"] == "rejected"
    assert cells["apiserver"]["evidence"]["icmp"]["code"] == 13
    assert cells["typha"]["verdict"] == "closed"


def test_output_drop_on_sender_is_source_egress(netns_pair):
    netns_pair.nft(netns_pair.a, """
table inet filter {
  chain output { type filter hook output priority 0; tcp dport 179 drop; }
}
""")
    cells = probe(netns_pair, "bgp")
    assert (cells["bgp"]["reach"], cells["bgp"]["where"]) == ("blocked", "source-egress")
    assert cells["bgp"]["evidence"]["sent"] is False


def test_input_drop_of_syn_ack_on_sender_is_return_path(netns_pair):
    listener = listen(netns_pair, netns_pair.b, 179)
    try:
        netns_pair.nft(netns_pair.a, """
table inet filter {
  chain input { type filter hook input priority 0; tcp sport 179 tcp flags & (syn|ack) == syn|ack drop; }
}
""")
        cells = probe(netns_pair, "bgp")
    finally:
        listener.kill()
    bgp = cells["bgp"]
    assert bgp["evidence"]["reply_arrived"] is True
    assert bgp["evidence"]["reply_accepted"] is False
    assert (bgp["reach"], bgp["where"]) == ("blocked", "return-path")


def test_vxlan_and_ipip_probes_leave_a_kernel_vxlan_device_working(netns_pair):
    """Both hosts run a kernel VXLAN device on 4789 with an overlay between them: the probes
    arrive (tcpdump on b), and the overlay still carries traffic afterwards."""
    from pyroute2 import NetNS

    overlay = {netns_pair.a: ("198.19.0.1", netns_pair.addr_b), netns_pair.b: ("198.19.0.2", netns_pair.addr_a)}
    for ns, (address, remote) in overlay.items():
        with NetNS(ns) as ipr:
            eth = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("add", ifname="vxlan1", kind="vxlan", vxlan_id=1, vxlan_link=eth, vxlan_port=4789,
                     vxlan_group=remote)
            idx = ipr.link_lookup(ifname="vxlan1")[0]
            ipr.addr("add", index=idx, address=address, prefixlen=24)
            ipr.link("set", index=idx, state="up")
    tcpdump = subprocess.Popen(["ip", "netns", "exec", netns_pair.b, "tcpdump", "-l", "-n", "-i", "eth0",
                                "-c", "2", f"src {netns_pair.addr_a} and ((udp dst port 4789 and udp[58:4] = 0x4e505242) or ip proto 4)"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.5)
    try:
        cells = probe(netns_pair, "vxlan,ipip")
        out, _ = tcpdump.communicate(timeout=10)
    finally:
        tcpdump.kill()
    lines = [line for line in out.splitlines() if line[:1].isdigit()]  # a timestamp starts each packet
    assert len(lines) == 2, out
    assert sum("VXLAN" in line for line in lines) == 1, out
    # the IPIP probe: an IP packet whose payload tcpdump prints as another IP packet
    assert sum(": IP " in line and "VXLAN" not in line for line in lines) == 1, out
    assert cells["vxlan"]["evidence"]["sent"] is True and cells["ipip"]["evidence"]["sent"] is True
    # without a responder the sender alone can't claim reach for a silently consumed VXLAN probe
    assert cells["vxlan"]["reach"] == "unknown"
    ping = netns_pair.exec(netns_pair.a, ["ping", "-c", "2", "-W", "1", "198.19.0.2"], check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


# ------------------------------------------------------------------ below IP (netdev/tc hooks)

EGRESS_DROP = """
table netdev edge {
  chain egress {
    type filter hook egress device "eth0" priority 0; policy accept;
    tcp dport 179 drop
    udp dport { 4789, 51820 } drop
    ip protocol ipencap drop
  }
}
"""


def test_probes_dropped_by_a_netdev_egress_chain_never_left(netns_pair):
    """The raw sends succeed (the kernel swallows the drop below IP); the sender's own tap never
    sees them leave: source-egress, for TCP, UDP, VXLAN and IPIP alike -- from the sender alone."""
    netns_pair.nft(netns_pair.a, EGRESS_DROP)
    cells = probe(netns_pair, "bgp,vxlan,wireguard,ipip,etcd")
    for check in ("bgp", "vxlan", "wireguard", "ipip"):
        cell = cells[check]
        assert (cell["reach"], cell["where"]) == ("blocked", "source-egress"), cell
        assert (cell["evidence"]["sent"], cell["evidence"]["left"]) == (True, False), cell
        assert cell["evidence"]["attempts"] == 2  # retried like any silent probe: no attempt left
    etcd = cells["etcd"]  # not dropped: it left, and b's closed port answered
    assert etcd["evidence"]["left"] is True and etcd["where"] is None


def test_a_netdev_ingress_drop_at_the_target_is_no_place_the_sender_alone_can_name(netns_pair):
    netns_pair.nft(netns_pair.b, """
table netdev edge {
  chain ingress { type filter hook ingress device "eth0" priority 0; policy accept; tcp dport 179 drop; }
}
""")
    bgp = probe(netns_pair, "bgp")["bgp"]
    assert bgp["evidence"]["left"] is True
    assert (bgp["reach"], bgp["where"]) == ("unknown", None)


def test_a_probe_held_by_an_unresolved_neighbour_is_no_egress_drop(netns_pair):
    """Nobody owns the address: the kernel queues the probes while ARP asks in vain, so they are
    never seen leaving -- yet no filter dropped them, and netprobe must not say source-egress."""
    nobody = netns_pair.addr_b.rsplit(".", 1)[0] + ".77"
    proc = netns_pair.netprobe(netns_pair.a, ["probe", nobody, "--checks", "bgp,vxlan", "--format", "json",
                                              "--timeout", "0.5", "--retries", "1"])
    assert proc.returncode == 0, proc.stderr  # unknown, the sender alone's normal answer: no failure
    for cell in json.loads(proc.stdout)["cells"]:
        assert cell["evidence"]["left"] is None, cell
        assert (cell["reach"], cell["where"]) == ("unknown", None), cell
