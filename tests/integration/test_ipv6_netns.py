"""IPv6 between two real namespaces, with real nftables and ip6tables rules: a dual-stack pair
gives over IPv6 exactly the open / closed / filtered / rejected (and where) it gives over IPv4,
from the sender alone (`netprobe probe`) and with both ends' evidence (`netprobe mesh`). The
kernel facts the IPv6 captures rest on are checked on the way: a raw IPv6 socket of IPPROTO_RAW
sends our packet as built and gets EPERM from an OUTPUT drop, a raw IPv6 socket of a protocol is
fed only after INPUT accepted the packet, an ETH_P_IPV6 tap sees it before."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import run
from helpers import cells_of, stop_processes, veth_namespaces

pytestmark = pytest.mark.netns
NETPROBE = [sys.executable, "-m", "netprobe"]

LISTENER = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
    "s.bind(('::', int(sys.argv[1]))); s.listen(64); print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@dataclass
class DualPair:
    """Two dual-stack hosts on one veth: 198.18.<n>.1/.2 and 2001:db8:<n>::1/::2."""

    a: str
    b: str
    addr: dict = field(default_factory=dict)  # (host, family) -> address
    procs: list = field(default_factory=list)
    inventory: Path | None = None

    def exec(self, ns: str, cmd: list[str], **kw):
        return run(["ip", "netns", "exec", ns, *cmd], **kw)

    def nft(self, ns: str, ruleset: str) -> None:
        self.exec(ns, ["nft", "-f", "-"], input=ruleset)

    def listen(self, ns: str, port: int) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, str(port)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)

    def probe(self, family: int, checks: str, *extra: str) -> dict:
        """`netprobe probe` from a to b's address of ``family``: {check: cell}."""
        proc = self.exec(self.a, [*NETPROBE, "probe", self.addr[("b", family)], "--checks", checks, "--format",
                                  "json", "--timeout", "0.5", "--retries", "1", *extra], check=False)
        assert proc.returncode in (0, 1), proc.stderr
        return {c["check"]: c for c in json.loads(proc.stdout)["cells"]}


@pytest.fixture
def dual_pair():
    with veth_namespaces("np6", ipv6=True) as (a, b, addr_a, addr_b, addr6_a, addr6_b):
        pair = DualPair(a, b, {("a", 4): addr_a, ("b", 4): addr_b, ("a", 6): addr6_a, ("b", 6): addr6_b})
        try:
            yield pair
        finally:
            stop_processes(pair.procs)


STATE = ("reach", "where", "verdict")


def same_state(four: dict, six: dict) -> None:
    assert {k: four[k] for k in STATE} == {k: six[k] for k in STATE}, (four, six)


# ------------------------------------------------------------------ the sender alone


def test_probe_over_ipv6_gives_what_ipv4_gives_with_nft_inet_rules(dual_pair):
    """One `table inet` for both families (as Calico's nftables dataplane writes it): the same
    verdict, reach and where over IPv4 and IPv6; the IPv6 reject is ICMPv6 1/1 from the target."""
    dual_pair.listen(dual_pair.b, 179)
    dual_pair.nft(dual_pair.b, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 drop
    tcp dport 6443 reject with icmpx type admin-prohibited
  }
}
""")
    four = dual_pair.probe(4, "bgp,typha,etcd,apiserver")
    six = dual_pair.probe(6, "bgp,typha,etcd,apiserver")
    for check in four:
        same_state(four[check], six[check])
        assert six[check].get("family") == 6 and "family" not in four[check]
    assert (six["bgp"]["verdict"], six["bgp"]["reach"]) == ("open", "allowed")
    assert (six["typha"]["verdict"], six["typha"]["reach"]) == ("closed", "unknown")
    assert (six["etcd"]["verdict"], six["etcd"]["reach"]) == ("filtered", "unknown")
    assert six["etcd"]["evidence"]["attempts"] == 2
    assert six["apiserver"]["evidence"]["icmp"] == {"type": 1, "code": 1, "from": dual_pair.addr[("b", 6)]}
    assert four["apiserver"]["evidence"]["icmp"] == {"type": 3, "code": 13, "from": dual_pair.addr[("b", 4)]}
    assert (six["apiserver"]["reach"], six["apiserver"]["where"]) == ("blocked", "destination-ingress")


IP6TABLES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp --dport 2379 -j DROP
-A INPUT -p tcp --dport 6443 -j REJECT --reject-with icmp6-adm-prohibited
-A INPUT -p tcp --dport 5473 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp --dport 179 -j REJECT
COMMIT
"""


