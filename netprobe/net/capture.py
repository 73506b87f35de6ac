"""Capture sockets and the loop that drains them, shared by the prober shell and the responder.

A capture set is an AF_PACKET tap (a packet arrived, before netfilter) and one raw socket per
protocol (INPUT accepted it), each behind its BPF program; per family (``open_captures``,
``open_captures6``), or both in one set. Each socket is drained by one task: wait until readable,
then recv until it would block (never a cancel scope per packet). What a raw IPv6 socket
delivers gets its IPv6 header back, so every packet handed on starts with its IP header.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from netprobe.core.events import Via
from netprobe.core.parse import ipv6_packet
from netprobe.core.wire import ETH_P_IPV6, PACKET_OUTGOING
from netprobe.net import sockets

# (packet, where it was seen, whether this host sent it, trio time, wall clock ns of the batch)
OnPacket = Callable[[bytes, Via, bool, float, int], None]


@dataclass
class Capture:
    """One capture socket and what seeing a packet on it means. ``outgoing_too``: a tap whose
    filter also passes this host's own packets, so each is read with its direction."""

    sock: socket.socket
    via: Via
    outgoing_too: bool = False
    proto6: int | None = None  # a raw IPv6 socket of this protocol (its packets come without the IPv6 header)


@dataclass
class CaptureSet:
    captures: Sequence[Capture]
    recv_errors: int = 0  # recv failures other than "would block" (the socket's pending error)
    _raw_seen: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captures)

    def close(self) -> None:
        for cap in self.captures:
            cap.sock.close()

    async def drain_all(self, on_packet: OnPacket, after_batch: Callable[[], None] | None = None) -> None:
        """Feed every captured packet to ``on_packet`` until cancelled; ``after_batch`` runs once
        a socket has been read empty."""
        async with trio.open_nursery() as nursery:
            for cap in self.captures:
                nursery.start_soon(self._drain, cap, on_packet, after_batch)

    async def _drain(self, cap: Capture, on_packet: OnPacket, after_batch) -> None:
        sock, via, proto6 = cap.sock, cap.via, cap.proto6
        directed = cap.via is Via.TAP and cap.outgoing_too
        while True:
            await trio.lowlevel.wait_readable(sock)
            now, wall = trio.current_time(), time.time_ns()
            while True:
                try:
                    if directed:
                        data, addr = sock.recvfrom(65535)
                        outgoing = addr[2] == PACKET_OUTGOING
                    elif proto6 is not None:
                        got = sockets.recv_raw6(sock)
                        if got is None:
                            continue
                        data, outgoing = ipv6_packet(got[1], got[2], proto6, got[0]), False
                    else:
                        data, outgoing = sock.recv(65535), False
                except BlockingIOError:
                    break
                except OSError:  # reported once and cleared by the kernel: count it, wait again
                    self.recv_errors += 1
                    break
                on_packet(data, via, outgoing, now, wall)
            if after_batch is not None:
                after_batch()

    def kernel_drops(self) -> int:
        """Captured packets the kernel dropped since the last call (never silent: a lost
        observation can turn a verdict). The tap's counter resets when read; a raw socket's is
        cumulative, so its last reading is kept."""
        drops = 0
        for cap in self.captures:
            if cap.sock.family == socket.AF_PACKET:
                drops += sockets.tap_drops(cap.sock)
            else:
                total = sockets.raw_drops(cap.sock)
                drops += total - self._raw_seen.get(cap.sock.fileno(), 0)
                self._raw_seen[cap.sock.fileno()] = total
        return drops


def open_captures6(program: Callable[..., list], raw_protocols: Iterable[int], *,
                   outgoing_too: bool = False) -> CaptureSet:
    """``open_captures`` for IPv6: an ETH_P_IPV6 tap behind ``program(tap=True)`` and a raw IPv6
    socket per protocol behind ``program(tap=False, proto=...)`` (a ``core.bpf`` ``*_filter6``)."""
    captures: list[Capture] = []
    try:
        captures.append(Capture(sockets.open_tap(program(tap=True), ETH_P_IPV6), Via.TAP, outgoing_too))
        for proto in raw_protocols:
            captures.append(Capture(sockets.open_raw6_listener(proto, program(tap=False, proto=proto)), Via.RAW,
                                    proto6=proto))
    except BaseException:
        for cap in captures:
            cap.sock.close()
        raise
    return CaptureSet(captures)


def open_captures(program: Callable[..., list], raw_protocols: Iterable[int], *, outgoing_too: bool = False) -> CaptureSet:
    """A tap and a raw socket per protocol, each behind ``program(tap=...)`` (a ``core.bpf``
    filter). Needs root or CAP_NET_RAW (PrivilegeError otherwise)."""
    captures: list[Capture] = []
    try:
        captures.append(Capture(sockets.open_tap(program(tap=True)), Via.TAP, outgoing_too))
        for proto in raw_protocols:
            captures.append(Capture(sockets.open_raw_listener(proto, program(tap=False)), Via.RAW))
    except BaseException:
        for cap in captures:
            cap.sock.close()
        raise
    return CaptureSet(captures)
