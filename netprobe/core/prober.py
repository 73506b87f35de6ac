"""The prober as a state machine (mitmproxy/h11 style): events in, commands out, no I/O.

The trio shell (netprobe.net.prober) feeds it what happened (a send succeeded or was refused, a
packet was seen on the tap or on a raw socket, one of its probes was seen leaving, time passed)
and carries out what it returns:
``Send`` commands, and a deadline to wake up at. Everything about retries, reply windows and
matching replies back to probes lives here, so it is tested without sockets or clocks. Probes
are built from templates the shell made before the run (``templates.for_targets``): running the
state machine never loads scapy.
"""

from __future__ import annotations

import errno as errno_mod
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from netprobe.core import cookies
from netprobe.core.checks import Proto
from netprobe.core.events import Outcome, ProbeTarget, Send, Via
from netprobe.core.mtu import MtuSearch
from netprobe.core.parse import Encap, IcmpPacket, PayloadPacket, TcpPacket, ip_bytes, ip_str, parse_packet_untrusted
from netprobe.core.result import Evidence, Icmp, ReplyKind
from netprobe.core.templates import Template, TemplateKey, TcpSynTemplate, template_key
from netprobe.core.wire import (IPIP_PAYLOAD_OFFSET, IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, PAYLOAD_FLAGS_OFFSET,
                                SLOT_BASE, SLOT_MASK, VXLAN_PAYLOAD_OFFSET)
from netprobe.errors import BadPacket

# The encapsulations an echo to each kind of payload probe may come back in: its own, or plain
# UDP from an agent older than echoes in the probe's encapsulation.
ECHO_ENCAPS = {Proto.UDP: (Encap.UDP,), Proto.IPIP: (Encap.IPIP, Encap.UDP), Proto.VXLAN: (Encap.VXLAN, Encap.UDP)}


@dataclass(slots=True)
class _Probe:
    probe_id: int
    target: ProbeTarget
    source: str
    tpl: Template
    dst: bytes = b""      # target address, packed
    port: int = 0
    seq: int | None = None  # TCP: the keyed sequence number, the same on every attempt
    attempts: int = 0
    sent_ok: int = 0
    last_sent: float | None = None
    send_error: str | None = None
    reply: ReplyKind | None = None
    icmp: Icmp | None = None
    reply_arrived: bool = False
    reply_accepted: bool = False
    rtt: float | None = None
    done: bool = False
    left: bool = False  # some attempt was seen leaving (after tc/netdev egress)
    size: int | None = None          # an mtu probe: its full outer size (core/mtu.py)
    search: MtuSearch | None = None  # ... and the search for its path MTU, once the full size got no echo
    step_at: float | None = None     # when the search's step in flight went out


_TCP_FAST = struct.Struct("!HHIIBB")
TSVAL = TcpSynTemplate.TSVAL  # where a probe SYN carries its id
_SEQ_TSVAL = struct.Struct("!II")
_UDP_PAYLOAD, _VXLAN_PAYLOAD, _IPIP_PAYLOAD = 20 + 8, 20 + VXLAN_PAYLOAD_OFFSET, 20 + IPIP_PAYLOAD_OFFSET

MIN_WINDOW = 0.2  # s: the shortest a reply window adapts to
RTT_FACTOR = 4.0  # the window adapts to this many times the slowest answer seen


def adapted_window(window: float, max_rtt: float | None, min_window: float = MIN_WINDOW,
                   factor: float = RTT_FACTOR) -> float:
    """The reply window once answers were timed (``max_rtt`` s, the slowest): ``factor`` times it,
    within ``min_window``..``window``; ``window`` while nothing was timed."""
    return window if max_rtt is None else min(window, max(min_window, factor * max_rtt))