@pytest.mark.parametrize("restore", ["ip6tables-nft-restore", "ip6tables-legacy-restore"])
def test_ip6tables_drop_and_rejects(dual_pair, restore):
    if not shutil.which(restore):
        pytest.skip(f"{restore} is not installed")
    dual_pair.exec(dual_pair.b, [restore], input=IP6TABLES)
    six = dual_pair.probe(6, "etcd,apiserver,typha,bgp")
    assert six["etcd"]["verdict"] == "filtered"
    assert six["apiserver"]["verdict"] == "rejected" and six["apiserver"]["evidence"]["icmp"]["code"] == 1
    assert six["typha"]["verdict"] == "closed"  # a forged RST looks closed to the sender alone
    # ip6tables' default REJECT: ICMPv6 port unreachable (1/4) for a SYN: no TCP stack says that
    assert six["bgp"]["evidence"]["icmp"]["type"] == 1 and six["bgp"]["evidence"]["icmp"]["code"] == 4
    assert (six["bgp"]["reach"], six["bgp"]["where"], six["bgp"]["verdict"]) == \
        ("blocked", "destination-ingress", "rejected")
    # ip6tables governs IPv6 only: the same ports over IPv4 pass
    four = dual_pair.probe(4, "etcd,apiserver")
    assert {c["verdict"] for c in four.values()} == {"closed"}


def test_output_drop_on_the_sender_is_source_egress_over_ipv6_only(dual_pair):
    """A raw IPv6 socket's sendto fails with EPERM when this host's OUTPUT drops the packet."""
    dual_pair.nft(dual_pair.a, """
table inet filter {
  chain output { type filter hook output priority 0; meta nfproto ipv6 tcp dport 179 drop; }
}
""")
    six, four = dual_pair.probe(6, "bgp"), dual_pair.probe(4, "bgp")
    assert (six["bgp"]["reach"], six["bgp"]["where"]) == ("blocked", "source-egress")
    assert six["bgp"]["evidence"]["sent"] is False and "not permitted" in six["bgp"]["evidence"]["send_error"]
    assert four["bgp"]["evidence"]["sent"] is True


def test_input_drop_of_the_syn_ack_on_the_sender_is_return_path_over_ipv6(dual_pair):
    dual_pair.listen(dual_pair.b, 179)
    dual_pair.nft(dual_pair.a, """
table ip6 filter {
  chain input { type filter hook input priority 0; tcp sport 179 tcp flags & (syn|ack) == syn|ack drop; }
}
""")
    bgp = dual_pair.probe(6, "bgp")["bgp"]
    assert bgp["evidence"]["reply_arrived"] is True and bgp["evidence"]["reply_accepted"] is False
    assert (bgp["reach"], bgp["where"]) == ("blocked", "return-path")
    assert dual_pair.probe(4, "bgp")["bgp"]["reach"] == "allowed"


# ------------------------------------------------------------------ both ends: responders and the mesh


@pytest.fixture
def dual_mesh(dual_pair, tmp_path):
    token = tmp_path / "token"
    token.write_text("integration-token-0123456789\n")
    hosts = []
    for name, ns in (("a", dual_pair.a), ("b", dual_pair.b)):
        sock = tmp_path / f"{name}.sock"
        dual_pair.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, *NETPROBE, "responder", "--listen", f"unix:{sock}", "--token-file",
             str(token), "--name", name], stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w")))
        hosts.append(f"  - {{name: {name}, address: {dual_pair.addr[(name, 4)]}, "
                     f"address6: '{dual_pair.addr[(name, 6)]}', roles: [node, etcd, apiserver, typha], "
                     f"agent: 'unix:{sock}'}}")
    dual_pair.inventory = tmp_path / "inventory.yaml"
    dual_pair.inventory.write_text("token_file: token\nhosts:\n" + "\n".join(hosts) + "\n")
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"{n}.sock").exists() for n in "ab"):
        logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
        assert time.monotonic() < deadline and all(p.poll() is None for p in dual_pair.procs), logs
        time.sleep(0.1)
    return dual_pair


