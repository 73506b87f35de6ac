"""Responders in two namespaces and `netprobe mesh` over unix sockets: both ends' evidence."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import cells_of

pytestmark = pytest.mark.netns


def mesh(pair, *args) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "netprobe", "mesh", "-i", str(pair.inventory), "--format", "json",
                           "--timeout", "0.5", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1, 3), proc.stderr
    result = json.loads(proc.stdout)
    return proc.returncode, {(c["check"], c["src"], c["dst"]): c for c in cells_of(result)}


def test_forged_reset_and_return_path_and_encapsulation(mesh_pair):
    mesh_pair.nft(mesh_pair.b, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 reject with tcp reset
  }
}
""")
    mesh_pair.nft(mesh_pair.a, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp sport 5473 tcp flags & (syn|ack|rst) != 0 drop
  }
}
""")
    code, cells = mesh(mesh_pair, "--checks", "bgp,etcd,typha,ipip,vxlan")
    assert code == 1
    etcd = cells[("etcd", "a", "b")]
    assert (etcd["reach"], etcd["where"], etcd["verdict"]) == ("blocked", "destination-ingress", "rejected")
    assert etcd["evidence"]["arrived"] is True and etcd["evidence"]["accepted"] is False
    assert cells[("etcd", "b", "a")]["reach"] == "allowed"  # a closed port, but the flow passes
    assert cells[("etcd", "b", "a")]["verdict"] == "closed"
    typha = cells[("typha", "a", "b")]
    assert (typha["reach"], typha["where"]) == ("blocked", "return-path")
    for check in ("ipip", "vxlan"):
        for src, dst in (("a", "b"), ("b", "a")):
            cell = cells[(check, src, dst)]
            assert cell["reach"] == "allowed", cell
            assert cell["verdict"] == "answered", cell
    assert cells[("bgp", "a", "b")]["reach"] == "allowed"


def count_echoes(pair, ns: str, src: str, run) -> int:
    """Run ``run()`` while tcpdump in ``ns`` counts packets from ``src`` carrying our magic: in
    UDP, VXLAN (after UDP, VXLAN, Ethernet, IPv4, UDP) or IPIP (after both IPv4 headers and UDP)."""
    magic = "0x4e505242"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-l", "-n", "-i", "eth0",
                             f"src {src} and ((udp and (udp[8:4] = {magic} or udp[58:4] = {magic})) "
                             f"or (ip proto 4 and ip[48:4] = {magic}))"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.5)
        run()
        time.sleep(0.5)
    finally:
        dump.terminate()
        out, _ = dump.communicate(timeout=5)
    return len([line for line in out.splitlines() if line.strip()])


def test_unauthenticated_probes_get_no_answer(mesh_pair, tmp_path):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-cluster-token\n")

    def probe_with(token_file):
        def run():
            proc = mesh_pair.netprobe(mesh_pair.a, ["probe", mesh_pair.addr_b, "--checks", "ipip,vxlan",
                                                   "--timeout", "0.3", "--retries", "2", "--token-file", str(token_file)])
            assert proc.returncode in (0, 1), proc.stderr
        return run

    assert count_echoes(mesh_pair, mesh_pair.a, mesh_pair.addr_b, probe_with(wrong)) == 0
    # positive control: the cluster token gets its echoes (one per probe kind at least)
    assert count_echoes(mesh_pair, mesh_pair.a, mesh_pair.addr_b, probe_with(mesh_pair.inventory.parent / "token")) >= 2


def test_killing_an_agent_mid_mesh_exits_3_with_the_rest_right(mesh_pair):
    # etcd silently dropped both ways and nothing answered: no RTT to adapt to, so both agents
    # wait their full 2 s windows, and b's responder dies in the middle of them
    for ns in (mesh_pair.a, mesh_pair.b):
        mesh_pair.nft(ns, "table inet f {\n chain i { type filter hook input priority 0; tcp dport 2379 drop; }\n}\n")
    mesh_proc = subprocess.Popen([sys.executable, "-m", "netprobe", "mesh", "-i", str(mesh_pair.inventory),
                                  "--format", "json", "--checks", "etcd", "--timeout", "2", "--retries", "0"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    mesh_pair.procs[1].kill()
    out, err = mesh_proc.communicate(timeout=60)
    assert mesh_proc.returncode == 3, err
    result = json.loads(out)
    assert [e["host"] for e in result["errors"]] == ["b"]
    cells = {(c["check"], c["src"], c["dst"]): c for c in cells_of(result)}
    assert (cells[("etcd", "b", "a")]["reach"], cells[("etcd", "b", "a")]["verdict"]) == ("unknown", "error")
    # a's agent lived: its cell keeps a's evidence (sent, silence), without b's half
    a_to_b = cells[("etcd", "a", "b")]
    assert a_to_b["evidence"]["sent"] is True and a_to_b["evidence"]["arrived"] is None
    assert (a_to_b["reach"], a_to_b["verdict"]) == ("unknown", "filtered")


def test_custom_udp_check_from_the_inventory(mesh_pair):
    """A custom UDP check (no listener on the port): the responder's echo proves the flow; a
    drop on b's INPUT for that port is blocked at destination-ingress."""
    text = mesh_pair.inventory.read_text() + "checks:\n  - {id: metrics, proto: udp, port: 9999}\n"
    mesh_pair.inventory.write_text(text)
    mesh_pair.nft(mesh_pair.b, "table inet f {\n chain i { type filter hook input priority 0; udp dport 9999 drop; }\n}\n")
    code, cells = mesh(mesh_pair, "--checks", "metrics")
    assert code == 1
    a_to_b, b_to_a = cells[("metrics", "a", "b")], cells[("metrics", "b", "a")]
    assert (b_to_a["reach"], b_to_a["verdict"]) == ("allowed", "answered")
    assert (a_to_b["reach"], a_to_b["where"]) == ("blocked", "destination-ingress")
    assert a_to_b["evidence"]["arrived"] is True and a_to_b["evidence"]["accepted"] is False


