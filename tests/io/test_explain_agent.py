"""The agent's side of the explain round, against fakes: the endpoints over a real socket (signed),
the armed traces' life (held from arm to collect, removed on collect, on hold timeout, on stop),
the responder's checks and caps, and the sender's re-send (ids, order, traces, hops). Nothing
leaves this host: the prober, the rule finder and the route lookup are faked."""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from netprobe.agent.api import build_app
from netprobe.agent.client import AgentClient, AgentRequestError
from netprobe.agent.protocol import (ArmReply, ArmRequest, CollectReply, CollectRequest, Refused, ResendProbe,
                                     ResendReply, ResendRequest, UnknownRun)
from netprobe.agent.responder import Responder, default_budget
from netprobe.agent.server import serve_api
from netprobe.agent.traces import ArmedTraces
from netprobe.core.checks import CHECKS
from netprobe.core.cells import Evidence, Icmp
from netprobe.core.events import Outcome, ProbeTarget
from netprobe.core.explain import Hop
from netprobe.core.explain_round import Resent
from netprobe.core.trace import Flow, NotNamed, RuleFound
from netprobe.core.wire import DEFAULT_TTL, SLOT_BASE
from netprobe.errors import AgentError
from netprobe.net.explain_send import ResendItem, resend

TOKEN = "explain-agent-token-0123456789"
FLOW = Flow("tcp", "192.0.2.10", "192.0.2.11", SLOT_BASE | 5, 179)
RULE = RuleFound("inet", "filter", "input", 7, "tcp dport 179 drop", None, "drop")


class FakeFinder:
    """A rule finder that records its life and names ``RULE`` for every flow."""

    log: list = []

    def __init__(self, flows, *, nft="nft"):
        self.flows = list(flows)

    async def __aenter__(self):
        FakeFinder.log.append(("enter", tuple(self.flows)))
        return self

    async def results(self, *, expected_packets, timeout):
        FakeFinder.log.append(("results", dict(expected_packets), timeout))
        return {flow: RULE for flow, _hook in self.flows}

    async def __aexit__(self, *exc):
        FakeFinder.log.append(("exit",))


@pytest.fixture
def finder():
    FakeFinder.log = []
    return FakeFinder


@pytest.fixture
async def traces(nursery, finder):
    t = ArmedTraces(finder)
    await nursery.start(t.serve)
    return t


# ------------------------------------------------------------------ armed traces


async def test_a_trace_is_held_from_arm_to_collect_and_removed_before_the_answer(traces, finder):
    assert await traces.arm("run1", [FLOW], hold=10) == 1
    assert finder.log == [("enter", ((FLOW, "ingress"),))] and len(traces) == 1
    rules = await traces.collect("run1", {FLOW: 1}, timeout=0.3)
    assert rules == {FLOW: RULE}
    assert finder.log[1:] == [("results", {FLOW: 1}, 0.3), ("exit",)] and len(traces) == 0
    with pytest.raises(UnknownRun):
        await traces.collect("run1", {FLOW: 1}, timeout=0.3)


async def test_a_trace_nobody_collects_goes_when_its_hold_passes(traces, finder, autojump_clock):
    await traces.arm("run1", [FLOW], hold=5)
    await trio.sleep(4)
    assert ("exit",) not in finder.log
    await trio.sleep(2)
    assert finder.log[-1] == ("exit",) and len(traces) == 0


async def test_stopping_the_agent_removes_every_trace(finder):
    t = ArmedTraces(finder)
    async with trio.open_nursery() as nursery:
        await nursery.start(t.serve)
        await t.arm("run1", [FLOW], hold=60)
        await t.arm("run2", [FLOW], hold=60)
        nursery.cancel_scope.cancel()
    assert finder.log.count(("exit",)) == 2


async def test_armed_runs_are_capped_and_a_run_arms_once(finder, nursery):
    t = ArmedTraces(finder, limit=2)
    await nursery.start(t.serve)
    await t.arm("a", [FLOW], hold=60)
    with pytest.raises(AgentError, match="armed already"):
        await t.arm("a", [FLOW], hold=60)
    await t.arm("b", [FLOW], hold=60)
    with pytest.raises(Refused) as info:
        await t.arm("c", [FLOW], hold=60)
    assert info.value.status == 429 and info.value.retry_after == 1


