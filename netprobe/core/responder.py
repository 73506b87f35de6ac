"""The responder as a state machine: packets in, observations and echoes out, no I/O.

For every probe it records whether it *arrived* (seen on the tap, before netfilter), was
*accepted* (seen on a raw socket, after INPUT) and *answered* (the tap saw this host's
SYN-ACK/RST/ICMP/echo leave). It echoes authenticated, fresh payload probes back to their
sender, so it can't be used as a reflector (docs/design.md, "Probes"):

- a probe's tag covers its whole flow and is keyed for this host's address, so a probe with a
  rewritten address or port, or made for another host, is not authenticated;
- each (source, probe id) is echoed once; echoes are rate-limited per source;
- an echo goes only to the probe's outer source, from the address the probe was sent to (this
  host's own: only a raw socket's packets are echoed), to a probe slot port, never larger than
  what arrived; a VXLAN/IPIP probe whose inner addresses are not exactly those two is not echoed.

Before any MAC is computed, each source gets a bounded rate of packets (``admit_rate``), so a
flood of packets that pass the kernel filter costs a dictionary lookup each. Every table is bounded.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from netprobe.core import cookies
from netprobe.core.checksum import pseudo_sum, store_ip_checksum, store_udp_checksum
from netprobe.core.events import Echo, Observation, Via
from netprobe.core.parse import (Encap, IcmpPacket, PayloadPacket, TcpPacket, ip_str, ipv6_packet, is_unicast,
                                 parse_packet_untrusted)
from netprobe.core.wire import IPPROTO_TCP, IPPROTO_UDP, IPV6_HEADER_LEN, SLOT_BASE
from netprobe.errors import BadPacket

PROTO_NAMES = {Encap.UDP: "udp", Encap.VXLAN: "vxlan", Encap.IPIP: "ipip"}
MAX_SOURCES = 10_000  # per-source buckets kept (beyond: forget them all, as a new start)


@dataclass
class _Bucket:
    tokens: float
    last: float


def _take(buckets: dict, src: bytes, now: float, rate: float, burst: float) -> bool:
    """A token from ``src``'s bucket (refilled at ``rate``/s up to ``burst``), if it has one."""
    bucket = buckets.get(src)
    if bucket is None:
        if len(buckets) >= MAX_SOURCES:
            buckets.clear()
        bucket = buckets[src] = _Bucket(burst, now)
    bucket.tokens = min(burst, bucket.tokens + (now - bucket.last) * rate)
    bucket.last = now
    if bucket.tokens < 1:
        return False
    bucket.tokens -= 1
    return True


