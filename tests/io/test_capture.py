"""The capture drain shared by the prober shell and the responder: every packet reaches the
handler with where it was seen, a recv error is counted and the drain goes on, and kernel drops
are counted once whether the counter resets on read (tap) or is cumulative (raw)."""

from __future__ import annotations

import socket

import pytest
import trio

from netprobe.core.events import Via
from netprobe.net import capture
from netprobe.net.capture import Capture, CaptureSet


class FailingOnce:
    """A datagram socket whose first recv fails (a pending socket error)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.failed = sock, False
        self.family = sock.family

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, n: int) -> bytes:
        if not self.failed:
            self.failed = True
            raise OSError(100, "Network is down")
        return self.sock.recv(n)

    def close(self) -> None:
        self.sock.close()


async def test_drain_feeds_every_packet_and_survives_a_recv_error(autojump_clock):
    tap_in, tap = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    raw_in, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (tap, raw):
        s.setblocking(False)
    captures = CaptureSet([Capture(tap, Via.TAP), Capture(FailingOnce(raw), Via.RAW)])
    seen, batches = [], []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(captures.drain_all, lambda data, via, out, now, wall: seen.append((data, via, out)),
                               lambda: batches.append(1))
            await trio.sleep(0.1)
            tap_in.send(b"one")
            tap_in.send(b"two")
            raw_in.send(b"lost to the error")  # the failing recv is this packet's turn
            await trio.sleep(0.1)
            raw_in.send(b"three")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    finally:
        captures.close()
        tap_in.close()
        raw_in.close()
    assert (b"one", Via.TAP, False) in seen and (b"two", Via.TAP, False) in seen
    assert (b"three", Via.RAW, False) in seen
    assert captures.recv_errors == 1 and batches


class FakeSock:
    def __init__(self, family: int, fd: int):
        self.family, self.fd = family, fd

    def fileno(self) -> int:
        return self.fd


def test_kernel_drops_are_counted_once_for_both_counter_kinds(monkeypatch):
    tap_readings = iter([3, 0, 2])      # PACKET_STATISTICS resets when read
    raw_readings = iter([5, 5, 9])      # /proc/net/raw is cumulative
    monkeypatch.setattr(capture.sockets, "tap_drops", lambda sock: next(tap_readings))
    monkeypatch.setattr(capture.sockets, "raw_drops", lambda sock: next(raw_readings))
    captures = CaptureSet([Capture(FakeSock(socket.AF_PACKET, 10), Via.TAP), Capture(FakeSock(socket.AF_INET, 11), Via.RAW)])
    assert [captures.kernel_drops() for _ in range(3)] == [3 + 5, 0 + 0, 2 + 4]


async def test_drain_queued_reads_what_is_waiting_with_its_direction_and_never_blocks():
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(3)]
    (tap_in, tap), (out_in, out), (raw_in, raw) = pairs
    for s in (tap, out, raw):
        s.setblocking(False)
    captures = CaptureSet([Capture(tap, Via.TAP), Capture(out, Via.TAP, outgoing=True), Capture(raw, Via.RAW)])
    try:
        assert captures.sees_leaving
        tap_in.send(b"a reply")
        out_in.send(b"my probe leaving")
        raw_in.send(b"a reply")
        seen = []
        captures.drain_queued(lambda data, via, out, now, wall: seen.append((data, via, out)))
        assert seen == [(b"a reply", Via.TAP, False), (b"my probe leaving", Via.TAP, True), (b"a reply", Via.RAW, False)]
        captures.drain_queued(lambda *a: pytest.fail("read a packet twice"))  # empty now: returns at once
    finally:
        for pair in pairs:
            for s in pair:
                s.close()


def test_only_a_tap_of_what_this_host_sends_sees_leaving():
    assert not CaptureSet([Capture(FakeSock(socket.AF_PACKET, 10), Via.TAP),
                           Capture(FakeSock(socket.AF_PACKET, 11), Via.IP)]).sees_leaving