async def test_a_finder_that_cannot_start_arms_nothing(nursery):
    class Broken(FakeFinder):
        async def __aenter__(self):
            raise OSError("nft: not found")

    t = ArmedTraces(Broken)
    await nursery.start(t.serve)
    with pytest.raises(AgentError, match="cannot arm the trace: nft: not found"):
        await t.arm("a", [FLOW], hold=60)
    assert len(t) == 0


async def test_a_finder_failing_after_arm_answers_why_and_keeps_the_agent_up(nursery):
    class Failing(FakeFinder):
        async def results(self, **kw):
            raise RuntimeError("trace reader died")

    t = ArmedTraces(Failing)
    await nursery.start(t.serve)
    await t.arm("a", [FLOW], hold=60)
    assert await t.collect("a", {FLOW: 1}, timeout=0.1) == {FLOW: NotNamed("the rule finder failed: trace reader died")}
    await t.arm("b", [FLOW], hold=60)  # still serving


# ------------------------------------------------------------------ the responder


@pytest.fixture
async def responder(nursery, finder, monkeypatch):
    r = Responder(TOKEN, name="node-b", budget=default_budget([ipaddress.IPv4Network("192.0.2.0/24")]))
    r.traces = ArmedTraces(finder)
    await nursery.start(r.traces.serve)
    monkeypatch.setattr(r.own, "is_own", lambda addr: addr == bytes([192, 0, 2, 11]))
    return r


async def test_arm_refuses_flows_to_another_hosts_address(responder):
    with pytest.raises(ValueError, match=r"flows\[1\].dst: 192.0.2.99 is not one of this host's addresses"):
        await responder.explain_arm(ArmRequest("r", (FLOW, Flow("tcp", "192.0.2.10", "192.0.2.99", 1, 179))))
    reply = await responder.explain_arm(ArmRequest("r", (FLOW,)))
    assert reply == {"run_id": "r", "host": "node-b", "armed": 1}
    collected = CollectReply.from_dict_untrusted(await responder.explain_collect(CollectRequest("r", ((FLOW, 1),))))
    assert collected.rules == ((FLOW, RULE),)


async def test_resend_is_admitted_and_charged_like_a_probing_run(responder, monkeypatch):
    sent = []

    async def fake_resend(items, **kw):
        sent.append((items, kw))
        return [Resent(i.probe_id, "192.0.2.11", 1) for i in items]

    monkeypatch.setattr("netprobe.net.explain_send.resend", fake_resend)
    probes = (ResendProbe("a", "192.0.2.10", "bgp", 5, hops=True),)
    reply = ResendReply.from_dict_untrusted(
        await responder.explain_resend(ResendRequest("r", (CHECKS["bgp"],), probes, timeout=0.2, max_ttl=16)))
    assert [p.probe_id for p in reply.probes] == [5]
    items, kw = sent[0]
    assert (items[0].target.address, items[0].probe_id, items[0].hops, kw["max_ttl"]) == ("192.0.2.10", 5, True, 16)
    assert sum(n for _, n in responder.budget._probes) == 1 + 16  # the probe and its copies
    with pytest.raises(Refused) as info:  # the allow-list holds for re-sends too
        await responder.explain_resend(ResendRequest("r2", (CHECKS["bgp"],),
                                                     (ResendProbe("x", "198.51.100.1", "bgp", 6),)))
    assert info.value.status == 403 and len(sent) == 1


# ------------------------------------------------------------------ the endpoints


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="np-ex-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


async def test_the_endpoints_are_signed_round_trips(nursery, sock_dir, responder, monkeypatch):
    async def fake_resend(items, **kw):
        return [Resent(i.probe_id, "192.0.2.11", 0, RULE) for i in items]

    monkeypatch.setattr("netprobe.net.explain_send.resend", fake_resend)
    url = await nursery.start(serve_api, build_app(responder, token=TOKEN), f"unix:{sock_dir}/a.sock")
    async with AgentClient(url, token=TOKEN) as client:
        assert await client.explain_arm(ArmRequest("r", (FLOW,))) == ArmReply("r", "node-b", 1)
        reply = await client.explain_resend(ResendRequest("r", (CHECKS["bgp"],),
                                                          (ResendProbe("a", "192.0.2.10", "bgp", 5, trace=True),)))
        assert reply.probes == (Resent(5, "192.0.2.11", 0, RULE),)
        assert (await client.explain_collect(CollectRequest("r", ((FLOW, 1),)))).rules == ((FLOW, RULE),)
        with pytest.raises(AgentRequestError) as info:
            await client.explain_collect(CollectRequest("r", ((FLOW, 1),)))
        assert info.value.status == 404
    async with AgentClient(url, token="another-token-0123456789") as stranger:
        with pytest.raises(AgentRequestError) as info:
            await stranger.explain_arm(ArmRequest("r", (FLOW,)))
        assert info.value.status == 401