@dataclass
class Prober:
    """Probe ``targets`` from ``source`` with a reply ``window`` (s) and ``retries``; each probe
    is built from its entry in ``templates`` (``templates.for_targets``).

    ``window`` is the longest wait for an answer. Once answers arrive the wait adapts, as nmap's
    and TCP's retransmission timers do: ``rtt_factor`` times the slowest answer seen, never
    under ``min_window``. Answers that come later still count until the run ends.

    Probe ids are ``first_id``, ``first_id+1``, ... (the caller picks a random start so runs don't
    collide at the responders; an mtu search's probes take the ids after the targets'), or
    ``ids[i]`` for target ``i`` when given (the explain round re-sends probes whose ids, and so
    whose flows, the coordinator chose).

    ``sees_leaving``: the shell's tap sees this host's packets leave (ETH_P_ALL, after the
    netdev/tc egress hooks) and feeds them to ``leaving``; then each probe's evidence says whether
    it ``left``. Whether one did is decided when the run ends, after every probe's window: a
    probe may be seen leaving a little after its send returned, and any attempt counts.

    An ``mtu`` target (``Check.pmtu``) is its encapsulation's probe padded to ``target.mtu``
    bytes. When its window passes without its echo, each later window is a step of its
    ``MtuSearch`` (a retry of the full size rides along while it has attempts left); its
    outcome carries the path MTU found.
    """

    key: bytes
    source: str
    targets: Sequence[ProbeTarget]
    templates: Mapping[TemplateKey, Template]
    window: float = 1.0
    min_window: float = MIN_WINDOW
    rtt_factor: float = RTT_FACTOR
    retries: int = 1
    first_id: int = 0
    sees_leaving: bool = False
    _unresolved: set[str] = field(default_factory=set, init=False)  # next hop never resolved: `left` unknown
    ids: Sequence[int] = ()
    _probes: dict[int, _Probe] = field(default_factory=dict, init=False)
    _by_flow: dict[tuple, int] = field(default_factory=dict, init=False)
    _by_seq: dict[tuple, _Probe] = field(default_factory=dict, init=False)  # TCP: (dst, dport, sport, seq)
    _sent_payloads: dict[bytes, _Probe] = field(default_factory=dict, init=False)  # for quoted payloads
    _sent_syns: dict[bytes, _Probe] = field(default_factory=dict, init=False)  # seq + TSval bytes: seen leaving
    _search_ids: dict[int, tuple[_Probe, int]] = field(default_factory=dict, init=False)  # id -> (mtu probe, size)
    _next_id: int = field(default=0, init=False)
    _src_bytes: bytes = field(default=b"", init=False)
    _keys: cookies.ProbeKeys = field(default=None, init=False)  # type: ignore[assignment]
    _own_key: bytes = field(default=b"", init=False)  # echoes to us are keyed with our address's key
    _max_rtt: float | None = field(default=None, init=False)
    _done: int = field(default=0, init=False)
    stats: dict[str, int] = field(default_factory=lambda: {"ignored": 0, "malformed": 0, "matched": 0}, init=False)

    def __post_init__(self) -> None:
        self._src_bytes = ip_bytes(self.source)
        self._keys = cookies.ProbeKeys(self.key)
        self._own_key = self._keys.for_dest(self._src_bytes)
        packed: dict[str, bytes] = {}
        for i, target in enumerate(self.targets):
            pid = (self.ids[i] if self.ids else self.first_id + i) & cookies.ID_MASK
            dst = packed.get(target.address)
            if dst is None:
                dst = packed[target.address] = ip_bytes(target.address)
            tpl = self.templates[template_key(target.check.proto, target.check.port, target.address, target.ttl)]
            if target.check.pmtu and target.mtu is None:
                raise ValueError(f"mtu check towards {target.address} without a size to probe")
            self._probes[pid] = _Probe(pid, target, self.source, tpl, dst, target.check.port or 0,
                                       size=target.mtu if target.check.pmtu else None)
            slot = cookies.slot_of(pid)
            proto = target.check.proto
            if proto is Proto.IPIP:
                self._by_flow.setdefault((IPPROTO_IPIP, dst, 0, slot), pid)
            elif proto in (Proto.UDP, Proto.VXLAN):
                self._by_flow.setdefault((IPPROTO_UDP, dst, target.check.port, slot), pid)
        self._next_id = (self.first_id + len(self.targets)) & cookies.ID_MASK

    # ------------------------------------------------------------ commands out

    def start(self, now: float, wall_ns: int) -> list[Send]:
        """The first attempt of every probe, all at once (filtered probes cost one window)."""
        return [self._attempt(p, now, wall_ns) for p in self._probes.values()]

    def tick(self, now: float, wall_ns: int) -> list[Send]:
        """Retransmit probes whose window passed without a final answer; finish the rest."""
        sends = []
        window = self.effective_window
        for p in self._probes.values():
            if p.done or p.last_sent is None or now < self._since(p) + window:
                continue
            if p.size is not None and p.reply is not ReplyKind.ECHO:
                sends += self._search_step(p, now, wall_ns)
            elif p.reply is None and p.attempts <= self.retries:
                sends.append(self._attempt(p, now, wall_ns))
            else:
                self._finish(p)
        return sends

    def _search_step(self, p: _Probe, now: float, wall_ns: int) -> list[Send]:
        """The next step of an mtu probe's search (its full size got no echo), with a retry of
        the full size while it has attempts left; the probe is finished when neither is left."""
        if p.search is None:
            p.search = MtuSearch(p.size, len(p.tpl.template))  # type: ignore[arg-type]
        sends = [self._search_probe(p, size, wall_ns) for size in p.search.next_step()]
        if p.attempts <= self.retries:
            sends.append(self._attempt(p, now, wall_ns))
        if sends:
            p.step_at = now
        else:
            self._finish(p)
        return sends

    def _search_probe(self, p: _Probe, size: int, wall_ns: int) -> Send:
        pid, self._next_id = self._next_id, (self._next_id + 1) & cookies.ID_MASK
        self._search_ids[pid] = (p, size)
        slot = SLOT_BASE | (pid & SLOT_MASK)
        payload = cookies.encode_payload(self._keys.for_dest(p.dst),
                                         cookies.ProbePayload(pid, wall_ns, 0, self._keys.marker), p.tpl.flow(slot))
        return Send(pid, p.target.address, p.tpl.build(slot, payload, size))  # type: ignore[call-arg]

    @staticmethod
    def _since(p: _Probe) -> float:
        """When the probe's current wait began: its last send, or its search step's."""
        return p.last_sent if p.step_at is None else max(p.last_sent, p.step_at)  # type: ignore[type-var]

    @property
    def effective_window(self) -> float:
        """The reply window now: ``window`` until an answer is timed, then adapted to the RTT."""
        return adapted_window(self.window, self._max_rtt, self.min_window, self.rtt_factor)

    @property
    def deadline(self) -> float | None:
        """When ``tick`` must next be called (None: nothing pending)."""
        pending = [self._since(p) for p in self._probes.values() if not p.done and p.last_sent is not None]
        return min(pending) + self.effective_window if pending else None

    @property
    def finished(self) -> bool:
        return self._done == len(self._probes)  # O(1): the capture tasks ask after every batch

    def _finish(self, p: _Probe) -> None:
        if not p.done:
            p.done = True
            self._done += 1

    def _attempt(self, p: _Probe, now: float, wall_ns: int) -> Send:
        p.attempts += 1
        p.last_sent = now
        return Send(p.probe_id, p.target.address, self._build(p, wall_ns))

    def _build(self, p: _Probe, wall_ns: int) -> bytes:
        slot = SLOT_BASE | (p.probe_id & SLOT_MASK)
        dkey = self._keys.for_dest(p.dst)
        if p.target.check.proto is Proto.TCP:
            if p.seq is None:
                p.seq = cookies.tcp_seq(dkey, p.probe_id, self._src_bytes, p.dst, p.port)
                self._by_seq[(p.dst, p.port, slot, p.seq)] = p
                self._sent_syns[_SEQ_TSVAL.pack(p.seq, p.probe_id)] = p
            return p.tpl.build(slot, p.seq, slot ^ self._keys.marker, p.probe_id)  # cookies.syn_ip_id
        payload = cookies.encode_payload(dkey, cookies.ProbePayload(p.probe_id, wall_ns, 0, self._keys.marker),
                                         p.tpl.flow(slot))
        self._sent_payloads[payload] = p  # an ICMP error quoting it names exactly this attempt
        if p.size is not None:
            return p.tpl.build(slot, payload, p.size)  # type: ignore[call-arg]
        return p.tpl.build(slot, payload)

    # ------------------------------------------------------------ events in

    def send_done(self, probe_id: int, now: float, error: int | None = None) -> None:
        """A send finished; ``error`` is its errno (EPERM: this host's OUTPUT refused it)."""
        p = self._probes.get(probe_id)
        if p is None:  # an mtu search's probe: one that could not leave simply is not echoed
            return
        if error is None:
            p.sent_ok += 1
            p.last_sent = now  # rtt and the window count from the moment the packet really left
            return
        p.send_error = os.strerror(error) if error in errno_mod.errorcode else str(error)
        if error in (errno_mod.EPERM, errno_mod.EACCES) and p.sent_ok == 0:
            self._finish(p)  # a refused send is the answer: retrying can't change it

    def receive(self, data: bytes, via: Via, now: float) -> int | None:
        """A packet seen on the tap or a raw socket. Returns the probe id it answered, if any."""
        match = self._match_tcp_fast(data)
        if match is None:
            try:
                pkt = parse_packet_untrusted(data)
            except BadPacket:
                self.stats["malformed"] += 1
                return None
            if isinstance(pkt, PayloadPacket):
                return self._receive_echo(pkt, via, now)
            match = self._match(pkt)
        if match is False or match is None:
            self.stats["ignored"] += 1
            return None
        return self._answered(*match, via, now)

    def _receive_echo(self, pkt: PayloadPacket, via: Via, now: float) -> int | None:
        """An echo (or anything else carrying a payload): of one of our probes, of an mtu search's
        probe (its size arrived), or to be ignored."""
        payload = self._echo_to_us(pkt)
        if payload is not None:
            p = self._probes.get(payload.probe_id)
            if p is not None and self._echo_of(p, pkt):
                return self._answered(p, ReplyKind.ECHO, None, via, now)
            owner, size = self._search_ids.get(payload.probe_id, (None, 0))
            if owner is not None and owner.search is not None and self._echo_of(owner, pkt):
                self.stats["matched"] += 1
                owner.search.echoed(size)
                return payload.probe_id
        self.stats["ignored"] += 1
        return None

    def _echo_to_us(self, pkt: PayloadPacket) -> cookies.ProbePayload | None:
        """The payload of an authenticated echo to this prober's address, else None (a probe from
        a peer to this host is told by its flags before any MAC is computed)."""
        if pkt.dst != self._src_bytes or not pkt.payload[PAYLOAD_FLAGS_OFFSET] & cookies.FLAG_ECHO:
            return None
        try:
            payload = cookies.verify_payload(self._own_key, pkt.payload, pkt.flow())
        except BadPacket:
            return None
        return payload if payload.is_echo else None

    @staticmethod
    def _echo_of(p: _Probe, pkt: PayloadPacket) -> bool:
        """Whether an authenticated echo came from ``p``'s target, in an encapsulation its probe's echo may take."""
        return pkt.src == p.dst and pkt.encap in ECHO_ENCAPS.get(p.target.check.proto, ())

    def _answered(self, p: _Probe, kind: ReplyKind, icmp: Icmp | None, via: Via, now: float) -> int:
        self.stats["matched"] += 1
        if p.reply is None or (p.reply is ReplyKind.ICMP and kind is not ReplyKind.ICMP):
            p.reply, p.icmp = kind, icmp
        if p.rtt is None and p.last_sent is not None:
            p.rtt = max(0.0, now - p.last_sent)
            if p.attempts == 1:  # a retransmitted probe's answer can't be timed (Karn)
                self._max_rtt = p.rtt if self._max_rtt is None else max(self._max_rtt, p.rtt)
        if via is not Via.RAW:  # a tap: it arrived (IPv6's sees it past the tc/netdev ingress hooks)
            p.reply_arrived = True
        else:
            p.reply_accepted = True
            p.reply_arrived = True  # accepted implies it arrived (the tap may just be later)
            if kind is not ReplyKind.ICMP or p.target.check.proto is Proto.TCP:
                # a payload probe's ICMP error (a port or protocol with no socket) may still be
                # followed by the responder's echo, the better evidence: keep listening
                self._finish(p)
        return p.probe_id

    def leaving(self, data: bytes) -> int | None:
        """A probe of ours seen leaving on the tap; returns its id. Known by what the probe carries
        (a SYN's TSval and keyed sequence number, a payload's exact bytes), so a source NAT on the
        way out does not hide it."""
        if len(data) < 20 or data[0] != 0x45:  # our probes carry no IP options
            return self._ignore()
        proto, sent = data[9], self._sent_payloads
        if proto == IPPROTO_TCP:
            p = self._sent_syns.get(data[24:28] + data[TSVAL:TSVAL + 4])
        elif proto == IPPROTO_IPIP:
            p = sent.get(data[_IPIP_PAYLOAD:_IPIP_PAYLOAD + cookies.PAYLOAD_LEN])
        else:  # UDP, or VXLAN
            p = (sent.get(data[_UDP_PAYLOAD:_UDP_PAYLOAD + cookies.PAYLOAD_LEN])
                 or sent.get(data[_VXLAN_PAYLOAD:_VXLAN_PAYLOAD + cookies.PAYLOAD_LEN]))
        if p is None:
            return self._ignore()
        p.left = True
        return p.probe_id

    def _ignore(self) -> None:
        self.stats["ignored"] += 1

    def unseen(self) -> set[str]:
        """Addresses with a probe sent that was never seen leaving (so far)."""
        return {p.target.address for p in self._probes.values() if p.sent_ok and not p.left}

    def unresolved(self, addresses) -> None:
        """The shell found these addresses' next hop unresolved (ARP never answered): their probes
        waited in the neighbour queue, never reached the device, and say nothing of a filter."""
        self._unresolved.update(addresses)

    def _left(self, p: _Probe) -> bool | None:
        if not self.sees_leaving or not p.sent_ok or (not p.left and p.target.address in self._unresolved):
            return None
        return p.left

    def _match_tcp_fast(self, data: bytes):
        """The common case, a plain SYN-ACK or RST, without building a parsed packet: a match,
        False (TCP but not ours), or None (not a plain TCP reply: take the full parser)."""
        if data and data[0] >> 4 == 6:
            return self._match_tcp6_fast(data)
        if len(data) < 40 or data[0] != 0x45 or data[9] != IPPROTO_TCP or data[6] & 0x3F or data[7]:
            return None
        sport, dport, _seq, ack, _off, flags = _TCP_FAST.unpack_from(data, 20)
        if data[16:20] != self._src_bytes:
            return False
        return self._match_tcp(data[12:16], sport, dport, ack, flags)

    def _match_tcp6_fast(self, data: bytes):
        """``_match_tcp_fast`` for IPv6: a TCP header right after the IPv6 header."""
        if len(data) < 60 or data[6] != IPPROTO_TCP:
            return None
        sport, dport, _seq, ack, _off, flags = _TCP_FAST.unpack_from(data, 40)
        if data[24:40] != self._src_bytes:
            return False
        return self._match_tcp(data[8:24], sport, dport, ack, flags)

    def _match_tcp(self, src: bytes, sport: int, dport: int, ack: int, flags: int):
        syn_ack = flags & 0x16 == 0x12
        if not (syn_ack or flags & 0x04):
            return False
        # the exact keyed (address, ports, sequence) we sent, so a guess can't match
        p = self._by_seq.get((src, sport, dport, (ack - 1) & 0xFFFFFFFF))
        if p is None:
            return False
        return p, (ReplyKind.SYN_ACK if syn_ack else ReplyKind.RST), None

    def _match(self, pkt: TcpPacket | IcmpPacket) -> tuple[_Probe, ReplyKind, Icmp | None] | None:
        if isinstance(pkt, TcpPacket):
            if pkt.dst != self._src_bytes:
                return None
            return self._match_tcp(pkt.src, pkt.sport, pkt.dport, pkt.ack, pkt.flags) or None
        if isinstance(pkt, IcmpPacket):
            q = pkt.quoted
            if q.src != self._src_bytes:
                return None
            p = None
            if q.proto == IPPROTO_TCP and q.seq is not None:
                p = self._by_seq.get((q.dst, q.dport, q.sport, q.seq))
            elif q.payload is not None:
                p = self._sent_payloads.get(q.payload)  # exactly a payload we sent
                if p is None:
                    return None
            elif q.proto == IPPROTO_UDP:
                p = self._probes.get(self._by_flow.get((IPPROTO_UDP, q.dst, q.dport, q.sport), -1))
            elif q.proto == IPPROTO_IPIP:
                p = self._probes.get(self._by_flow.get((IPPROTO_IPIP, q.dst, 0, q.ip_id), -1))
            if p is None or q.dst != p.dst:
                return None
            return p, ReplyKind.ICMP, Icmp(pkt.type, pkt.code, ip_str(pkt.src))
        return None

    # ------------------------------------------------------------ outcomes

    def outcomes(self) -> list[Outcome]:
        out = []
        for p in self._probes.values():
            ev = Evidence(
                sent=p.sent_ok > 0,
                reply=p.reply,
                icmp=p.icmp,
                reply_arrived=p.reply_arrived,
                reply_accepted=p.reply_accepted,
                attempts=p.attempts,
                send_error=p.send_error,
                left=self._left(p),
                **self._mtu_evidence(p),
            )
            out.append(Outcome(p.probe_id, p.target, p.source, ev, None if p.rtt is None else p.rtt * 1000))
        return out

    @staticmethod
    def _mtu_evidence(p: _Probe) -> dict:
        """An mtu probe's figures: the full size when its echo came, else what its search found."""
        if p.size is None:
            return {}
        if p.reply is ReplyKind.ECHO:
            path_mtu: int | None = p.size
        else:
            path_mtu = None if p.search is None else p.search.path_mtu
        return {"path_mtu": path_mtu, "mtu": p.size, "overlay": str(p.target.check.proto)}
