"""Reply and probe parsers for untrusted input: struct only, over an IPv4 or IPv6 packet as an
AF_PACKET SOCK_DGRAM tap or a raw IPv4 socket delivers it (a raw IPv6 socket delivers no IPv6
header: the capture puts one back, ``ipv6_packet``). They return small frozen dataclasses and raise
only BadPacket, and never load scapy (the responder's and the prober's hot path)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address

from netprobe.core.cookies import PAYLOAD_LEN, flow_bytes
from netprobe.core.wire import (
    ETH_P_IP,
    ETH_P_IPV6,
    ICMP6_DST_UNREACH,
    ICMP6_TIME_EXCEEDED,
    ICMP_TIME_EXCEEDED,
    ICMP_UNREACH,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_HEADER_LEN,
    MAGIC,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    TCPOPT_TIMESTAMP,
    VXLAN6_PAYLOAD_OFFSET,
    VXLAN_PAYLOAD_OFFSET,
)
from netprobe.errors import BadPacket


class Encap(IntEnum):
    """How a payload probe travels."""

    UDP = 1
    VXLAN = 2
    IPIP = 3


@dataclass(frozen=True, slots=True)
class TcpPacket:
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    tsval: int | None = None  # a SYN's timestamp option (a probe's id)

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
    """The offending packet an ICMP error quotes (at least its IP header and 8 bytes; ICMPv6
    quotes as much as fits in 1,280 bytes). IPv6 has no IP id: 0."""

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
    """An ICMP or ICMPv6 error (the addresses' length tells which; so do type and code)."""

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

    def flow(self) -> bytes:
        """How this packet travelled, as its payload's tag must cover it (``cookies.flow_bytes``)."""
        return flow_bytes(self.encap, self.src, self.dst, self.sport, self.dport, self.inner_src, self.inner_dst,
                          self.outer_sport, self.outer_dport)


Parsed = TcpPacket | IcmpPacket | PayloadPacket

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
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


_IPV6 = struct.Struct("!IHBB16s16s")


def parse_ipv6_untrusted(data: bytes) -> tuple[int, bytes, bytes, int, memoryview]:
    """(next header, src, dst, 0, payload) of an IPv6 packet, the same shape as
    ``parse_ipv4_untrusted`` (IPv6 has no IP id). Extension headers are not followed: a probe and
    its answers carry none, and a fragment header's next header (44) is no protocol probed."""
    if len(data) < IPV6_HEADER_LEN:
        raise BadPacket("shorter than an IPv6 header")
    vtf, plen, nh, _hops, src, dst = _IPV6.unpack_from(data)
    if vtf >> 28 != 6:
        raise BadPacket("not IPv6")
    if plen == 0:
        raise BadPacket("IPv6 jumbogram or empty payload")
    end = min(IPV6_HEADER_LEN + plen, len(data))
    return nh, src, dst, 0, memoryview(data)[IPV6_HEADER_LEN:end]


def ipv6_packet(src: bytes, dst: bytes, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    """An IPv6 header in front of ``payload``: what a raw IPv6 socket received, as a tap would have
    seen it (the kernel hands the socket the payload; the addresses come from recvmsg)."""
    return _IPV6.pack(6 << 28, len(payload), next_header, hop_limit, src, dst) + payload


def _parse_tcp(src: bytes, dst: bytes, seg: memoryview) -> TcpPacket:
    if len(seg) < 20:
        raise BadPacket("truncated TCP header")
    sport, dport, seq, ack, off, flags = _TCP.unpack_from(seg)
    hlen = (off >> 4) * 4
    if hlen < 20:
        raise BadPacket("bad TCP data offset")
    tsval = None
    if flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN and hlen > 20:
        if hlen > len(seg):
            raise BadPacket("truncated TCP options")
        tsval = _tsval(seg, hlen)
    return TcpPacket(src, dst, sport, dport, seq, ack, flags, tsval)


def _tsval(seg: memoryview, hlen: int) -> int | None:
    """The TSval of a SYN's timestamp option, if it has one (options strictly within ``hlen``)."""
    i = 20
    while i < hlen:
        kind = seg[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hlen or seg[i + 1] < 2 or i + seg[i + 1] > hlen:
            raise BadPacket("bad TCP option length")
        if kind == TCPOPT_TIMESTAMP:
            if seg[i + 1] != 10:
                raise BadPacket("bad TCP timestamp option")
            return struct.unpack_from("!I", seg, i + 2)[0]
        i += seg[i + 1]
    return None


def _payload_of(data: memoryview) -> bytes | None:
    if len(data) >= PAYLOAD_LEN and data[:4] == MAGIC:
        return bytes(data[:PAYLOAD_LEN])
    return None


@dataclass(frozen=True)
class _Family:
    """What differs between an IPv4 and an IPv6 probe's packets: the IP header parser, the
    ethertype and offset of a VXLAN probe's inner packet (of the outer family), the ICMP errors."""

    parse_ip: Callable[[bytes], tuple[int, bytes, bytes, int, memoryview]]
    ethertype: int
    vxlan_payload: int
    icmp_proto: int
    icmp_errors: tuple[int, int]


IPV4 = _Family(parse_ipv4_untrusted, ETH_P_IP, VXLAN_PAYLOAD_OFFSET, IPPROTO_ICMP, (ICMP_UNREACH, ICMP_TIME_EXCEEDED))
IPV6 = _Family(parse_ipv6_untrusted, ETH_P_IPV6, VXLAN6_PAYLOAD_OFFSET, IPPROTO_ICMPV6,
               (ICMP6_DST_UNREACH, ICMP6_TIME_EXCEEDED))


def _parse_udp_payload(src: bytes, dst: bytes, ip_id: int, seg: memoryview, vxlan_port: int | None,
                       fam: _Family = IPV4) -> PayloadPacket:
    if len(seg) < 8:
        raise BadPacket("truncated UDP header")
    sport, dport, _length, _csum = struct.unpack_from("!HHHH", seg)
    body = seg[8:]
    payload = _payload_of(body)
    if payload is not None:
        return PayloadPacket(Encap.UDP, src, dst, sport, dport, payload, ip_id)
    if (vxlan_port is None or vxlan_port in (sport, dport)) and len(body) >= fam.vxlan_payload - 8 + PAYLOAD_LEN:  # body: after the outer UDP
        if body[0] & 0x08 and struct.unpack_from("!H", body, 8 + 12)[0] == fam.ethertype:
            proto, isrc, idst, _iid, inner = fam.parse_ip(bytes(body[8 + 14 :]))
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


def _parse_quoted(data: memoryview, fam: _Family = IPV4) -> Quoted:
    proto, src, dst, ip_id, body = fam.parse_ip(bytes(data))
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        if len(body) < 8:
            raise BadPacket("ICMP quotes less than 8 bytes of the transport header")
        sport, dport, seq = struct.unpack_from("!HHI", body)
        if proto == IPPROTO_TCP:
            return Quoted(proto, src, dst, ip_id, sport, dport, seq)
        # our payload right after UDP, or inside a quoted VXLAN probe (VXLAN + Ethernet + IP + UDP)
        payload = _payload_of(body[8:]) or _payload_of(body[fam.vxlan_payload:])
        return Quoted(proto, src, dst, ip_id, sport, dport, None, payload)
    if proto == IPPROTO_IPIP and fam is IPV4:
        try:
            inner = _parse_ipip(src, dst, ip_id, body)
            return Quoted(proto, src, dst, ip_id, inner.sport, inner.dport, None, inner.payload)
        except BadPacket:
            return Quoted(proto, src, dst, ip_id)
    raise BadPacket(f"ICMP quotes protocol {proto}")


def _parse_icmp(src: bytes, dst: bytes, msg: memoryview, fam: _Family = IPV4) -> IcmpPacket:
    if len(msg) < 8 + 20:
        raise BadPacket("truncated ICMP error")
    icmp_type, code = msg[0], msg[1]
    if icmp_type not in fam.icmp_errors:
        raise BadPacket(f"ICMP type {icmp_type} is not an error we track")
    return IcmpPacket(src, dst, icmp_type, code, _parse_quoted(msg[8:], fam))


def parse_packet_untrusted(data: bytes, *, vxlan_port: int | None = None) -> Parsed:
    """Parse an IPv4 packet into a TCP segment, an ICMP error or a payload packet.

    A VXLAN probe is known by its framing (I flag, inner Ethernet/IPv4/UDP, netprobe payload) on
    any UDP port unless ``vxlan_port`` pins one: Calico's VXLAN runs on 4789, flannel's (canal) on
    8472, and an inventory may name another (``vxlan_port``); the payload's tag still decides.

    Anything malformed or of no interest to netprobe raises BadPacket, and only that.
    """
    if data[:1] and data[0] >> 4 == 6:
        return _parse_ipv6_packet(data, vxlan_port)
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


def _parse_ipv6_packet(data: bytes, vxlan_port: int | None) -> Parsed:
    """``parse_packet_untrusted`` for IPv6: TCP, UDP (a VXLAN probe's inner packet is IPv6), ICMPv6."""
    try:
        nh, src, dst, _zero, body = parse_ipv6_untrusted(data)
        if nh == IPPROTO_TCP:
            return _parse_tcp(src, dst, body)
        if nh == IPPROTO_UDP:
            return _parse_udp_payload(src, dst, 0, body, vxlan_port, IPV6)
        if nh == IPPROTO_ICMPV6:
            return _parse_icmp(src, dst, body, IPV6)
    except (struct.error, IndexError, ValueError) as exc:  # belt and braces: only BadPacket escapes
        raise BadPacket(f"malformed packet: {exc}") from None
    raise BadPacket(f"IPv6 next header {nh} is not probed")


def ip_str(addr: bytes) -> str:
    return str(IPv4Address(addr) if len(addr) == 4 else IPv6Address(addr))


def ip_bytes(addr: str) -> bytes:
    return (IPv6Address(addr) if ":" in addr else IPv4Address(addr)).packed


def is_unicast(addr: bytes) -> bool:
    """Whether a packed address may be one end of an echo: not unspecified, loopback, link-local,
    multicast, broadcast or reserved (an echo goes only to one host, from one host); an IPv6 one
    not IPv4-mapped either (it would name an IPv4 host)."""
    if len(addr) == 16:
        ip6 = IPv6Address(addr)
        return not (ip6.is_unspecified or ip6.is_loopback or ip6.is_multicast or ip6.is_link_local
                    or ip6.is_reserved or ip6.ipv4_mapped is not None)
    if len(addr) != 4:
        return False
    ip = IPv4Address(addr)
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_reserved or ip.is_link_local
                or addr == b"\xff\xff\xff\xff" or addr[0] == 0)
