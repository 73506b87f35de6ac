"""The trio shell around the ``Prober`` state machine: makes the probe templates before the run,
sends its packets, feeds it what the captures see (its own probes leaving too), wakes it at its
deadlines, and at the end asks the kernel about next hops of probes never seen leaving."""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from netprobe.core import bpf, cookies, templates
from netprobe.core.events import Outcome, ProbeTarget
from netprobe.core.mtu import MTU_RANGE
from netprobe.core.prober import Prober
from netprobe.core.wire import IPPROTO_ICMPV6, IPPROTO_IPIP
from netprobe.net import route, sockets
from netprobe.net.capture import CaptureSet, open_captures, open_captures6

SEND_BATCH = 256  # sends between checkpoints, so the capture tasks keep draining
DEFAULT_RATE = 20_000  # probes/s per source when the request names none: 1,000 peers x 5 checks in 0.25 s
PACE_BATCH = 32  # paced in bursts of this many (a sleep per probe would cost more than the probe)


@dataclass
class ProbeIO:
    """The sockets of a prober: a raw sender and the captures (tap + raw per protocol)."""

    send: Callable[[bytes, str], int | None]
    captures: CaptureSet
    wait_writable: Callable[[], object] | None = None
    close_sender: Callable[[], None] | None = None
    unresolved_next_hops: Callable[[Iterable[str]], set[str]] = route.unresolved_next_hops

    def close(self) -> None:
        if self.close_sender is not None:
            self.close_sender()
        self.captures.close()

    def kernel_drops(self) -> int:
        return self.captures.kernel_drops()


def _probe_io(sender: socket.socket, captures: CaptureSet) -> ProbeIO:
    return ProbeIO(
        send=lambda data, addr: sockets.send_packet(sender, data, addr),
        captures=captures,
        wait_writable=lambda: trio.lowlevel.wait_writable(sender),
        close_sender=sender.close,
    )


def open_probe_io(key: bytes) -> ProbeIO:
    """Real sockets for probes keyed by ``key`` (its marker goes into the capture filters): needs
    root or CAP_NET_RAW (PrivilegeError otherwise)."""
    sender = sockets.open_sender()
    try:
        marker = cookies.marker_of(key)
        # a raw socket per protocol an answer comes in: an IPIP echo is accepted only by protocol 4's
        captures = open_captures(functools.partial(bpf.sender_filter, marker=marker),
                                 (socket.IPPROTO_TCP, socket.IPPROTO_UDP, socket.IPPROTO_ICMP, IPPROTO_IPIP),
                                 leaving=bpf.leaving_filter(marker=marker))
    except BaseException:
        sender.close()
        raise
    return _probe_io(sender, captures)


def open_probe_io6(key: bytes) -> ProbeIO:
    """``open_probe_io`` for IPv6 probes: a raw IPv6 sender of whole packets, an ETH_P_IPV6 tap and
    raw IPv6 sockets for TCP, UDP and ICMPv6."""
    sender = sockets.open_sender6()
    try:
        captures = open_captures6(functools.partial(bpf.sender_filter6, marker=cookies.marker_of(key)),
                                  (socket.IPPROTO_TCP, socket.IPPROTO_UDP, IPPROTO_ICMPV6))
    except BaseException:
        sender.close()
        raise
    return _probe_io(sender, captures)


async def _send_all(prober: Prober, io: ProbeIO, sends, rate: float | None = None) -> None:
    """Send, at most ``rate`` probes/s (None: as fast as the socket takes them); each probe's
    window counts from its own send, so pacing never shortens a window."""
    send, send_done = io.send, prober.send_done
    start = trio.current_time()
    for i, cmd in enumerate(sends):
        if rate and i and i % PACE_BATCH == 0:
            due = start + i / rate
            now = trio.current_time()
            if due > now:
                await trio.sleep(due - now)
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


async def run_prober(prober: Prober, io: ProbeIO, *, wall_clock: Callable[[], int] = time.time_ns,
                     rate: float | None = None) -> list[Outcome]:
    """Run every probe of ``prober`` to completion over ``io``; returns the sender outcomes.

    Wakes at the prober's next deadline, or as soon as a capture task sees the last probe
    answered, whichever comes first. Whether each probe left is decided at the end: what the
    captures still hold is read first, and the next hop of any probe never seen leaving is
    looked up (``route.unresolved_next_hops``): an unresolved one held the probe back, not a filter."""
    finished = trio.Event()
    receive, leaving = prober.receive, prober.leaving
    prober.sees_leaving = io.captures.sees_leaving

    def on_packet(data: bytes, via, outgoing: bool, now: float, _wall_ns: int) -> None:
        if outgoing:
            leaving(data)
        else:
            receive(data, via, now)

    def after_batch() -> None:
        if prober.finished:
            finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(io.captures.drain_all, on_packet, after_batch)
        await trio.lowlevel.checkpoint()
        await _send_all(prober, io, prober.start(trio.current_time(), wall_clock()), rate)
        while not prober.finished:
            deadline = prober.deadline
            if deadline is None:
                break
            # wake by the deadline, but look again now and then: answers shrink the window
            with trio.move_on_at(min(deadline, trio.current_time() + prober.min_window / 2)):
                await finished.wait()
            if prober.finished:
                break
            await _send_all(prober, io, prober.tick(trio.current_time(), wall_clock()), rate)
        nursery.cancel_scope.cancel()
    io.captures.drain_queued(on_packet)
    unseen = prober.unseen() if prober.sees_leaving else set()
    if unseen:
        prober.unresolved(await trio.to_thread.run_sync(io.unresolved_next_hops, unseen))
    return prober.outcomes()


def sized(targets: Sequence[ProbeTarget], mtu: int | None) -> list[ProbeTarget]:
    """``targets`` with the full size each mtu check requires: ``mtu`` when given, else the MTU of
    this host's interface towards the target (at most the largest size a run may require)."""
    from netprobe.net.route import interface_mtu

    known: dict[str, int] = {}
    out = []
    for t in targets:
        if t.check.pmtu and t.mtu is None:
            if t.address not in known:
                known[t.address] = mtu or min(interface_mtu(t.address), MTU_RANGE[1])
            t = dataclasses.replace(t, mtu=known[t.address])
        out.append(t)
    return out


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
    rate: float | None = DEFAULT_RATE,
    mtu: int | None = None,
    ids: Sequence[int] = (),
) -> tuple[list[Outcome], dict]:
    """Probe ``targets`` from ``source`` (every target of ``source``'s family); returns the sender
    outcomes and capture statistics. ``mtu``: the full size mtu checks require (None: each
    interface's MTU, ``sized``). ``ids``: each target's probe id (default: consecutive from a
    random start)."""
    targets = sized(targets, mtu)
    prober = Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), window=window,
                    retries=retries, first_id=random_probe_id_base(), ids=ids)
    own_io = io is None
    io = io or (open_probe_io6 if ":" in source else open_probe_io)(key)
    try:
        outcomes = await run_prober(prober, io, rate=rate)
        stats = dict(prober.stats)
        stats["kernel_drops"] = io.kernel_drops() if own_io else 0
    finally:
        if own_io:
            io.close()
    return outcomes, stats