def _bounded_put(table: OrderedDict, key, value, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


@dataclass
class ResponderCore:
    key: bytes                   # keys.probe_key of the cluster secret
    max_observations: int = 100_000
    echo_rate: float = 200.0     # echoes per second per source
    echo_burst: float = 400.0
    admit_rate: float = 5_000.0  # packets per second per source that get a MAC computed
    admit_burst: float = 20_000.0
    freshness_ns: int = 30 * 10**9
    is_own_address: Callable[[bytes], bool] | None = None  # the shell's: is this one of our unicast addresses
    _log: OrderedDict = field(default_factory=OrderedDict, init=False)
    _seen: OrderedDict = field(default_factory=OrderedDict, init=False)  # replay guard: (src, id) -> when
    _syns: OrderedDict = field(default_factory=OrderedDict, init=False)  # (src, sport, dport, seq) -> id
    _payloads: OrderedDict = field(default_factory=OrderedDict, init=False)  # authenticated payload -> (src, id)
    _buckets: dict = field(default_factory=dict, init=False)
    _admit: dict = field(default_factory=dict, init=False)
    _keys: cookies.ProbeKeys = field(default=None, init=False)  # type: ignore[assignment]
    stats: dict = field(default_factory=lambda: dict.fromkeys(
        ("probes", "malformed", "unauthenticated", "throttled", "stale", "replayed", "refused",
         "rate_limited", "echoes", "evicted"), 0), init=False)

    def __post_init__(self) -> None:
        self._keys = cookies.ProbeKeys(self.key)

    @property
    def marker(self) -> int:
        """The keyed marker the kernel filters test (``bpf.responder_filter(marker=...)``)."""
        return self._keys.marker

    # ------------------------------------------------------------ events in

    def on_packet(self, data: bytes, *, via: Via, outgoing: bool, now: float, wall_ns: int) -> Echo | None:
        """One packet from the tap (incoming or ``outgoing``) or a raw socket (always incoming)."""
        try:
            pkt = parse_packet_untrusted(data)
        except BadPacket:
            self.stats["malformed"] += 1
            return None
        if isinstance(pkt, TcpPacket):
            self._on_tcp(pkt, via, outgoing, now)
        elif isinstance(pkt, IcmpPacket):
            if outgoing:
                self._on_icmp_answer(pkt)
        elif isinstance(pkt, PayloadPacket):
            return self._on_payload(pkt, data, via, outgoing, now, wall_ns)
        return None

    def _admitted(self, src: bytes, now: float) -> bool:
        if _take(self._admit, src, now, self.admit_rate, self.admit_burst):
            return True
        self.stats["throttled"] += 1
        return False

    def _record(self, src: bytes, probe_id: int, proto: str, via: Via, now: float) -> None:
        key = (src, probe_id)
        obs = self._log.get(key)
        if obs is None:
            self.stats["probes"] += 1
            obs = self._log[key] = Observation(src, probe_id, proto, now)
            if len(self._log) > self.max_observations:
                self._log.popitem(last=False)
                self.stats["evicted"] += 1
        if via is Via.TAP:
            obs.arrived = True
        else:
            obs.accepted = True

    def _answered(self, prober: bytes, probe_id: int | None) -> None:
        obs = self._log.get((prober, probe_id)) if probe_id is not None else None
        if obs is not None:
            obs.answered = True

    def _on_tcp(self, pkt: TcpPacket, via: Via, outgoing: bool, now: float) -> None:
        if outgoing:
            if pkt.is_syn_ack or pkt.is_rst:  # answers the SYN it acknowledges, if that was a probe
                self._answered(pkt.dst, self._syns.get((pkt.dst, pkt.dport, pkt.sport, (pkt.ack - 1) & 0xFFFFFFFF)))
            return
        if not pkt.is_syn or not self._admitted(pkt.src, now):
            return
        pid = cookies.tcp_syn_probe_id(self._keys.for_dest(pkt.dst), pkt.src, pkt.dst, pkt.sport, pkt.dport,
                                       pkt.seq, pkt.tsval)
        if pid is None:
            self.stats["unauthenticated"] += 1
            return
        _bounded_put(self._syns, (pkt.src, pkt.sport, pkt.dport, pkt.seq), pid, self.max_observations)
        self._record(pkt.src, pid, "tcp", via, now)

    def _on_icmp_answer(self, pkt: IcmpPacket) -> None:
        q = pkt.quoted
        if q.proto == IPPROTO_TCP and q.seq is not None:
            self._answered(q.src, self._syns.get((q.src, q.sport, q.dport, q.seq)))
        elif q.payload is not None:
            seen = self._payloads.get(q.payload)  # exactly a probe this host authenticated
            if seen is not None and seen[0] == q.src:
                self._answered(q.src, seen[1])

    def _on_payload(self, pkt: PayloadPacket, data: bytes, via: Via, outgoing: bool, now: float,
                    wall_ns: int) -> Echo | None:
        if outgoing:  # this host's own echo leaving (to its prober, keyed for that address)
            try:
                payload = cookies.verify_payload(self._keys.for_dest(pkt.dst), pkt.payload, pkt.flow())
            except BadPacket:
                return None
            if payload.is_echo:
                self._answered(pkt.dst, payload.probe_id)
            return None
        if not self._admitted(pkt.src, now):
            return None
        try:
            payload = cookies.verify_payload(self._keys.for_dest(pkt.dst), pkt.payload, pkt.flow())
        except BadPacket:
            self.stats["unauthenticated"] += 1
            return None
        if payload.is_echo:
            return None  # an echo to this host's own prober: not a probe
        _bounded_put(self._payloads, pkt.payload, (pkt.src, payload.probe_id), self.max_observations)
        self._record(pkt.src, payload.probe_id, PROTO_NAMES[pkt.encap], via, now)
        if via is not Via.RAW:
            return None  # answer only what INPUT accepted (and so was sent to this host)
        return self._echo(pkt, payload, len(data), now, wall_ns)

    # ------------------------------------------------------------ echoes

    def _echo(self, pkt: PayloadPacket, payload: cookies.ProbePayload, size: int, now: float,
              wall_ns: int) -> Echo | None:
        if not cookies.is_fresh(payload, wall_ns, window_ns=self.freshness_ns):
            self.stats["stale"] += 1
            return None
        if not echo_allowed(pkt) or (self.is_own_address is not None and not self.is_own_address(pkt.dst)):
            self.stats["refused"] += 1
            return None
        seen_key = (pkt.src, payload.probe_id)  # each probe id once per source
        if seen_key in self._seen:
            self.stats["replayed"] += 1
            return None
        if not _take(self._buckets, pkt.src, now, self.echo_rate, self.echo_burst):
            self.stats["rate_limited"] += 1
            return None  # not remembered as seen: a retry may be answered once tokens are back
        self._seen[seen_key] = now
        horizon = now - self.freshness_ns / 1e9 * 2
        while self._seen and (len(self._seen) > self.max_observations or next(iter(self._seen.values())) < horizon):
            self._seen.popitem(last=False)
        echo = echo_payload(self._keys, pkt, payload)
        reply = (build_udp6_echo if len(pkt.src) == 16 else build_udp_echo)(pkt, echo)
        if len(reply) > size:
            return None  # never amplify
        self.stats["echoes"] += 1
        return Echo(ip_str(pkt.src), reply)

    # ------------------------------------------------------------ queries

    def observations(self, since: float = float("-inf")) -> list[dict]:
        return [o.to_dict() for o in self._log.values() if o.first_seen >= since]


def echo_ports(probe: PayloadPacket) -> tuple[int, int]:
    """(source, destination) ports of the echo to ``probe``: from the probed port to the sender's
    slot, what a stateful firewall expects back (for IPIP the inner UDP ports, reversed)."""
    if probe.encap is Encap.VXLAN:
        return probe.outer_dport, probe.outer_sport
    return probe.dport, probe.sport


def echo_allowed(probe: PayloadPacket) -> bool:
    """Whether an authenticated probe may be echoed at all: the echo goes from the probe's outer
    destination to its outer source, both unicast, to a probe slot; a VXLAN/IPIP probe's inner
    packet must go exactly from the outer destination back to the outer source."""
    if not (is_unicast(probe.src) and is_unicast(probe.dst)) or probe.src == probe.dst:
        return False
    if probe.encap is not Encap.UDP and (probe.inner_src != probe.dst or probe.inner_dst != probe.src):
        return False
    return echo_ports(probe)[1] >= SLOT_BASE


def echo_payload(keys: cookies.ProbeKeys, probe: PayloadPacket, payload: cookies.ProbePayload) -> bytes:
    """The echo's payload: the probe's id and timestamp, flagged, its tag keyed for the prober's
    address and covering the echo's own flow (plain UDP, probe dst -> probe src)."""
    sport, dport = echo_ports(probe)
    flow = cookies.flow_bytes(Encap.UDP, probe.dst, probe.src, sport, dport)
    return cookies.encode_payload(keys.for_dest(probe.src),
                                  cookies.ProbePayload(payload.probe_id, payload.timestamp_ns, cookies.FLAG_ECHO,
                                                       keys.marker), flow)


def build_udp_echo(probe: PayloadPacket, payload: bytes, *, ttl: int = 64) -> bytes:
    """The responder's answer to a payload probe: a plain IPv4/UDP packet from the probe's outer
    destination back to its outer source (for IPIP the inner packet, which ``echo_allowed`` made
    sure is exactly that), never larger than what arrived."""
    src, dst = probe.dst, probe.src
    sport, dport = echo_ports(probe)
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, ttl, IPPROTO_UDP, 0, src, dst)
    buf = bytearray(ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    store_ip_checksum(buf)
    store_udp_checksum(buf, 26, 20, pseudo_sum(src, dst, IPPROTO_UDP, udp_len))
    return bytes(buf)


def build_udp6_echo(probe: PayloadPacket, payload: bytes, *, hop_limit: int = 64) -> bytes:
    """``build_udp_echo`` over IPv6 (the UDP checksum is mandatory there)."""
    src, dst = probe.dst, probe.src
    sport, dport = echo_ports(probe)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    buf = bytearray(ipv6_packet(src, dst, IPPROTO_UDP, udp, hop_limit))
    store_udp_checksum(buf, IPV6_HEADER_LEN + 6, IPV6_HEADER_LEN, pseudo_sum(src, dst, IPPROTO_UDP, len(udp)))
    return bytes(buf)