async def test_an_agent_without_the_explain_round_answers_404(nursery, sock_dir):
    class Older:
        async def health(self): return {"host": "old"}
        async def run_probes(self, request): return {}
        async def observations(self, run_id): return {}
        async def preflight(self, params): return {}

    url = await nursery.start(serve_api, build_app(Older(), token=TOKEN), f"unix:{sock_dir}/old.sock")
    async with AgentClient(url, token=TOKEN) as client:
        with pytest.raises(AgentRequestError, match="HTTP 404: this agent has no explain round") as info:
            await client.explain_arm(ArmRequest("r", (FLOW,)))
    assert info.value.status == 404


# ------------------------------------------------------------------ the sender's re-send


def outcome(target, pid, *, sent=True, icmp=None, attempts=1):
    return Outcome(pid, target, "192.0.2.10", Evidence(sent=sent, icmp=icmp, attempts=attempts), None)


async def test_resend_sends_exactly_then_ttl_by_ttl_traces_egress_and_finds_the_hop(finder):
    bgp, etcd = CHECKS["bgp"], CHECKS["etcd"]
    items = [ResendItem(ProbeTarget(bgp, "192.0.2.11", "b"), 5, trace=True),
             ResendItem(ProbeTarget(bgp, "192.0.2.12", "c"), 6, hops=True),
             ResendItem(ProbeTarget(etcd, "192.0.2.13", "d"), 7, hops=True)]
    asked = {}

    async def probe(source, targets, *, ids, retries, **kw):
        asked.update(targets=targets, ids=ids, retries=retries)
        out = []
        for target, pid in zip(targets, ids):
            if pid == 5:
                out.append(outcome(target, pid, sent=False))  # refused by this host's OUTPUT
            elif target.ttl == 1:
                out.append(outcome(target, pid, icmp=Icmp(11, 0, "192.0.2.1")))
            elif target.ttl == 2 and target.address == "192.0.2.12":
                out.append(outcome(target, pid, icmp=Icmp(11, 0, "198.51.100.1")))
            else:
                out.append(outcome(target, pid))
        return out, {}

    results = await resend(items, key=b"k" * 32, window=0.2, max_ttl=3, probe=probe, finder=finder,
                           route_to=lambda address: SimpleNamespace(source="192.0.2.10"))
    targets, ids = asked["targets"], asked["ids"]
    assert ids[:3] == [5, 6, 7] and len(set(ids)) == len(ids) and asked["retries"] == 0
    assert [t.ttl for t in targets[:3]] == [DEFAULT_TTL] * 3
    assert [(t.address, t.ttl) for t in targets[3:]] == [(a, ttl) for ttl in (1, 2, 3)
                                                         for a in ("192.0.2.12", "192.0.2.13")]  # TTL by TTL
    egress = Flow("tcp", "192.0.2.10", "192.0.2.11", SLOT_BASE | 5, 179)
    assert finder.log == [("enter", ((egress, "egress"),)), ("results", {egress: 1}, 0.5), ("exit",)]
    assert results == [Resent(5, "192.0.2.10", 0, RULE),
                       Resent(6, "192.0.2.10", 1, None, Hop("198.51.100.1", 2)),
                       Resent(7, "192.0.2.10", 1, None, Hop("192.0.2.1", 1))]


async def test_resend_without_traces_starts_no_rule_finder(finder):
    async def probe(source, targets, *, ids, **kw):
        return [outcome(t, pid) for t, pid in zip(targets, ids)], {}

    items = [ResendItem(ProbeTarget(CHECKS["bgp"], "192.0.2.11", "b"), 9)]
    results = await resend(items, key=b"k" * 32, window=0.2, probe=probe, finder=finder,
                           route_to=lambda address: SimpleNamespace(source="192.0.2.10"))
    assert results == [Resent(9, "192.0.2.10", 1)] and finder.log == []
