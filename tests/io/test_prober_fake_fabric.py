"""The trio prober shell (net.prober.run_prober) against a fake fabric, on trio's autojump
clock: datagram socketpairs stand in for the tap and the raw socket, and the fabric decides per
port whether a SYN is answered, dropped, or answered only as far as the tap (a local INPUT drop).
No privileges, no real packets, and reply windows cost no real time."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from netprobe.core import parse, templates
from netprobe.core.checks import Check, Direction, Proto
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.prober import Prober
from netprobe.net.capture import Capture, CaptureSet
from netprobe.core.result import Reach, Where
from netprobe.core.verdict import classify
from netprobe.net.prober import ProbeIO, run_prober

SRC, DST = "198.51.100.1", "198.51.100.2"
KEY = b"f" * 32

def new_prober(key: bytes, source: str, targets, *, vni: int = 1, **kw) -> Prober:
    """A Prober with the templates its shell would make before the run."""
    targets = list(targets)
    return Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), **kw)


def check(port: int) -> Check:
    return Check(f"p{port}", "fake", Proto.TCP, port, Direction.BOTH)


def syn_ack_for(syn_bytes: bytes) -> bytes:
    syn = parse.parse_packet_untrusted(syn_bytes)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, syn.dst, syn.src)
    return ip + struct.pack("!HHIIBBHHH", syn.dport, syn.sport, 1, (syn.seq + 1) & 0xFFFFFFFF, 0x50, 0x12, 0, 0, 0)


class Fabric:
    """``open`` ports answer on tap and raw; ``input_drop`` ports only reach the tap; the rest
    are silently dropped. Counts every send. With ``leaving``, the tap sees each probe leave,
    but those to ``egress_drop`` ports (a tc/netdev egress drop), the first ``drop_first``
    attempts, and those to ``late`` ports only ``late[port]`` seconds after the send."""

    def __init__(self, *, open_ports=(), input_drop=(), eperm=(), leaving=False, egress_drop=(), drop_first=0,
                 late=None):
        self.open, self.input_drop, self.eperm = set(open_ports), set(input_drop), set(eperm)
        self.leaving, self.egress_drop, self.drop_first = leaving, set(egress_drop), drop_first
        self.late, self.due = dict(late or {}), []
        self.sent: list[int] = []
        self.tap_in, self.tap = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.out_in, self.out = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.raw_in, self.raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self.tap, self.out, self.raw):
            s.setblocking(False)

    def send(self, data: bytes, address: str):
        import errno

        port = parse.parse_packet_untrusted(data).dport
        if port in self.eperm:
            return errno.EPERM
        self.sent.append(port)
        if self.leaving and port not in self.egress_drop and len(self.sent) > self.drop_first:
            if port in self.late:
                self.due.append((trio.current_time() + self.late[port], data))
            else:
                self.out_in.send(data)
        if port in self.open or port in self.input_drop:
            self.tap_in.send(syn_ack_for(data))
        if port in self.open:
            self.raw_in.send(syn_ack_for(data))
        return None

    async def deliver_late(self) -> None:
        """The copies of ``late`` probes, each seen leaving when due."""
        while True:
            for due, data in [d for d in self.due if d[0] <= trio.current_time()]:
                self.due.remove((due, data))
                self.out_in.send(data)
            await trio.sleep(0.01)

    def io(self) -> ProbeIO:
        captures = [Capture(self.tap, Via.TAP), Capture(self.raw, Via.RAW)]
        if self.leaving:
            captures.append(Capture(self.out, Via.TAP, outgoing=True))
        return ProbeIO(send=self.send, captures=CaptureSet(captures), unresolved_next_hops=lambda addresses: set())

    def close(self):
        for s in (self.tap_in, self.tap, self.out_in, self.out, self.raw_in, self.raw):
            s.close()


@pytest.fixture
def fabric_factory():
    made = []

    def make(**kw):
        f = Fabric(**kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


async def test_answered_probes_finish_without_waiting_a_window(fabric_factory, autojump_clock):
    fabric = fabric_factory(open_ports={179, 2379})
    prober = new_prober(KEY, SRC, [ProbeTarget(check(179), DST), ProbeTarget(check(2379), DST)], window=5.0, retries=2)
    t0 = trio.current_time()
    outcomes = await run_prober(prober, fabric.io())
    assert trio.current_time() - t0 < 0.01
    assert all(o.evidence.reply_accepted and o.evidence.attempts == 1 for o in outcomes)
    assert sorted(fabric.sent) == [179, 2379]


async def test_filtered_probes_are_retried_and_cost_windows_not_probes(fabric_factory, autojump_clock):
    fabric = fabric_factory()
    targets = [ProbeTarget(check(9), DST)] * 1000
    prober = new_prober(KEY, SRC, targets, window=1.0, retries=1)
    t0 = trio.current_time()
    outcomes = await run_prober(prober, fabric.io())
    elapsed = trio.current_time() - t0
    assert 2.0 <= elapsed < 2.2  # (retries + 1) windows for all 1,000 together
    assert len(fabric.sent) == 2000
    assert all(o.evidence.reply is None and o.evidence.attempts == 2 for o in outcomes)


async def test_an_answer_shrinks_the_window_of_the_silent_ones(fabric_factory, autojump_clock):
    fabric = fabric_factory(open_ports={179})
    prober = new_prober(KEY, SRC, [ProbeTarget(check(179), DST), ProbeTarget(check(9), DST)], window=5.0, retries=1)
    t0 = trio.current_time()
    await run_prober(prober, fabric.io())
    assert trio.current_time() - t0 < 1.0  # 2 x the 0.2 s floor (plus a wake-up), not 2 x 5 s


async def test_reply_seen_only_on_the_tap_is_arrived_not_accepted(fabric_factory, autojump_clock):
    fabric = fabric_factory(input_drop={5473})
    prober = new_prober(KEY, SRC, [ProbeTarget(check(5473), DST)], window=1.0, retries=2)
    (outcome,) = await run_prober(prober, fabric.io())
    ev = outcome.evidence
    assert (ev.reply_arrived, ev.reply_accepted, str(ev.reply)) == (True, False, "syn-ack")
    assert ev.attempts == 1  # an answer came: no retransmission, only the window to wait


async def test_a_refused_send_is_final(fabric_factory, autojump_clock):
    fabric = fabric_factory(eperm={179})
    prober = new_prober(KEY, SRC, [ProbeTarget(check(179), DST)], window=1.0, retries=3)
    t0 = trio.current_time()
    (outcome,) = await run_prober(prober, fabric.io())
    assert trio.current_time() - t0 < 0.01
    assert outcome.evidence.sent is False and outcome.evidence.attempts == 1
    assert "not permitted" in outcome.evidence.send_error


async def test_a_rate_paces_the_sends_and_never_shortens_a_window(fabric_factory, autojump_clock):
    """--rate: 2,000 probes at 10,000/s take ~0.2 s to send; each still gets its whole window."""
    fabric = fabric_factory()
    targets = [ProbeTarget(check(9), DST)] * 2000
    prober = new_prober(KEY, SRC, targets, window=1.0, retries=0)
    t0 = trio.current_time()
    outcomes = await run_prober(prober, fabric.io(), rate=10_000)
    took = trio.current_time() - t0
    assert 1.19 <= took <= 1.25  # 0.2 s of sending, then the last probe's full 1 s window
    assert len(fabric.sent) == 2000 and all(o.evidence.reply is None for o in outcomes)


# ------------------------------------------------------------------ probes seen leaving


def where(outcome) -> tuple[Reach, Where | None]:
    c = classify(Proto.TCP, outcome.evidence, DST)
    return c.reach, c.where


async def test_a_probe_never_seen_leaving_is_source_egress(fabric_factory, autojump_clock):
    fabric = fabric_factory(leaving=True, open_ports={179}, egress_drop={5473})
    targets = [ProbeTarget(check(p), DST) for p in (179, 9, 5473)]
    answered, silent, dropped = await run_prober(new_prober(KEY, SRC, targets, window=1.0, retries=1), fabric.io())
    assert [o.evidence.left for o in (answered, silent, dropped)] == [True, True, False]
    assert where(answered) == (Reach.ALLOWED, None)
    assert where(silent) == (Reach.UNKNOWN, None)  # it left: where it died, the sender alone cannot tell
    assert where(dropped) == (Reach.BLOCKED, Where.SOURCE_EGRESS)
    assert dropped.evidence.attempts == 2  # retried like any silent probe


async def test_seen_leaving_after_the_send_returned_still_counts(fabric_factory, autojump_clock):
    """A qdisc may hold a probe: ``left`` is decided when its window is over, not at the send."""
    fabric = fabric_factory(leaving=True, late={9: 0.8})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fabric.deliver_late)
        (outcome,) = await run_prober(new_prober(KEY, SRC, [ProbeTarget(check(9), DST)], window=1.0, retries=0),
                                      fabric.io())
        nursery.cancel_scope.cancel()
    assert outcome.evidence.left is True


async def test_any_attempt_seen_leaving_counts(fabric_factory, autojump_clock):
    fabric = fabric_factory(leaving=True, drop_first=1)  # the first attempt died below IP, the retry left
    (outcome,) = await run_prober(new_prober(KEY, SRC, [ProbeTarget(check(9), DST)], window=1.0, retries=1),
                                  fabric.io())
    assert (outcome.evidence.attempts, outcome.evidence.left) == (2, True)


async def test_unseen_probes_to_an_unresolved_next_hop_say_nothing(fabric_factory, autojump_clock):
    fabric = fabric_factory(leaving=True, egress_drop={9})
    asked = []
    io = fabric.io()
    io.unresolved_next_hops = lambda addresses: asked.append(set(addresses)) or set(addresses)
    (outcome,) = await run_prober(new_prober(KEY, SRC, [ProbeTarget(check(9), DST)], window=1.0, retries=0), io)
    assert asked == [{DST}] and outcome.evidence.left is None
    assert where(outcome) == (Reach.UNKNOWN, None)


async def test_next_hops_are_not_asked_about_when_every_probe_left(fabric_factory, autojump_clock):
    fabric = fabric_factory(leaving=True)
    io = fabric.io()
    io.unresolved_next_hops = lambda addresses: pytest.fail("asked the kernel although every probe left")
    (outcome,) = await run_prober(new_prober(KEY, SRC, [ProbeTarget(check(9), DST)], window=1.0, retries=0), io)
    assert outcome.evidence.left is True
