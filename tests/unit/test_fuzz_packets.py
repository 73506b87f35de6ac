"""Every reader of untrusted bytes fuzzed end to end (issue #9): the responder and the prober
state machines fed mutated, truncated and extended genuine probes, echoes and replies. Nothing
may raise, and whatever the responder answers must obey the echo rules whatever the bytes: from
the probe's outer destination to its outer source, to a slot port, no larger than the probe, and
only for a probe whose authenticated fields are untouched. (Budget: a few seconds, for CI.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netprobe.core import templates
from netprobe.core.checks import CHECKS, Check, Direction, Proto
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.keys import probe_key
from netprobe.core.parse import PayloadPacket, parse_packet_untrusted
from netprobe.core.prober import Prober
from netprobe.core.responder import ResponderCore
from netprobe.core.wire import SLOT_BASE
from netprobe.errors import BadPacket

KEY = probe_key("fuzz-token-of-some-length")
WALL = 1_700_000_000_000_000_000
CHECKS_FUZZED = [CHECKS["bgp"], CHECKS["vxlan"], CHECKS["ipip"], Check("u", "u", Proto.UDP, 4000, Direction.BOTH)]


@st.composite
def mutated(draw, pool):
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def _flow(data: bytes) -> bytes | None:
    try:
        pkt = parse_packet_untrusted(data)
    except BadPacket:
        return None
    return pkt.flow() if isinstance(pkt, PayloadPacket) else None


class Fabric:
    """Genuine probes from SRC to DST of every fuzzed check the family carries, and their echoes."""

    def __init__(self, src: str, dst: str):
        self.src = src
        self.targets = [ProbeTarget(c, dst) for c in CHECKS_FUZZED if (6 if ":" in dst else 4) in c.families]
        self.made = templates.for_targets(src, self.targets)
        self.genuine = [s.data for s in self.prober().start(0.0, WALL)]
        self.echoes = [e.data for e in (ResponderCore(KEY).on_packet(d, via=Via.RAW, outgoing=False, now=1.0,
                                                                     wall_ns=WALL) for d in self.genuine)
                       if e is not None]
        self.genuine_flows = {_flow(d) for d in self.genuine} - {None}
        self.echo_flows = {_flow(e) for e in self.echoes}

    def prober(self) -> Prober:
        return Prober(KEY, self.src, self.targets, self.made, first_id=77)


FABRICS = {4: Fabric("198.18.0.1", "198.18.0.2"), 6: Fabric("2001:db8::1", "2001:db8::2")}
assert [len(f.echoes) for f in FABRICS.values()] == [3, 2]  # IPv6: no IPIP


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # per family: 600 in all
@given(st.data(), st.sampled_from([Via.RAW, Via.TAP]), st.booleans())
def test_responder_never_raises_and_echoes_only_by_the_rules(family, data, via, outgoing):
    fabric = FABRICS[family]
    packets = data.draw(st.lists(mutated(fabric.genuine), min_size=1, max_size=4))
    core = ResponderCore(KEY)
    for packet in packets:
        echo = core.on_packet(packet, via=via, outgoing=outgoing, now=1.0, wall_ns=WALL)
        if echo is None:
            continue
        probe = parse_packet_untrusted(packet)
        assert isinstance(probe, PayloadPacket) and via is Via.RAW and not outgoing
        assert probe.flow() in fabric.genuine_flows  # authenticated: the flow is exactly a genuine probe's
        back = parse_packet_untrusted(echo.data)
        assert (back.src, back.dst) == (probe.dst, probe.src) and echo.address == fabric.src
        assert back.dport >= SLOT_BASE and len(echo.data) <= len(packet)
    assert core.stats["echoes"] <= len(fabric.echoes)  # each genuine probe id at most once


@pytest.mark.parametrize("family", [4, 6])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # per family: 600 in all
@given(st.data(), st.sampled_from([Via.RAW, Via.TAP]))
def test_prober_never_raises_and_matches_only_exact_echoes(family, data, via):
    fabric = FABRICS[family]
    packets = data.draw(st.lists(mutated(fabric.echoes + fabric.genuine), min_size=1, max_size=4))
    prober = fabric.prober()
    for s in prober.start(0.0, WALL):
        prober.send_done(s.probe_id, 0.0)
    for packet in packets:
        pid = prober.receive(packet, via, 0.01)
        flow = _flow(packet)
        if pid is not None and flow is not None:  # a payload reply matched: exactly an echo's flow
            assert flow in fabric.echo_flows
    assert prober.stats["matched"] + prober.stats["ignored"] + prober.stats["malformed"] == len(packets)
