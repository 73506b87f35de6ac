"""The adaptive reply window of the Prober (like nmap's and TCP's retransmission timers)."""

from __future__ import annotations

import struct

from netprobe.core import parse, templates
from netprobe.core.checks import CHECKS
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.prober import Prober

KEY = b"k" * 32
SRC, DST = "198.51.100.1", "198.51.100.2"

def new_prober(key: bytes, source: str, targets, *, vni: int = 1, **kw) -> Prober:
    """A Prober with the templates its shell would make before the run."""
    targets = list(targets)
    return Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), **kw)


def syn_ack_for(data: bytes) -> bytes:
    syn = parse.parse_packet_untrusted(data)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, syn.dst, syn.src)
    return ip + struct.pack("!HHIIBBHHH", syn.dport, syn.sport, 7, (syn.seq + 1) & 0xFFFFFFFF, 0x50, 0x12, 0, 0, 0)


def probing(**kw) -> tuple[Prober, list]:
    s = new_prober(KEY, SRC, [ProbeTarget(CHECKS["bgp"], DST), ProbeTarget(CHECKS["etcd"], DST)], window=2.0, retries=1, **kw)
    sends = s.start(0.0, 0)
    for cmd in sends:
        s.send_done(cmd.probe_id, 0.0)
    return s, sends


def test_window_is_the_maximum_until_an_answer_is_timed():
    s, _ = probing()
    assert s.effective_window == 2.0
    assert s.deadline == 2.0
    assert s.tick(1.9, 0) == []


def test_an_answer_shrinks_the_window_for_the_silent_probes():
    s, sends = probing()
    s.receive(syn_ack_for(sends[0].data), Via.RAW, 0.01)  # bgp answered after 10 ms
    assert s.effective_window == 0.2  # 4 x 10 ms is under the 0.2 s floor
    assert s.deadline == 0.2
    retry = s.tick(0.25, 0)
    assert [c.probe_id for c in retry] == [sends[1].probe_id]  # etcd retransmitted early


def test_a_slow_answer_keeps_a_longer_window_but_never_above_the_maximum():
    s, sends = probing()
    s.receive(syn_ack_for(sends[0].data), Via.RAW, 0.3)
    assert abs(s.effective_window - 1.2) < 1e-9
    s2, sends2 = probing()
    s2.receive(syn_ack_for(sends2[0].data), Via.RAW, 0.9)
    assert s2.effective_window == 2.0


def test_answers_to_retransmissions_are_not_timed():
    s, sends = probing()
    s.tick(2.0, 0)  # both retransmitted at t=2.0
    for cmd in sends:
        s.send_done(cmd.probe_id, 2.0)
    s.receive(syn_ack_for(sends[0].data), Via.RAW, 2.001)
    assert s.effective_window == 2.0  # Karn: ambiguous which attempt it answers
