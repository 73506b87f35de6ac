"""Probe builders and reply parsers.

Builders: scapy designs each probe once per (source, target, port) as a template; per probe only the
slot, sequence number or payload is patched in with struct and the checksum redone (DESIGN section
10: scapy is the designer, not the data path). scapy is imported lazily, so parsing-only users (the
responder's hot path) never pay for it.

Parsers (``*_untrusted``): struct only, over an IPv4 packet as an AF_PACKET SOCK_DGRAM tap or a raw
IPv4 socket delivers it; they return small frozen dataclasses and raise only BadPacket.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

from netprobe.core.checks import VXLAN_PORT
from netprobe.core.cookies import MAGIC, PAYLOAD_LEN
from netprobe.errors import BadPacket

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Inner Ethernet addresses of VXLAN probes: locally administered, never a real NIC's.
VXLAN_INNER_SRC_MAC = "02:6e:70:00:00:01"
VXLAN_INNER_DST_MAC = "02:6e:70:00:00:02"

_LITTLE = sys.byteorder == "little"


class Encap(IntEnum):
    """How a payload probe travels."""

    UDP = 1
    VXLAN = 2
    IPIP = 3


# ---------------------------------------------------------------- checksums


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 one's complement sum in native byte order (pack the result with ``=H``)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return _fold(sum(array("H", bytes(data))))


def inet_checksum(data: bytes | bytearray, initial: int = 0) -> int:
    """The Internet checksum of ``data`` in network byte order, as an int."""
    csum = ~_fold(ones_sum(data) + initial) & 0xFFFF
    return ((csum >> 8) | (csum << 8)) & 0xFFFF if _LITTLE else csum


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return ones_sum(src + dst + struct.pack("!BBH", 0, proto, length))


def _store_checksum(buf: bytearray, offset: int, start: int, pseudo: int) -> None:
    """Zero the checksum at ``offset`` and store the checksum of buf[start:] + pseudo header."""
    buf[offset : offset + 2] = b"\0\0"
    csum = ~_fold(ones_sum(memoryview(buf)[start:]) + pseudo) & 0xFFFF
    struct.pack_into("=H", buf, offset, csum)


def _store_ip_checksum(buf: bytearray) -> None:
    buf[10:12] = b"\0\0"
    struct.pack_into("=H", buf, 10, ~_fold(ones_sum(memoryview(buf)[:20])) & 0xFFFF)


def _store_udp_checksum(buf: bytearray, offset: int, start: int, pseudo: int) -> None:
    _store_checksum(buf, offset, start, pseudo)
    if buf[offset : offset + 2] == b"\0\0":  # 0 means "no checksum" in UDP: send all ones
        buf[offset : offset + 2] = b"\xff\xff"


# ---------------------------------------------------------------- builders


def load_designer() -> None:
    """Import the scapy layers now (a daemon does it before it says it is ready)."""
    _scapy()


def _scapy():
    from scapy.layers.inet import IP, TCP, UDP  # only the layers used, never scapy.all
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    return IP, TCP, UDP, Ether, VXLAN


@functools.lru_cache(maxsize=256)
def _design(kind: str, port: int, vni: int, ttl: int) -> bytes:
    """scapy designs each probe kind once per port (and VNI), with 0.0.0.0 for the addresses;
    every target then gets a copy with its addresses patched in (``_addressed``), so a mesh of
    N hosts costs scapy one build per kind, not one per peer."""
    IP, TCP, UDP, Ether, VXLAN = _scapy()
    zero = "0.0.0.0"
    body = b"\0" * PAYLOAD_LEN
    if kind == "tcp":
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF") / TCP(
            sport=0, dport=port, seq=0, flags="S", window=64240, chksum=0,
            options=[("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)])
    elif kind == "udp":
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF") / UDP(sport=SLOT_PLACEHOLDER, dport=port) / body
    elif kind == "vxlan":
        inner = Ether(src=VXLAN_INNER_SRC_MAC, dst=VXLAN_INNER_DST_MAC, type=0x0800) / IP(
            src=zero, dst=zero, ttl=64, id=0, flags="DF") / UDP(
            sport=SLOT_PLACEHOLDER, dport=SLOT_PLACEHOLDER, chksum=0) / body
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF") / UDP(
            sport=SLOT_PLACEHOLDER, dport=port, chksum=0) / VXLAN(flags=0x08, vni=vni) / inner
    elif kind == "ipip":
        inner = IP(src=zero, dst=zero, ttl=64, id=0, flags="DF") / UDP(
            sport=SLOT_PLACEHOLDER, dport=SLOT_PLACEHOLDER) / body
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF", proto=IPPROTO_IPIP) / inner
    else:
        raise ValueError(f"unknown probe kind {kind!r}")
    return bytes(pkt)


def _addressed(design: bytes, src: str, dst: str, *, inner_ip: int | None = None) -> bytearray:
    """A designed packet with the outer header src -> dst and, when ``inner_ip`` is the offset
    of an inner IPv4 header, that one dst -> src (it is addressed to go back home); both IP
    checksums redone."""
    buf = bytearray(design)
    s, d = ip_bytes(src), ip_bytes(dst)
    buf[12:16], buf[16:20] = s, d
    _store_ip_checksum(buf)
    if inner_ip is not None:
        buf[inner_ip + 12 : inner_ip + 16], buf[inner_ip + 16 : inner_ip + 20] = d, s
        header = bytearray(buf[inner_ip : inner_ip + 20])
        _store_ip_checksum(header)
        buf[inner_ip : inner_ip + 20] = header
    return buf


class TcpSynTemplate:
    """A TCP SYN from ``src`` to ``dst``:``dport`` with options a real Linux client sends.

    Per probe only the IP id (the marker), the source port and the sequence number change, so
    both checksums are finished incrementally from sums precomputed over the template.
    """

    def __init__(self, src: str, dst: str, dport: int, *, ttl: int = 64):
        tpl = _addressed(_design("tcp", dport, 0, ttl), src, dst)
        tpl[10:12] = b"\0\0"
        self.template = bytes(tpl)
        self.src, self.dst, self.dport = src, dst, dport
        self.dst_bytes = self.template[16:20]
        self._ip_sum = ones_sum(self.template[:20])
        self._tcp_sum = _fold(ones_sum(self.template[20:]) + _pseudo_sum(
            self.template[12:16], self.template[16:20], IPPROTO_TCP, len(self.template) - 20))

    def build(self, sport: int, seq: int) -> bytes:
        ip_id = sport ^ SYN_MARK  # lets the responder's BPF pick our SYNs
        hi, lo = seq >> 16, seq & 0xFFFF
        if _LITTLE:  # ones_sum works in native order: swap the 16-bit words we add
            ip_id_n = ((ip_id >> 8) | (ip_id << 8)) & 0xFFFF
            sport_n = ((sport >> 8) | (sport << 8)) & 0xFFFF
            hi = ((hi >> 8) | (hi << 8)) & 0xFFFF
            lo = ((lo >> 8) | (lo << 8)) & 0xFFFF
        else:
            ip_id_n, sport_n = ip_id, sport
        ip_csum = ~_fold(self._ip_sum + ip_id_n) & 0xFFFF
        tcp_csum = ~_fold(self._tcp_sum + sport_n + hi + lo) & 0xFFFF
        t = self.template
        return b"".join((t[:4], struct.pack("!H", ip_id), t[6:10], struct.pack("=H", ip_csum), t[12:20],
                         struct.pack("!H", sport), t[22:24], struct.pack("!I", seq), t[28:36],
                         struct.pack("=H", tcp_csum), t[38:]))


SLOT_PLACEHOLDER = 32768
SYN_MARK = 0x4E50  # a probe SYN's IP id is its source port XOR this ("NP")


class UdpProbeTemplate:
    """An authenticated UDP probe to ``dst``:``dport`` (payload patched per probe)."""

    def __init__(self, src: str, dst: str, dport: int, *, ttl: int = 64):
        self.template = bytes(_addressed(_design("udp", dport, 0, ttl), src, dst))
        self._pseudo = _pseudo_sum(self.template[12:16], self.template[16:20], IPPROTO_UDP, len(self.template) - 20)

    def build(self, sport: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 20, sport)
        buf[28:] = payload
        _store_udp_checksum(buf, 26, 20, self._pseudo)
        return bytes(buf)


class VxlanProbeTemplate:
    """UDP to ``dport`` (4789), VXLAN header with ``vni``, inner Ethernet/IPv4/UDP probe.

    The inner packet goes from the target to the sender (as for IPIP), so a decapsulating host
    would route it home; outer and inner UDP checksums are 0, as Linux VXLAN sends them.
    """

    INNER_IP = 20 + 8 + 8 + 14
    INNER_UDP = INNER_IP + 20  # offset of the inner UDP header

    def __init__(self, src: str, dst: str, vni: int, *, dport: int = VXLAN_PORT, ttl: int = 64):
        self.template = bytes(_addressed(_design("vxlan", dport, vni, ttl), src, dst, inner_ip=self.INNER_IP))

    def build(self, sport: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 20, sport)
        struct.pack_into("!HH", buf, self.INNER_UDP, sport, sport)
        buf[self.INNER_UDP + 8 :] = payload
        return bytes(buf)


class IpipProbeTemplate:
    """IPv4 protocol 4 from ``src`` to ``dst`` carrying an inner IPv4/UDP probe from ``dst`` to
    ``src``: a host that decapsulates it (Calico's tunl0) sends the inner packet home."""

    def __init__(self, src: str, dst: str, *, ttl: int = 64):
        self.template = bytes(_addressed(_design("ipip", 0, 0, ttl), src, dst, inner_ip=20))
        self._pseudo = _pseudo_sum(self.template[32:36], self.template[36:40], IPPROTO_UDP, len(self.template) - 40)

    def build(self, ip_id: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 4, ip_id)
        _store_ip_checksum(buf)
        struct.pack_into("!HH", buf, 40, ip_id, ip_id)
        buf[48:] = payload
        _store_udp_checksum(buf, 46, 40, self._pseudo)
        return bytes(buf)


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
    _store_ip_checksum(buf)
    _store_udp_checksum(buf, 26, 20, _pseudo_sum(src, dst, IPPROTO_UDP, udp_len))
    return bytes(buf)


# ---------------------------------------------------------------- parsers


@dataclass(frozen=True, slots=True)
class TcpPacket:
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int

    @property
    def is_syn(self) -> bool:
        return self.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN

    @property
    def is_syn_ack(self) -> bool:
        return self.flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN | TCP_ACK

    @property
    def is_rst(self) -> bool:
        return bool(self.flags & TCP_RST)


@dataclass(frozen=True, slots=True)
class Quoted:
    """The offending packet an ICMP error quotes (at least its IP header and 8 bytes)."""

    proto: int
    src: bytes
    dst: bytes
    ip_id: int
    sport: int | None = None   # TCP/UDP, or the inner UDP of IPIP when quoted in full
    dport: int | None = None
    seq: int | None = None     # TCP only
    payload: bytes | None = None  # our probe payload when quoted in full


@dataclass(frozen=True, slots=True)
class IcmpPacket:
    src: bytes  # who sent the error
    dst: bytes
    type: int
    code: int
    quoted: Quoted


@dataclass(frozen=True, slots=True)
class PayloadPacket:
    """A UDP, VXLAN or IPIP packet carrying a netprobe payload (probe or echo)."""

    encap: Encap
    src: bytes       # outer addresses
    dst: bytes
    sport: int       # UDP ports (inner UDP for VXLAN and IPIP)
    dport: int
    payload: bytes
    ip_id: int = 0   # outer IP id (the IPIP slot)
    inner_src: bytes = b""
    inner_dst: bytes = b""
    outer_sport: int = 0  # VXLAN only: the outer UDP ports
    outer_dport: int = 0


Parsed = TcpPacket | IcmpPacket | PayloadPacket

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
VXLAN_QUOTED_PAYLOAD = 8 + 8 + 14 + 20 + 8  # from a VXLAN probe's outer UDP header to its payload
_TCP = struct.Struct("!HHIIBB")


def parse_ipv4_untrusted(data: bytes) -> tuple[int, bytes, bytes, int, memoryview]:
    """(protocol, src, dst, ip id, payload) of an unfragmented IPv4 packet."""
    if len(data) < 20:
        raise BadPacket("shorter than an IPv4 header")
    ver_ihl, _tos, total, ip_id, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(data)
    if ver_ihl >> 4 != 4:
        raise BadPacket("not IPv4")
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20 or total < ihl or len(data) < ihl:
        raise BadPacket("bad IPv4 header length")
    if frag & 0x3FFF:
        raise BadPacket("fragment")
    end = min(total, len(data))
    return proto, src, dst, ip_id, memoryview(data)[ihl:end]


def _parse_tcp(src: bytes, dst: bytes, seg: memoryview) -> TcpPacket:
    if len(seg) < 20:
        raise BadPacket("truncated TCP header")
    sport, dport, seq, ack, off, flags = _TCP.unpack_from(seg)
    if off >> 4 < 5:
        raise BadPacket("bad TCP data offset")
    return TcpPacket(src, dst, sport, dport, seq, ack, flags)


def _payload_of(data: memoryview) -> bytes | None:
    if len(data) >= PAYLOAD_LEN and data[:4] == MAGIC:
        return bytes(data[:PAYLOAD_LEN])
    return None


def _parse_udp_payload(src: bytes, dst: bytes, ip_id: int, seg: memoryview, vxlan_port: int) -> PayloadPacket:
    if len(seg) < 8:
        raise BadPacket("truncated UDP header")
    sport, dport, _length, _csum = struct.unpack_from("!HHHH", seg)
    body = seg[8:]
    payload = _payload_of(body)
    if payload is not None:
        return PayloadPacket(Encap.UDP, src, dst, sport, dport, payload, ip_id)
    if vxlan_port in (sport, dport) and len(body) >= 8 + 14 + 20 + 8 + PAYLOAD_LEN:
        if body[0] & 0x08 and struct.unpack_from("!H", body, 8 + 12)[0] == 0x0800:
            proto, isrc, idst, _iid, inner = parse_ipv4_untrusted(bytes(body[8 + 14 :]))
            if proto == IPPROTO_UDP and len(inner) >= 8:
                isport, idport = struct.unpack_from("!HH", inner)
                payload = _payload_of(inner[8:])
                if payload is not None:
                    return PayloadPacket(Encap.VXLAN, src, dst, isport, idport, payload, ip_id, isrc, idst,
                                         sport, dport)
    raise BadPacket("UDP without a netprobe payload")


def _parse_ipip(src: bytes, dst: bytes, ip_id: int, seg: memoryview) -> PayloadPacket:
    proto, isrc, idst, _iid, inner = parse_ipv4_untrusted(bytes(seg))
    if proto != IPPROTO_UDP or len(inner) < 8:
        raise BadPacket("IPIP without an inner UDP probe")
    sport, dport = struct.unpack_from("!HH", inner)
    payload = _payload_of(inner[8:])
    if payload is None:
        raise BadPacket("IPIP without a netprobe payload")
    return PayloadPacket(Encap.IPIP, src, dst, sport, dport, payload, ip_id, isrc, idst)


def _parse_quoted(data: memoryview) -> Quoted:
    proto, src, dst, ip_id, body = parse_ipv4_untrusted(bytes(data))
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        if len(body) < 8:
            raise BadPacket("ICMP quotes less than 8 bytes of the transport header")
        sport, dport, seq = struct.unpack_from("!HHI", body)
        if proto == IPPROTO_TCP:
            return Quoted(proto, src, dst, ip_id, sport, dport, seq)
        # our payload right after UDP, or inside a quoted VXLAN probe (VXLAN + Ethernet + IP + UDP)
        payload = _payload_of(body[8:]) or _payload_of(body[VXLAN_QUOTED_PAYLOAD:])
        return Quoted(proto, src, dst, ip_id, sport, dport, None, payload)
    if proto == IPPROTO_IPIP:
        try:
            inner = _parse_ipip(src, dst, ip_id, body)
            return Quoted(proto, src, dst, ip_id, inner.sport, inner.dport, None, inner.payload)
        except BadPacket:
            return Quoted(proto, src, dst, ip_id)
    raise BadPacket(f"ICMP quotes protocol {proto}")


def _parse_icmp(src: bytes, dst: bytes, msg: memoryview) -> IcmpPacket:
    if len(msg) < 8 + 20:
        raise BadPacket("truncated ICMP error")
    icmp_type, code = msg[0], msg[1]
    if icmp_type not in (3, 11):  # destination unreachable, time exceeded
        raise BadPacket(f"ICMP type {icmp_type} is not an error we track")
    return IcmpPacket(src, dst, icmp_type, code, _parse_quoted(msg[8:]))


def parse_packet_untrusted(data: bytes, *, vxlan_port: int = VXLAN_PORT) -> Parsed:
    """Parse an IPv4 packet into a TCP segment, an ICMP error or a payload packet.

    Anything malformed or of no interest to netprobe raises BadPacket, and only that.
    """
    try:
        proto, src, dst, ip_id, body = parse_ipv4_untrusted(data)
        if proto == IPPROTO_TCP:
            return _parse_tcp(src, dst, body)
        if proto == IPPROTO_UDP:
            return _parse_udp_payload(src, dst, ip_id, body, vxlan_port)
        if proto == IPPROTO_ICMP:
            return _parse_icmp(src, dst, body)
        if proto == IPPROTO_IPIP:
            return _parse_ipip(src, dst, ip_id, body)
    except (struct.error, IndexError, ValueError) as exc:  # belt and braces: only BadPacket escapes
        raise BadPacket(f"malformed packet: {exc}") from None
    raise BadPacket(f"IP protocol {proto} is not probed")


def ip_str(addr: bytes) -> str:
    return str(IPv4Address(addr))


def ip_bytes(addr: str) -> bytes:
    return IPv4Address(addr).packed