def test_agents_report_their_own_queue_drops(mesh_pair):
    """Each reply says how much this host's own queues dropped while the run was on (core/queues.py),
    read in the agent's namespace: the mesh weighs it against the cells that got no answer."""
    import trio

    from netprobe.agent.client import AgentClient
    from netprobe.agent.protocol import ProbeRequest
    from netprobe.core.checks import CHECKS
    from netprobe.core.mesh_logic import Peer

    sock = mesh_pair.inventory.parent / "a.sock"
    request = ProbeRequest("queues", (Peer("b", mesh_pair.addr_b, ("bgp",)),), (CHECKS["bgp"],), 0.2, 0)

    async def main():
        async with AgentClient(f"unix:{sock}", token="integration-token-0123456789") as agent:
            return await agent.run_probes(request), await agent.observations("queues")

    sent, seen = trio.run(main)
    for stats in (sent.stats.counters, seen.stats.counters):
        # a namespace of its own: its interfaces' drops, not the machine's backlogs
        assert {"queue_drops", "link_dropped", "ip_out_discards", "echo_send_dropped"} <= stats.keys()
        assert "softnet_dropped" not in stats
        assert stats["queue_drops"] >= 0
# ------------------------------------------------------------------ below IP (netdev/tc hooks)


def tc_drop(pair, ns: str, direction: str, proto: int, port: int) -> None:
    """A tc filter on ``ns``'s eth0 (``direction``: ingress or egress) that drops IPv4 ``proto``
    to ``port``: a BPF program in direct-action mode answering TC_ACT_SHOT, as an eBPF dataplane's
    does (classic BPF, made with netprobe's own assembler: this kernel has no flower, no gact)."""
    from netprobe.core.bpf import ABS, B, H, IND, JEQ, JMP, K, LD, LDX, MSH, RET, Insn, assemble

    prog = assemble([
        Insn(LD | H | ABS, 12), Insn(JMP | JEQ | K, 0x0800, 0, "pass"),  # the program sees the Ethernet header
        Insn(LD | B | ABS, 14 + 9), Insn(JMP | JEQ | K, proto, 0, "pass"),
        Insn(LDX | B | MSH, 14), Insn(LD | H | IND, 14 + 2), Insn(JMP | JEQ | K, port, 0, "pass"),
        Insn(RET | K, 2),  # TC_ACT_SHOT
        Insn(RET | K, -1, label="pass"),  # TC_ACT_UNSPEC: the next filter decides
    ])
    pair.exec(ns, ["tc", "qdisc", "replace", "dev", "eth0", "clsact"])
    pair.exec(ns, ["tc", "filter", "add", "dev", "eth0", direction, "bpf", "da", "bytecode",
                   f"{len(prog)}," + ",".join(" ".join(map(str, row)) for row in prog)])


