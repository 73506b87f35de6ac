"""The trio shell around the ``Prober`` state machine: makes the probe templates before the run,
sends its packets, feeds it what the captures see, wakes it at its deadlines. One task per capture
socket: wait_readable, then drain until it would block (never a cancel scope per packet)."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from netprobe.core import bpf, templates
from netprobe.core.events import Outcome, ProbeTarget, Via
from netprobe.core.prober import Prober
from netprobe.net import sockets

SEND_BATCH = 256  # sends between checkpoints, so the capture tasks keep draining


@dataclass
class Capture:
    """One capture socket and what seeing a packet on it means."""

    sock: socket.socket
    via: Via

    def drops(self) -> int:
        if self.sock.family == socket.AF_PACKET:
            return sockets.tap_drops(self.sock)
        return sockets.raw_drops(self.sock)


@dataclass
class ProbeIO:
    """The sockets of a prober: a raw sender and the captures (tap + raw per protocol)."""

    send: Callable[[bytes, str], int | None]
    captures: Sequence[Capture]
    wait_writable: Callable[[], object] | None = None
    closers: list = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()

    def kernel_drops(self) -> int:
        return sum(c.drops() for c in self.captures)


def open_probe_io() -> ProbeIO:
    """Real sockets: needs root or CAP_NET_RAW (PrivilegeError otherwise)."""
    sender = sockets.open_sender()
    opened = [sender]
    try:
        captures = [Capture(sockets.open_tap(bpf.sender_filter(tap=True)), Via.TAP)]
        opened.append(captures[0].sock)
        for proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP):
            cap = Capture(sockets.open_raw_listener(proto, bpf.sender_filter(tap=False)), Via.RAW)
            opened.append(cap.sock)
            captures.append(cap)
    except BaseException:
        for s in opened:
            s.close()
        raise
    return ProbeIO(
        send=lambda data, addr: sockets.send_packet(sender, data, addr),
        captures=captures,
        wait_writable=lambda: trio.lowlevel.wait_writable(sender),
        closers=[s.close for s in opened],
    )


async def _drain_forever(prober: Prober, cap: Capture, finished: trio.Event) -> None:
    sock = cap.sock
    while True:
        await trio.lowlevel.wait_readable(sock)
        now = trio.current_time()
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            prober.receive(data, cap.via, now)
        if prober.finished:
            finished.set()


async def _send_all(prober: Prober, io: ProbeIO, sends) -> None:
    send, send_done = io.send, prober.send_done
    for i, cmd in enumerate(sends):
        while True:
            err = send(cmd.data, cmd.address)
            if err in (errno.EAGAIN, errno.ENOBUFS):
                if io.wait_writable is not None:
                    await io.wait_writable()
                else:
                    await trio.sleep(0)
                continue
            break
        send_done(cmd.probe_id, trio.current_time(), err)
        if i % SEND_BATCH == SEND_BATCH - 1:
            await trio.lowlevel.checkpoint()


async def run_prober(prober: Prober, io: ProbeIO, *, wall_clock: Callable[[], int] = time.time_ns) -> list[Outcome]:
    """Run every probe of ``prober`` to completion over ``io``; returns the sender outcomes.

    Wakes at the prober's next deadline, or as soon as a capture task sees the last probe
    answered, whichever comes first."""
    finished = trio.Event()
    async with trio.open_nursery() as nursery:
        for cap in io.captures:
            nursery.start_soon(_drain_forever, prober, cap, finished)
        await trio.lowlevel.checkpoint()
        await _send_all(prober, io, prober.start(trio.current_time(), wall_clock()))
        while not prober.finished:
            deadline = prober.deadline
            if deadline is None:
                break
            # wake by the deadline, but look again now and then: answers shrink the window
            with trio.move_on_at(min(deadline, trio.current_time() + prober.min_window / 2)):
                await finished.wait()
            if prober.finished:
                break
            await _send_all(prober, io, prober.tick(trio.current_time(), wall_clock()))
        nursery.cancel_scope.cancel()
    return prober.outcomes()


def random_probe_id_base() -> int:
    return int.from_bytes(os.urandom(4), "big")


async def probe_targets(
    source: str,
    targets: Sequence[ProbeTarget],
    *,
    key: bytes,
    window: float,
    retries: int,
    vni: int = 1,
    io=None,
) -> tuple[list[Outcome], dict]:
    """Probe ``targets`` from ``source``; returns the sender outcomes and capture statistics."""
    prober = Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), window=window,
                    retries=retries, first_id=random_probe_id_base())
    own_io = io is None
    io = io or open_probe_io()
    try:
        outcomes = await run_prober(prober, io)
        stats = dict(prober.stats)
        stats["kernel_drops"] = io.kernel_drops() if own_io else 0
    finally:
        if own_io:
            io.close()
    return outcomes, stats
