"""RuleFinder on real kernels: two namespaces on a veth, real rulesets (nft, iptables-nft,
iptables-legacy, a netdev ingress chain), real probes from netprobe's templates; the rule named,
its fix line applied and the flow then passing, and the trace table gone on every way out (done,
cancelled, SIGKILL + sweep, responder start). Each test has its own ``nprf-<uuid>`` namespaces."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import send_probes, veth_namespaces

from netprobe.core.trace import Flow, RuleFound, fix_lines
from netprobe.lab.apply import in_netns
from netprobe.net import sockets

pytestmark = pytest.mark.netns

DRIVER = Path(__file__).with_name("rulefinder_driver.py")
NETPROBE = [sys.executable, "-m", "netprobe"]

NFT_INPUT = """table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 accept
    tcp dport 179 drop comment "no bgp from outside"
  }
}
"""


@pytest.fixture
def pair():
    with veth_namespaces("nprf") as names:
        yield names


def sh(ns: str, argv: list[str], stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], input=stdin, capture_output=True, text=True, timeout=30)
    assert not check or proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc


def trace_tables(ns: str) -> list[str]:
    return [line for line in sh(ns, ["nft", "list", "tables"]).stdout.splitlines() if "netprobe_trace_" in line]


class Finder:
    """A RuleFinder in namespace ``ns``, in its own process (rulefinder_driver.py)."""

    def __init__(self, ns: str, flows: list[tuple[Flow, str]], *, mode: str = "results", timeout: float = 0.5):
        self.ns, self.flows = ns, flows
        spec = {"flows": [[f.proto, f.src, f.dst, f.sport, f.dport, d] for f, d in flows], "mode": mode,
                "timeout": timeout}
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(DRIVER), json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.armed = self._line()

    def _line(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the driver died: {self.proc.stderr.read()}"
        return json.loads(line)

    def results(self, expected: list[int]) -> dict:
        self.proc.stdin.write(json.dumps({"expected": expected}) + "\n")
        self.proc.stdin.flush()
        answer = self._line()
        assert self.proc.wait(timeout=10) == 0, self.proc.stderr.read()
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def finder(ns: str, flows: list[tuple[Flow, str]], **kw):
    f = Finder(ns, flows, **kw)
    try:
        yield f
    finally:
        f.close()


def name(ns: str, flows: list[tuple[Flow, str]], sender_ns: str, probes: int = 1, **kw) -> tuple[list, list]:
    """Arm a finder in ``ns``, send ``probes`` of each flow from ``sender_ns``: (its answers as
    RuleFound or reason strings, the send errors)."""
    with in_netns(sender_ns):
        sender = sockets.open_sender()
    try:
        with finder(ns, flows, **kw) as f:
            assert trace_tables(ns), "the trace table is in place once armed"
            errors = [send_probes(sender, flow, probes) for flow, _ in flows]
            answer = f.results([probes] * len(flows))
    finally:
        sender.close()
    assert trace_tables(ns) == [], "the trace table is removed afterwards"
    return [RuleFound(**a["rule"]) if "rule" in a else a["reason"] for a in answer["found"]], errors


def test_an_nft_rule_with_a_comment_is_named_and_its_fix_lets_the_flow_through(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], NFT_INPUT)
    flow = Flow("tcp", addr_a, addr_b, None, 179)
    (found,), _ = name(b, [(flow, "ingress")], a, probes=2)
    assert found == RuleFound("inet", "filter", "input", 3, 'tcp dport 179 drop comment "no bgp from outside"',
                              "no bgp from outside", "drop")
    fix = fix_lines(flow, "input", found)
    sh(b, ["sh", "-c", fix["nft"]])
    (after,), _ = name(b, [(flow, "ingress")], a)
    assert after == "nftables let it through (last: accept in inet filter input)"


def test_a_chain_policy_drop_is_named(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], NFT_INPUT.replace("policy accept", "policy drop"))
    (found,), _ = name(b, [(Flow("udp", addr_a, addr_b, 40001, 4789), "ingress")], a)
    assert found == RuleFound("inet", "filter", "input", None, "policy drop", None, "policy drop")


def test_an_iptables_nft_rule_is_named_with_its_iptables_form_and_comment(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["iptables-nft-restore"], "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp --dport 53 -j ACCEPT\n"
       '-A INPUT -p tcp --dport 179 -m comment --comment "no bgp from outside" -j DROP\nCOMMIT\n')
    flow = Flow("tcp", addr_a, addr_b, None, 179)
    (found,), _ = name(b, [(flow, "ingress")], a)
    assert (found.family, found.table, found.chain, found.text, found.comment, found.verdict, found.position) == (
        "ip", "filter", "INPUT", "tcp dport 179 counter drop", "no bgp from outside", "drop", 2)
    assert found.iptables == '-A INPUT -p tcp -m tcp --dport 179 -m comment --comment "no bgp from outside" -j DROP'
    sh(b, ["sh", "-c", fix_lines(flow, "input", found)["iptables"]])
    (after,), _ = name(b, [(flow, "ingress")], a)
    assert after == "nftables let it through (last: accept in ip filter INPUT)"


def test_an_iptables_legacy_rule_is_named_by_its_counter(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["iptables-legacy-restore"], "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"
       '-A INPUT -p udp --dport 8472 -m comment --comment "no flannel vxlan" -j DROP\nCOMMIT\n')
    flow = Flow("udp", addr_a, addr_b, None, 8472)
    (found,), _ = name(b, [(flow, "ingress")], a, probes=3)
    spec = '-A INPUT -p udp -m udp --dport 8472 -m comment --comment "no flannel vxlan" -j DROP'
    assert found == RuleFound("iptables-legacy", "filter", "INPUT", None, spec, "no flannel vxlan", "drop", spec, 2)
    sh(b, ["sh", "-c", fix_lines(flow, "input", found)["iptables"]])
    (after,), _ = name(b, [(flow, "ingress")], a, probes=3)
    assert after.startswith("nftables let it through; no iptables-legacy drop rule")
    saved = sh(b, ["iptables-legacy-save", "-c"]).stdout.splitlines()
    assert any(line.startswith("[3:") and "--dport 8472 -j ACCEPT" in line for line in saved)


def test_the_senders_own_output_drop_is_named_on_the_sender(pair):
    a, b, addr_a, addr_b = pair
    sh(a, ["nft", "-f", "-"], 'table inet filter {\n chain output {\n  type filter hook output priority 0;\n'
                              '  tcp dport 5473 drop comment "no typha from here"\n }\n}\n')
    (found,), (errors,) = name(a, [(Flow("tcp", addr_a, addr_b, None, 5473), "egress")], a)
    assert errors == [1]  # EPERM: the sender's own OUTPUT refused it
    assert (found.family, found.chain, found.comment, found.verdict) == ("inet", "output", "no typha from here", "drop")


def test_a_netdev_ingress_drop_is_traced_from_a_chain_ahead_of_it(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], 'table netdev edge {\n chain in {\n  type filter hook ingress device "eth0" '
                              'priority -500; policy accept;\n  ip protocol 4 drop comment "no ipip at the edge"\n'
                              ' }\n}\n')
    (found,), _ = name(b, [(Flow("ipip", addr_a, addr_b), "ingress")], a)
    assert found == RuleFound("netdev", "edge", "in", 2, 'ip protocol ipencap drop comment "no ipip at the edge"',
                              "no ipip at the edge", "drop")


def test_a_flow_that_never_reached_nftables_says_so(pair):
    a, b, addr_a, addr_b = pair
    with finder(b, [(Flow("tcp", addr_a, addr_b, None, 179), "ingress")], timeout=0.3) as f:
        answer = f.results([1])  # nothing sent: as for a probe a tc filter dropped
    assert answer["found"] == [{"reason": "no trace for this flow within 0.3 s (it never reached nftables here: "
                                          "not arrived, or a tc drop, which is not traced)"}]
    assert 0.3 <= answer["result_s"] < 1


def test_a_tc_drop_is_not_traced_and_says_so(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["tc", "qdisc", "add", "dev", "eth0", "clsact"])
    tc = sh(b, ["tc", "filter", "add", "dev", "eth0", "ingress", "protocol", "ip", "u32", "match", "u32", "0", "0",
                "action", "drop"], check=False)
    if tc.returncode:
        pytest.skip(f"this kernel cannot drop with tc: {tc.stderr.strip().splitlines()[0]}")
    (found,), _ = name(b, [(Flow("tcp", addr_a, addr_b, None, 179), "ingress")], a, timeout=0.3)
    assert found == ("no trace for this flow within 0.3 s (it never reached nftables here: not arrived, "
                     "or a tc drop, which is not traced)")


def test_a_hundred_flows_at_once_each_get_their_rule(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n"
                              '  tcp dport 20000-20049 drop comment "the first fifty"\n }\n}\n')
    flows = [(Flow("tcp", addr_a, addr_b, None, 20000 + i), "ingress") for i in range(100)]
    found, _ = name(b, flows, a, timeout=2)
    assert [f.comment for f in found[:50]] == ["the first fifty"] * 50
    assert {f.verdict for f in found[50:]} == {"policy drop"}


def test_unrelated_traffic_is_not_traced(pair):
    """An independent listener (`nft monitor trace`) sees our probe's trace and no trace of the
    pings sent meanwhile."""
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], NFT_INPUT)
    monitor = subprocess.Popen(["ip", "netns", "exec", b, "nft", "monitor", "trace"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.5)  # nft monitor says nothing when it is listening
        with in_netns(a):
            sender = sockets.open_sender()
        try:
            with finder(b, [(Flow("tcp", addr_a, addr_b, None, 179), "ingress")]) as f:
                pings = subprocess.Popen(["ip", "netns", "exec", a, "ping", "-c", "3", "-i", "0.1", addr_b],
                                         stdout=subprocess.DEVNULL)
                send_probes(sender, Flow("tcp", addr_a, addr_b, None, 179))
                assert pings.wait(timeout=10) == 0
                f.results([1])
        finally:
            sender.close()
        time.sleep(0.3)
    finally:
        monitor.send_signal(signal.SIGINT)
        traced = monitor.communicate(timeout=10)[0]
    assert 'drop comment "no bgp from outside"' in traced
    assert "icmp" not in traced


def test_the_table_goes_when_the_finder_is_cancelled(pair):
    a, b, addr_a, addr_b = pair
    with finder(b, [(Flow("tcp", addr_a, addr_b, None, 179), "ingress")], mode="cancel", timeout=30) as f:
        assert len(trace_tables(b)) == 1
        f.proc.stdin.write('{"expected": [1]}\n')
        f.proc.stdin.flush()
        assert f._line() == {"cancelled": True}
        assert f.proc.wait(timeout=10) == 0
    assert trace_tables(b) == []


def test_the_table_goes_when_cancelled_at_any_point_of_arming(pair):
    a, b, addr_a, addr_b = pair
    sh(b, ["nft", "-f", "-"], 'table netdev edge {\n chain in {\n  type filter hook ingress device "eth0" priority 0;\n'
                              "  ip protocol 4 drop\n }\n}\n")  # so arming has a netdev step too
    flows = [[f.proto, f.src, f.dst, f.sport, f.dport, "ingress"] for f in (Flow("ipip", addr_a, addr_b),)]
    outcomes = set()
    for after in (0, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.5):
        spec = {"flows": flows, "mode": "hold", "cancel_after": after}
        out = sh(b, [sys.executable, str(DRIVER), json.dumps(spec)]).stdout.splitlines()
        assert json.loads(out[-1]) == {"cancelled": True}
        outcomes.add(len(out))  # 1: cancelled while arming, 2: armed first
        assert trace_tables(b) == [], f"cancelled {after} s into arming"
    assert outcomes == {1, 2}


def test_a_killed_finders_table_is_swept(pair):
    a, b, addr_a, addr_b = pair
    with finder(b, [(Flow("tcp", addr_a, addr_b, None, 179), "ingress")], mode="hold") as f:
        f.proc.send_signal(signal.SIGKILL)
        f.proc.wait(timeout=10)
    assert trace_tables(b) == [f"table inet {f.armed['table']}"]
    sweep = "from netprobe.net.rulefinder import sweep_leftovers; print(sweep_leftovers())"
    assert sh(b, [sys.executable, "-c", sweep]).stdout.split() == ["1"]
    assert trace_tables(b) == []
    assert sh(b, [sys.executable, "-c", sweep]).stdout.split() == ["0"]


def test_the_responder_sweeps_leftovers_at_start_and_nothing_else(pair, tmp_path):
    a, b, addr_a, addr_b = pair
    leftovers = "table inet netprobe_trace_dead0001 {}\ntable netdev netprobe_trace_dead0001 {}\n"
    sh(b, ["nft", "-f", "-"], NFT_INPUT + leftovers)
    token = tmp_path / "token"
    token.write_text("nprf-sweep-token-0123456789")
    log = tmp_path / "responder.log"
    responder = subprocess.Popen(["ip", "netns", "exec", b, *NETPROBE, "responder", "--listen",
                                  f"unix:{tmp_path}/r.sock", "--token-file", str(token)],
                                 stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text():
            assert responder.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        responder.terminate()
        responder.wait(timeout=10)
    assert "swept 2 leftover nftables trace table(s)" in log.read_text()
    assert trace_tables(b) == []
    assert "no bgp from outside" in sh(b, ["nft", "list", "ruleset"]).stdout


def test_without_nft_nothing_is_named_and_that_is_said(pair):
    a, b, addr_a, addr_b = pair
    code = ("import trio; from netprobe.core.trace import Flow; from netprobe.net.rulefinder import RuleFinder\n"
            "async def main():\n"
            f"    flow = Flow('tcp', '{addr_a}', '{addr_b}', None, 179)\n"
            "    async with RuleFinder([(flow, 'ingress')], nft='/nonexistent/nft') as f:\n"
            "        print((await f.results(expected_packets={flow: 1}, timeout=5))[flow].reason)\n"
            "trio.run(main)\n")
    began = time.monotonic()
    assert sh(b, [sys.executable, "-c", code]).stdout.strip() == "nft not installed"
    assert time.monotonic() - began < 4, "nothing to wait for without nft nor legacy tables"