def test_tc_and_netdev_ingress_drops_are_destination_ingress_below_ip(mesh_pair):
    """A tc filter (BGP) and an nftables netdev chain (VXLAN, IPIP) drop on b's ingress, before
    the IP layer: b's ETH_P_ALL tap saw the probes arrive, its ETH_P_IP tap never did."""
    tc_drop(mesh_pair, mesh_pair.b, "ingress", 6, 179)
    mesh_pair.nft(mesh_pair.b, """
table netdev edge {
  chain ingress {
    type filter hook ingress device "eth0" priority 0; policy accept;
    udp dport 4789 drop
    ip protocol ipencap drop
  }
}
""")
    code, cells = mesh(mesh_pair, "--checks", "bgp,vxlan,ipip,etcd")
    assert code == 1
    for check in ("bgp", "vxlan", "ipip"):
        cell = cells[(check, "a", "b")]
        assert (cell["reach"], cell["where"]) == ("blocked", "destination-ingress"), cell
        ev = cell["evidence"]
        assert (ev["left"], ev["arrived"], ev["reached_ip"], ev["accepted"]) == (True, True, False, False), cell
        assert cells[(check, "b", "a")]["reach"] == "allowed"
    etcd = cells[("etcd", "a", "b")]  # past the hooks: a closed port, the flow passes
    assert etcd["reach"] == "allowed" and etcd["evidence"]["reached_ip"] is True


def test_tc_and_netdev_egress_drops_are_source_egress(mesh_pair):
    """On a's way out: an nftables netdev egress chain (BGP, IPIP) and a tc egress filter (UDP:
    VXLAN and WireGuard) drop a's probes after its OUTPUT; the sends succeed, a's own tap never
    sees them leave, and b never sees them arrive."""
    mesh_pair.nft(mesh_pair.a, """
table netdev edge {
  chain egress {
    type filter hook egress device "eth0" priority 0; policy accept;
    tcp dport 179 drop
    ip protocol ipencap drop
  }
}
""")
    for port in (4789, 51820):
        tc_drop(mesh_pair, mesh_pair.a, "egress", 17, port)
    code, cells = mesh(mesh_pair, "--checks", "bgp,ipip,vxlan,wireguard,etcd")
    assert code == 1
    for check in ("bgp", "ipip", "vxlan", "wireguard"):
        cell = cells[(check, "a", "b")]
        assert (cell["reach"], cell["where"]) == ("blocked", "source-egress"), cell
        ev = cell["evidence"]
        assert (ev["sent"], ev["left"], ev["arrived"]) == (True, False, False), cell
        assert cells[(check, "b", "a")]["reach"] == "allowed"  # a's answers and echoes are not its probes
    assert cells[("etcd", "a", "b")]["evidence"]["left"] is True


def test_plain_cells_carry_the_normal_below_ip_evidence(mesh_pair):
    """Nothing dropped: every cell is plain, its evidence the normal one (it left, arrived,
    reached IP, was accepted and answered) -- so the result keeps no detail for it."""
    code, cells = mesh(mesh_pair, "--checks", "bgp,ipip,vxlan,wireguard")
    assert code == 0
    for cell in cells.values():
        ev = cell["evidence"]
        assert (ev["left"], ev["arrived"], ev["reached_ip"], ev["accepted"], ev["answered"]) == (True,) * 5, cell
