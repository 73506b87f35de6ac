"""The responder as a state machine: packets in, observations and echoes out, no I/O.

For every probe it records whether it *arrived* (seen on the ETH_P_ALL tap, before the netdev/tc
ingress hooks), *reached IP* (seen on the ETH_P_IP tap, past those hooks), was *accepted* (seen on
a raw socket, after INPUT) and *answered* (a tap saw this host's SYN-ACK/RST/ICMP/echo leave).
Each probe is seen up to three times; only the first copy is parsed and authenticated, the
others are recognised by their bytes (``max_copies`` of them remembered).

It echoes authenticated, fresh payload probes back to their sender, so it can't be used as a
reflector (docs/design.md, "Probes"):

- a probe's tag covers its whole flow and is keyed for this host's address, so a probe with a
  rewritten address or port, or made for another host, is not authenticated;
- each (source, probe id) is echoed once; echoes are rate-limited per source;
- an echo goes only to the probe's outer source, from the address the probe was sent to (this
  host's own: only a raw socket's packets are echoed), in the probe's own encapsulation, to a
  probe slot port (VXLAN: to the VXLAN port it was probed on), never larger than what arrived; a
  VXLAN/IPIP probe whose inner addresses are not exactly those two is not echoed
  (``core/echoes.py``).

Before any MAC is computed, each source gets a bounded rate of packets (``admit_rate``), so a
flood of packets that pass the kernel filter costs a dictionary lookup each. Every table is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from netprobe.core import cookies
from netprobe.core.echoes import build_echo, echo_allowed, echo_payload
from netprobe.core.events import Echo, Observation, Via
from netprobe.core.parse import Encap, IcmpPacket, PayloadPacket, TcpPacket, ip_str, parse_packet_untrusted
from netprobe.core.wire import IPPROTO_TCP
from netprobe.errors import BadPacket

PROTO_NAMES = {Encap.UDP: "udp", Encap.VXLAN: "vxlan", Encap.IPIP: "ipip"}
MAX_SOURCES = 10_000  # per-source buckets kept (beyond: forget them all, as a new start)


@dataclass(frozen=True, slots=True)
class _Authentic:
    """An authenticated probe, remembered by its bytes for the copies still to come."""

    src: bytes
    probe_id: int
    proto: str
    pkt: PayloadPacket | None = None  # a payload probe (what an echo is made from)
    payload: cookies.ProbePayload | None = None


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
    max_observations: int = 100_000  # the agent passes its own bounds (agent/responder.py)
    max_pending: int = 100_000       # probes whose answers can still be matched (they leave at once)
    echo_rate: float = 200.0     # echoes per second per source
    echo_burst: float = 400.0
    admit_rate: float = 5_000.0  # packets per second per source that get a MAC computed
    admit_burst: float = 20_000.0
    freshness_ns: int = 30 * 10**9
    max_copies: int = 16_384     # authenticated probes remembered by their bytes (the other captures' copies)
    is_own_address: Callable[[bytes], bool] | None = None  # the shell's: is this one of our unicast addresses
    _log: OrderedDict = field(default_factory=OrderedDict, init=False)
    _seen: OrderedDict = field(default_factory=OrderedDict, init=False)  # replay guard: (src, id) -> when
    _syns: OrderedDict = field(default_factory=OrderedDict, init=False)  # (src, sport, dport, seq) -> id
    _payloads: OrderedDict = field(default_factory=OrderedDict, init=False)  # authenticated payload -> (src, id)
    _copies: OrderedDict = field(default_factory=OrderedDict, init=False)  # probe bytes -> _Authentic
    _early: OrderedDict = field(default_factory=OrderedDict, init=False)  # answers read before their probe
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
        """One packet from a tap bound to ETH_P_ALL (what arrives, or ``outgoing``: this host's
        answers leaving), the tap bound to ETH_P_IP or a raw socket (both: what arrives)."""
        if not outgoing:
            known = self._copies.get(data)
            if known is not None:  # another capture's copy of a probe already authenticated
                return self._observed(known, data, via, now, wall_ns)
        try:
            pkt = parse_packet_untrusted(data)
        except BadPacket:
            self.stats["malformed"] += 1
            return None
        if isinstance(pkt, TcpPacket):
            self._on_tcp(pkt, data, via, outgoing, now)
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
        elif via is Via.IP:  # past the ingress hooks: it arrived too (IPv6 has only this tap)
            obs.arrived = obs.reached_ip = True
        else:  # INPUT comes after the netdev/tc ingress hooks
            obs.accepted = obs.reached_ip = True

    def _observed(self, probe: _Authentic, data: bytes, via: Via, now: float, wall_ns: int) -> Echo | None:
        """A copy of an authenticated probe: recorded, and echoed when it is the raw socket's."""
        self._record(probe.src, probe.probe_id, probe.proto, via, now)
        if via is not Via.RAW or probe.pkt is None:
            return None  # answer only what INPUT accepted (and so was sent to this host)
        return self._echo(probe.pkt, probe.payload, len(data), now, wall_ns)  # type: ignore[arg-type]

    def _answered(self, prober: bytes, probe_id: int | None) -> None:
        obs = self._log.get((prober, probe_id)) if probe_id is not None else None
        if obs is not None:
            obs.answered = True

    def _answer(self, prober: bytes, key) -> None:
        """This host answered the probe ``key`` names (a SYN's (source, ports, seq), a payload).
        Its answers and its probes come on different sockets, so the answer may be read first:
        then it waits (bounded) for the probe's first copy."""
        found = self._syns.get(key) if isinstance(key, tuple) else self._payloads.get(key)
        if found is None:
            _bounded_put(self._early, key, prober, self.max_copies)
        elif isinstance(key, tuple):
            self._answered(prober, found)
        elif found[0] == prober:  # exactly a probe this host authenticated, from that prober
            self._answered(prober, found[1])

    def _on_tcp(self, pkt: TcpPacket, data: bytes, via: Via, outgoing: bool, now: float) -> None:
        if outgoing:
            if pkt.is_syn_ack or pkt.is_rst:  # answers the SYN it acknowledges, if that was a probe
                self._answer(pkt.dst, (pkt.dst, pkt.dport, pkt.sport, (pkt.ack - 1) & 0xFFFFFFFF))
            return
        if not pkt.is_syn or not self._admitted(pkt.src, now):
            return
        pid = cookies.tcp_syn_probe_id(self._keys.for_dest(pkt.dst), pkt.src, pkt.dst, pkt.sport, pkt.dport,
                                       pkt.seq, pkt.tsval)
        if pid is None:
            self.stats["unauthenticated"] += 1
            return
        key = (pkt.src, pkt.sport, pkt.dport, pkt.seq)
        _bounded_put(self._syns, key, pid, self.max_pending)
        self._remember(data, _Authentic(pkt.src, pid, "tcp"))
        self._record(pkt.src, pid, "tcp", via, now)
        if self._early.pop(key, None) == pkt.src:
            self._answered(pkt.src, pid)

    def _remember(self, data: bytes, probe: _Authentic) -> _Authentic:
        _bounded_put(self._copies, data, probe, self.max_copies)
        return probe

    def _on_icmp_answer(self, pkt: IcmpPacket) -> None:
        q = pkt.quoted
        if q.proto == IPPROTO_TCP and q.seq is not None:
            self._answer(q.src, (q.src, q.sport, q.dport, q.seq))
        elif q.payload is not None:
            self._answer(q.src, q.payload)

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
        _bounded_put(self._payloads, pkt.payload, (pkt.src, payload.probe_id), self.max_pending)
        probe = _Authentic(pkt.src, payload.probe_id, PROTO_NAMES[pkt.encap], pkt, payload)
        echo = self._observed(self._remember(data, probe), data, via, now, wall_ns)
        if self._early.pop(pkt.payload, None) == pkt.src:  # an ICMP error about it, read first
            self._answered(pkt.src, payload.probe_id)
        return echo

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
        reply = build_echo(pkt, echo_payload(self._keys, pkt, payload))
        if len(reply) > size:
            return None  # never amplify
        self.stats["echoes"] += 1
        return Echo(ip_str(pkt.src), reply)

    # ------------------------------------------------------------ queries

    def observations(self, since: float = float("-inf")) -> list[dict]:
        return [o.to_dict() for o in self.records(since)]

    def records(self, since: float = float("-inf")) -> list[Observation]:
        """The observations first seen at ``since`` or later, as kept (no dict each)."""
        return [o for o in self._log.values() if o.first_seen >= since]