def mesh(pair, *args) -> tuple[int, dict, dict]:
    proc = subprocess.run([*NETPROBE, "mesh", "-i", str(pair.inventory), "--format", "json", "--timeout", "0.5",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    return proc.returncode, {(c["check"], c["src"], c["dst"], c.get("family", 4)): c for c in cells_of(doc)}, doc


def test_mesh_over_ipv6_gives_what_ipv4_gives(dual_mesh):
    """The same rules for both families on b: every IPv6 cell shows what its IPv4 twin shows,
    with the responder's evidence (a filtered SYN arrived on b's tap and never reached b's raw
    IPv6 socket: raw IPv6 sockets are fed after INPUT). A forged RST is rejected at ingress, a
    SYN-ACK dropped by a's own INPUT is the return path, UDP and VXLAN are echoed."""
    dual_mesh.listen(dual_mesh.b, 179)
    dual_mesh.nft(dual_mesh.b, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 drop
    tcp dport 6443 reject with icmpx type admin-prohibited
    tcp dport 5473 reject with tcp reset
  }
}
""")
    dual_mesh.nft(dual_mesh.a, """
table inet filter {
  chain input { type filter hook input priority 0; policy accept; tcp sport 179 tcp flags & (syn|ack) == syn|ack drop; }
}
""")
    code, cells, doc = mesh(dual_mesh, "--checks", "bgp,etcd,apiserver,typha,vxlan,wireguard,wireguard6")
    assert code == 1
    for (check, src, dst, family), six in cells.items():
        if family == 6 and check != "wireguard6":
            same_state(cells[(check, src, dst, 4)], six)
    assert not any(k[0] == "wireguard6" and k[3] == 4 for k in cells) and not any(
        k[0] == "wireguard" and k[3] == 6 for k in cells)
    etcd = cells[("etcd", "a", "b", 6)]
    assert (etcd["reach"], etcd["where"], etcd["verdict"]) == ("blocked", "destination-ingress", "filtered")
    assert etcd["evidence"]["arrived"] is True and etcd["evidence"]["accepted"] is False
    api = cells[("apiserver", "a", "b", 6)]
    assert (api["reach"], api["where"], api["verdict"]) == ("blocked", "destination-ingress", "rejected")
    assert api["evidence"]["icmp"] == {"type": 1, "code": 1, "from": dual_mesh.addr[("b", 6)]}
    typha = cells[("typha", "a", "b", 6)]
    assert (typha["reach"], typha["where"], typha["verdict"]) == ("blocked", "destination-ingress", "rejected")
    bgp = cells[("bgp", "a", "b", 6)]
    assert (bgp["reach"], bgp["where"]) == ("blocked", "return-path")
    assert bgp["evidence"]["accepted"] is True and bgp["evidence"]["reply_arrived"] is True
    for check in ("wireguard6", "vxlan"):
        for src, dst in (("a", "b"), ("b", "a")):
            cell = cells[(check, src, dst, 6)]
            assert (cell["reach"], cell["verdict"]) == ("allowed", "answered"), cell
            assert cell["evidence"]["accepted"] is True
    assert cells[("bgp", "b", "a", 6)]["reach"] == "allowed"  # closed on a, but the flow passes
    # the result: a matrix per check and family, the IPv6 ones marked
    assert ("wireguard6", 6) in [(m["check"], m.get("family")) for m in doc["matrices"]]
    assert doc["hosts"][1]["address6"] == dual_mesh.addr[("b", 6)]


def test_the_table_shows_a_matrix_per_check_and_family(dual_mesh):
    dual_mesh.nft(dual_mesh.b, """
table inet filter {
  chain input { type filter hook input priority 0; meta nfproto ipv6 tcp dport 2379 drop; }
}
""")
    proc = subprocess.run([*NETPROBE, "mesh", "-i", str(dual_mesh.inventory), "--checks", "etcd", "--timeout",
                           "0.5", "--color", "never"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "etcd: etcd datastore, tcp/2379" in proc.stdout and "etcd (IPv6): etcd datastore, tcp/2379" in proc.stdout
    assert "etcd (IPv6) a -> b blocked at b's INPUT (filtered)" in proc.stdout
    assert "etcd a -> b" not in proc.stdout.replace("etcd a -> b allowed", "")


# ------------------------------------------------------------------ routed: a router forwarding IPv6

ROUTED = """
name: routed6
profile: calico
segments:
  - {name: ra, subnet: 198.18.1.0/24, subnet6: "2001:db8:1::/64", hosts: [cp1, node1]}
  - {name: rb, subnet: 198.18.2.0/24, subnet6: "2001:db8:2::/64", hosts: [node2]}
routers:
  - name: core
    segments: [ra, rb]
    firewall:
      nft: |
        table inet filter {
            chain forward {
                type filter hook forward priority filter; policy accept;
                meta nfproto ipv6 tcp dport 179 drop comment "the core drops BGP over IPv6"
            }
        }
hosts:
  - {name: cp1, roles: [node, apiserver, etcd]}
  - {name: node1, roles: [node, typha]}
  - {name: node2, roles: [node]}
"""


def test_a_router_forwards_ipv6_and_its_drop_is_in_the_network():
    """Two dual-stack segments behind a router that forwards both families: IPv6 crosses it
    (routes and forwarding set by the lab), and its IPv6-only BGP drop shows as `network` on the
    IPv6 cells across it, nowhere else."""
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.config import inventory_token, load_inventory
    import trio

    scenario = parse_scenario(ROUTED, source="routed6.yaml")
    with running_lab(scenario, f"np6-{uuid.uuid4().hex[:4]}") as lab:
        start_responders(lab, [h.name for h in scenario.hosts])
        inventory = load_inventory(str(lab.inventory_path))
        trio.run(wait_for_agents, inventory, inventory_token(inventory))
        proc = subprocess.run([*NETPROBE, "mesh", "-i", str(lab.inventory_path), "--format", "json", "--timeout",
                               "0.5", "--checks", "bgp,etcd"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        cells = {(c["check"], c["src"], c["dst"], c.get("family", 4)): c for c in cells_of(json.loads(proc.stdout))}
    blocked = {k for k, c in cells.items() if c["reach"] != "allowed"}
    # across the router, BGP over IPv6 only; within segment ra it passes over both families
    assert blocked == {("bgp", a, b, 6) for a, b in (("cp1", "node2"), ("node1", "node2"), ("node2", "cp1"),
                                                     ("node2", "node1"))}
    assert all(cells[k]["where"] == "network" for k in blocked)
    assert cells[("etcd", "node2", "cp1", 6)]["reach"] == "allowed"  # IPv6 is routed through the core
    assert cells[("bgp", "cp1", "node1", 6)]["reach"] == "allowed"


# ------------------------------------------------------------------ the kernel facts, one by one

WATCH6 = """
import json, select, socket, sys, time
from netprobe.core import bpf
from netprobe.core.parse import parse_packet_untrusted, ip_str
from netprobe.core.wire import ETH_P_IPV6
from netprobe.net import sockets
marker = int(sys.argv[1])
tap = sockets.open_tap(bpf.responder_filter6(tap=True, marker=marker), ETH_P_IPV6)
raw = sockets.open_raw6_listener(6, bpf.responder_filter6(tap=False, marker=marker, proto=6))
print("ready", flush=True)
seen = {"tap": [], "raw": []}
end = time.monotonic() + 2
while time.monotonic() < end:
    for s in select.select([tap, raw], [], [], 0.1)[0]:
        if s is tap:
            pkt = parse_packet_untrusted(tap.recv(65535))
            seen["tap"].append([pkt.dport, ip_str(pkt.dst)])
        else:
            data, src, dst = sockets.recv_raw6(raw)
            seen["raw"].append([int.from_bytes(data[2:4], "big"), ip_str(src), ip_str(dst)])
print(json.dumps(seen), flush=True)
"""

SEND6 = """
import json, sys
from netprobe.core import cookies
from netprobe.core.templates import TcpSyn6Template
from netprobe.net import sockets
src, dst, marker = sys.argv[1], sys.argv[2], int(sys.argv[3])
sender = sockets.open_sender6()
sender.setblocking(True)
errors = []
for port in (179, 2379, 6443):
    sport = 40000 + port
    syn = TcpSyn6Template(src, dst, port).build(sport, 1, cookies.syn_ip_id(marker, sport), 2)
    errors.append(sockets.send_packet(sender, syn, dst))
print(json.dumps(errors))
"""


def test_raw_ipv6_sockets_see_what_input_accepted_and_send_what_output_allows(dual_pair):
    """The facts the IPv6 captures rest on, with the sockets netprobe opens: b's ETH_P_IPV6 tap
    sees every SYN, b's raw IPv6 TCP socket only what b's INPUT accepted (2379 dropped), with
    its source and, from IPV6_PKTINFO, its destination; a's IPPROTO_RAW sender gets EPERM for
    what a's OUTPUT drops (6443) and sends the rest as built."""
    marker = 0x5A5A
    dual_pair.nft(dual_pair.b, "table ip6 f {\n chain i { type filter hook input priority 0; tcp dport 2379 drop; }\n}\n")
    dual_pair.nft(dual_pair.a, "table ip6 f {\n chain o { type filter hook output priority 0; tcp dport 6443 drop; }\n}\n")
    watch = subprocess.Popen(["ip", "netns", "exec", dual_pair.b, sys.executable, "-c", WATCH6, str(marker)],
                             stdout=subprocess.PIPE, text=True)
    dual_pair.procs.append(watch)
    assert watch.stdout.readline().strip() == "ready"
    a6, b6 = dual_pair.addr[("a", 6)], dual_pair.addr[("b", 6)]
    sent = dual_pair.exec(dual_pair.a, [sys.executable, "-c", SEND6, a6, b6, str(marker)]).stdout
    import errno

    assert json.loads(sent) == [None, None, errno.EPERM]
    seen = json.loads(watch.stdout.readline())
    assert sorted(seen["tap"]) == [[179, b6], [2379, b6]]
    assert seen["raw"] == [[179, a6, b6]]
