"""The responder as a state machine: packets in, observations and echoes out, no I/O.

For every probe it records whether it *arrived* (seen on the tap, before netfilter), was
*accepted* (seen on a raw socket, after INPUT) and *answered* (the tap saw this host's
SYN-ACK/RST/ICMP/echo leave). It echoes authenticated, fresh, never-seen payload probes back to
their sender, rate-limited per source and never larger than what arrived, so it can't be used as
a reflector. Every table it keeps is bounded.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from netprobe.core import cookies
from netprobe.core.checksum import pseudo_sum, store_ip_checksum, store_udp_checksum
from netprobe.core.events import Echo, Observation, Via
from netprobe.core.parse import Encap, IcmpPacket, PayloadPacket, TcpPacket, ip_str, parse_packet_untrusted
from netprobe.core.wire import IPPROTO_TCP, IPPROTO_UDP
from netprobe.errors import BadPacket

PROTO_NAMES = {Encap.UDP: "udp", Encap.VXLAN: "vxlan", Encap.IPIP: "ipip"}


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass
class ResponderCore:
    key: bytes
    max_observations: int = 100_000
    echo_rate: float = 200.0     # echoes per second per source
    echo_burst: float = 400.0
    freshness_ns: int = 30 * 10**9
    _log: OrderedDict = field(default_factory=OrderedDict, init=False)
    _seen: OrderedDict = field(default_factory=OrderedDict, init=False)  # replay guard
    _buckets: dict = field(default_factory=dict, init=False)
    stats: dict = field(default_factory=lambda: dict.fromkeys(
        ("probes", "malformed", "unauthenticated", "stale", "replayed", "rate_limited", "echoes",
         "evicted"), 0), init=False)

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
            if pkt.is_syn_ack or pkt.is_rst:
                pid = cookies.tcp_probe_id(self.key, pkt.dst, pkt.src, pkt.dport, pkt.sport,
                                           (pkt.ack - 1) & 0xFFFFFFFF)
                self._answered(pkt.dst, pid)
            return
        if not pkt.is_syn:
            return
        pid = cookies.tcp_probe_id(self.key, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq)
        if pid is None:
            self.stats["unauthenticated"] += 1
            return
        self._record(pkt.src, pid, "tcp", via, now)

    def _on_icmp_answer(self, pkt: IcmpPacket) -> None:
        q = pkt.quoted
        if q.proto == IPPROTO_TCP and q.seq is not None:
            self._answered(q.src, cookies.tcp_probe_id(self.key, q.src, q.dst, q.sport, q.dport, q.seq))
        elif q.payload is not None:
            try:
                self._answered(q.src, cookies.verify_payload(self.key, q.payload).probe_id)
            except BadPacket:
                pass

    def _on_payload(self, pkt: PayloadPacket, data: bytes, via: Via, outgoing: bool, now: float,
                    wall_ns: int) -> Echo | None:
        try:
            payload = cookies.verify_payload(self.key, pkt.payload)
        except BadPacket:
            if not outgoing:
                self.stats["unauthenticated"] += 1
            return None
        if outgoing:
            if payload.is_echo:
                self._answered(pkt.dst, payload.probe_id)
            return None
        if payload.is_echo:
            return None  # an echo to this host's own prober: not a probe
        self._record(pkt.src, payload.probe_id, PROTO_NAMES[pkt.encap], via, now)
        if via is not Via.RAW:
            return None  # answer only what INPUT accepted
        return self._echo(pkt, payload, len(data), now, wall_ns)

    # ------------------------------------------------------------ echoes

    def _echo(self, pkt: PayloadPacket, payload: cookies.ProbePayload, size: int, now: float,
              wall_ns: int) -> Echo | None:
        if not cookies.is_fresh(payload, wall_ns, window_ns=self.freshness_ns):
            self.stats["stale"] += 1
            return None
        # replay guard and rate limit are keyed by where the echo goes (for IPIP the inner
        # destination), so rewriting an outer source can't make a probe echo again
        target = pkt.inner_dst if pkt.encap is Encap.IPIP else pkt.src
        seen_key = (target, payload.probe_id, payload.timestamp_ns)
        if seen_key in self._seen:
            self.stats["replayed"] += 1
            return None
        self._seen[seen_key] = now
        while self._seen and (len(self._seen) > self.max_observations
                              or next(iter(self._seen.values())) < now - self.freshness_ns / 1e9 * 2):
            self._seen.popitem(last=False)
        if not self._take_token(target, now):
            self.stats["rate_limited"] += 1
            return None
        body = cookies.encode_payload(self.key, cookies.ProbePayload(payload.probe_id, payload.timestamp_ns,
                                                                     cookies.FLAG_ECHO))
        reply = build_udp_echo(pkt, body)
        if len(reply) > size:
            return None  # never amplify
        self.stats["echoes"] += 1
        return Echo(ip_str(target), reply)

    def _take_token(self, src: bytes, now: float) -> bool:
        bucket = self._buckets.get(src)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._buckets.clear()
            bucket = self._buckets[src] = _Bucket(self.echo_burst, now)
        bucket.tokens = min(self.echo_burst, bucket.tokens + (now - bucket.last) * self.echo_rate)
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    # ------------------------------------------------------------ queries

    def observations(self, since: float = float("-inf")) -> list[dict]:
        return [o.to_dict() for o in self._log.values() if o.first_seen >= since]


def build_udp_echo(probe: PayloadPacket, payload: bytes, *, ttl: int = 64) -> bytes:
    """The responder's answer to a payload probe: a plain IPv4/UDP packet back to the sender,
    never larger than what arrived. For UDP and VXLAN probes it goes from the probed port to the
    sender's slot (what a stateful firewall expects back); for IPIP it is the inner packet,
    exactly what a decapsulating host would have routed home."""
    if probe.encap is Encap.IPIP:
        src, dst, sport, dport = probe.inner_src, probe.inner_dst, probe.sport, probe.dport
    elif probe.encap is Encap.VXLAN:
        src, dst, sport, dport = probe.dst, probe.src, probe.outer_dport, probe.outer_sport
    else:
        src, dst, sport, dport = probe.dst, probe.src, probe.dport, probe.sport
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, ttl, IPPROTO_UDP, 0, src, dst)
    buf = bytearray(ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    store_ip_checksum(buf)
    store_udp_checksum(buf, 26, 20, pseudo_sum(src, dst, IPPROTO_UDP, udp_len))
    return bytes(buf)
