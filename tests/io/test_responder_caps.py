"""The responder's AgentService refuses what would make it a scanner: one run probes at a time,
two may wait, more are 429 at once; the per-minute budget and the allow-list (403) are checked
before anything is sent. The prober and the route lookup are faked: nothing leaves this host."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest
import trio

from netprobe.agent.protocol import ProbeRequest, Refused
from netprobe.agent.responder import QUEUE, Responder, default_budget
from netprobe.core.checks import CHECKS
from netprobe.core.mesh_logic import Peer

TOKEN = "responder-caps-token-0123456789"


@pytest.fixture
def fake_prober(monkeypatch):
    state = SimpleNamespace(release=trio.Event(), running=0, most=0, sent=0)

    async def probe_targets(source, targets, **kw):
        state.running += 1
        state.most = max(state.most, state.running)
        state.sent += len(targets)
        await state.release.wait()
        state.running -= 1
        return [], {}

    monkeypatch.setattr("netprobe.net.prober.probe_targets", probe_targets)
    monkeypatch.setattr("netprobe.net.route.route_to", lambda a: SimpleNamespace(source="192.0.2.1"))
    return state


def request(run_id: str, n: int = 3, first: int = 1) -> ProbeRequest:
    targets = tuple(Peer(f"t{i}", f"198.51.100.{first + i}", ("bgp",)) for i in range(n))
    return ProbeRequest(run_id, targets, (CHECKS["bgp"],), timeout=0.1, retries=0)


async def test_one_run_probes_two_wait_and_the_rest_are_429_at_once(fake_prober):
    responder = Responder(TOKEN, name="r")
    done, refused = [], []

    async def ask(i):
        try:
            done.append((await responder.run_probes(request(f"run{i}")))["run_id"])
        except Refused as exc:
            refused.append((i, exc.status, exc.retry_after, str(exc)))

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(ask, i)
            await trio.sleep(0.01)
        await trio.sleep(0.05)
        assert len(refused) == 6 - 1 - QUEUE and fake_prober.running == 1
        assert all(status == 429 and retry == 1 and "busy" in text for _, status, retry, text in refused)
        fake_prober.release.set()
    assert len(done) == 1 + QUEUE and fake_prober.most == 1


async def test_the_allow_list_and_the_budget_refuse_before_sending(fake_prober):
    fake_prober.release.set()
    budget = default_budget([ipaddress.IPv4Network("198.51.100.0/24")])
    budget.targets_per_minute = 5
    responder = Responder(TOKEN, name="r", budget=budget)
    with pytest.raises(Refused, match="198.51.101.250 is outside") as info:
        await responder.run_probes(ProbeRequest("x", (Peer("a", "198.51.101.250", ("bgp",)),), (CHECKS["bgp"],)))
    assert info.value.status == 403 and "198.51.100.0/24" in str(info.value)
    await responder.run_probes(request("a", 3))
    with pytest.raises(Refused, match="over 5 distinct targets a minute") as info:
        await responder.run_probes(request("b", 3, first=10))
    assert info.value.status == 429 and info.value.retry_after in (60, 61)
    assert fake_prober.sent == 3
