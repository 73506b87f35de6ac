"""Probe templates: scapy designs each probe kind once, every probe is then a template with its
slot, sequence number or payload patched in with struct and its checksums redone (scapy is the
designer, not the data path: docs/design.md, "Probes").

The shell makes the templates a run needs (``for_targets``) before it starts and hands them to
the prober state machine, which never designs anything: scapy is imported here, lazily, only
when a template is made.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable

from netprobe.core.checks import VXLAN_PORT, Proto
from netprobe.core.checksum import LITTLE, fold, ones_sum, pseudo_sum, store_ip_checksum, store_udp_checksum
from netprobe.core.cookies import PAYLOAD_LEN, flow_bytes
from netprobe.core.parse import Encap, ip_bytes
from netprobe.core.wire import (
    DEFAULT_TTL,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_HEADER_LEN,
    SLOT_BASE,
    SYN_TSECR_OFFSET,
    TCPOPT_TIMESTAMP,
    VXLAN6_PAYLOAD_OFFSET,
    VXLAN_INNER_DST_MAC,
    VXLAN_INNER_SRC_MAC,
    VXLAN_PAYLOAD_OFFSET,
)


def load_designer() -> None:
    """Import the scapy layers now (a daemon does it before it says it is ready)."""
    _scapy()


def _scapy():
    from scapy.layers.inet import IP, TCP, UDP  # only the layers used, never scapy.all
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    return IP, TCP, UDP, Ether, VXLAN


def _scapy6():
    from scapy.layers.inet6 import IPv6

    return IPv6


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
            options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7)])
    elif kind == "udp":
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF") / UDP(sport=SLOT_BASE, dport=port) / body
    elif kind == "vxlan":
        inner = Ether(src=VXLAN_INNER_SRC_MAC, dst=VXLAN_INNER_DST_MAC, type=ETH_P_IP) / IP(
            src=zero, dst=zero, ttl=64, id=0, flags="DF") / UDP(
            sport=SLOT_BASE, dport=SLOT_BASE, chksum=0) / body
        pkt = IP(src=zero, dst=zero, ttl=ttl, id=0, flags="DF") / UDP(
            sport=SLOT_BASE, dport=port, chksum=0) / VXLAN(flags=0x08, vni=vni) / inner
    elif kind == "ipip":
        inner = IP(src=zero, dst=zero, ttl=64, id=0, flags="DF") / UDP(
            sport=SLOT_BASE, dport=SLOT_BASE) / body
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
    store_ip_checksum(buf)
    if inner_ip is not None:
        buf[inner_ip + 12 : inner_ip + 16], buf[inner_ip + 16 : inner_ip + 20] = d, s
        header = bytearray(buf[inner_ip : inner_ip + 20])
        store_ip_checksum(header)
        buf[inner_ip : inner_ip + 20] = header
    return buf


def _swap32_words(v: int) -> int:
    """The sum of the two 16-bit words of ``v``, each byte-swapped (for a little-endian ones_sum)."""
    sw = ((v & 0x00FF00FF) << 8) | ((v >> 8) & 0x00FF00FF)
    return (sw >> 16) + (sw & 0xFFFF)


class TcpSynTemplate:
    """A TCP SYN from ``src`` to ``dst``:``dport`` with the options a Linux client sends (MSS,
    SACK permitted, timestamps, window scale).

    Per probe only the IP id (the keyed marker), the source port, the sequence number and the
    timestamp option's TSval (the probe id) change, so both checksums are finished incrementally
    from sums precomputed over the template.
    """

    TSVAL = 20 + 20 + 4 + 2 + 2  # IP + TCP header, MSS (4), SACK permitted (2), kind + length

    def __init__(self, src: str, dst: str, dport: int, *, ttl: int = DEFAULT_TTL):
        tpl = _addressed(_design("tcp", dport, 0, ttl), src, dst)
        tpl[10:12] = b"\0\0"
        if tpl[self.TSVAL - 2] != TCPOPT_TIMESTAMP or tpl[self.TSVAL - 1] != 10:
            raise AssertionError("the SYN design moved its timestamp option")
        self.template = bytes(tpl)
        self._ip_sum = ones_sum(self.template[:20])
        self._tcp_sum = fold(ones_sum(self.template[20:]) + pseudo_sum(
            self.template[12:16], self.template[16:20], IPPROTO_TCP, len(self.template) - 20))

    def build(self, sport: int, seq: int, ip_id: int = 0, tsval: int = 0) -> bytes:
        if LITTLE:  # ones_sum works in native order: byte-swap what we add (16-bit words)
            ip_id_n = ((ip_id >> 8) | (ip_id << 8)) & 0xFFFF
            added = (((sport >> 8) | (sport << 8)) & 0xFFFF) + _swap32_words(seq) + _swap32_words(tsval)
        else:
            ip_id_n = ip_id
            added = sport + (seq >> 16) + (seq & 0xFFFF) + (tsval >> 16) + (tsval & 0xFFFF)
        ip_csum = ~fold(self._ip_sum + ip_id_n) & 0xFFFF
        tcp_csum = ~fold(self._tcp_sum + added) & 0xFFFF
        t, ts = self.template, self.TSVAL
        return b"".join((t[:4], struct.pack("!H", ip_id), t[6:10], struct.pack("=H", ip_csum), t[12:20],
                         struct.pack("!H", sport), t[22:24], struct.pack("!I", seq), t[28:36],
                         struct.pack("=H", tcp_csum), t[38:ts], struct.pack("!I", tsval), t[ts + 4 :]))


class UdpProbeTemplate:
    """An authenticated UDP probe to ``dst``:``dport`` (payload patched per probe)."""

    def __init__(self, src: str, dst: str, dport: int, *, ttl: int = DEFAULT_TTL):
        self.template = bytes(_addressed(_design("udp", dport, 0, ttl), src, dst))
        self._pseudo = pseudo_sum(self.template[12:16], self.template[16:20], IPPROTO_UDP, len(self.template) - 20)
        self._src, self._dst, self._dport = self.template[12:16], self.template[16:20], dport

    def flow(self, sport: int) -> bytes:
        """What the payload's tag must cover for the probe from ``sport`` (``cookies.flow_bytes``)."""
        return flow_bytes(Encap.UDP, self._src, self._dst, sport, self._dport)

    def build(self, sport: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 20, sport)
        buf[28:] = payload
        store_udp_checksum(buf, 26, 20, self._pseudo)
        return bytes(buf)


def _padded(data: bytes, size: int, lengths: tuple[tuple[int, int], ...], ip_headers: tuple[int, ...]) -> bytearray:
    """``data`` padded with zeros to ``size`` bytes, each 16-bit length field at ``offset`` set to
    ``size - start`` for its (offset, start), and the IPv4 header checksums at ``ip_headers`` redone
    (an ``mtu`` probe: the padding is inner UDP payload, after the netprobe payload)."""
    buf = bytearray(data) + bytes(size - len(data))
    for offset, start in lengths:
        struct.pack_into("!H", buf, offset, size - start)
    for at in ip_headers:
        header = bytearray(buf[at : at + 20])
        store_ip_checksum(header)
        buf[at : at + 20] = header
    return buf


class VxlanProbeTemplate:
    """UDP to ``dport`` (4789), VXLAN header with ``vni``, inner Ethernet/IPv4/UDP probe.

    The inner packet goes from the target to the sender (as for IPIP), so a decapsulating host
    would route it home; outer and inner UDP checksums are 0, as Linux VXLAN sends them.
    """

    INNER_UDP = 20 + VXLAN_PAYLOAD_OFFSET - 8  # offset of the inner UDP header
    INNER_IP = INNER_UDP - 20

    def __init__(self, src: str, dst: str, vni: int, *, dport: int = VXLAN_PORT, ttl: int = DEFAULT_TTL):
        self.template = bytes(_addressed(_design("vxlan", dport, vni, ttl), src, dst, inner_ip=self.INNER_IP))
        self._src, self._dst, self._dport = self.template[12:16], self.template[16:20], dport

    def flow(self, sport: int) -> bytes:
        """What the payload's tag covers: outer src -> dst, inner dst -> src, every port ``sport``
        but the outer destination port."""
        return flow_bytes(Encap.VXLAN, self._src, self._dst, sport, sport, self._dst, self._src, sport, self._dport)

    def build(self, sport: int, payload: bytes, size: int | None = None) -> bytes:
        """The probe from ``sport``; padded to ``size`` outer bytes when given (UDP checksums stay 0)."""
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 20, sport)
        struct.pack_into("!HH", buf, self.INNER_UDP, sport, sport)
        buf[self.INNER_UDP + 8 :] = payload
        if size is not None and size > len(buf):
            buf = _padded(buf, size, ((2, 0), (24, 20), (self.INNER_IP + 2, self.INNER_IP), (self.INNER_UDP + 4,
                                                                                            self.INNER_UDP)),
                          (0, self.INNER_IP))
        return bytes(buf)


class IpipProbeTemplate:
    """IPv4 protocol 4 from ``src`` to ``dst`` carrying an inner IPv4/UDP probe from ``dst`` to
    ``src``: a host that decapsulates it (Calico's tunl0) sends the inner packet home."""

    def __init__(self, src: str, dst: str, *, ttl: int = DEFAULT_TTL):
        self.template = bytes(_addressed(_design("ipip", 0, 0, ttl), src, dst, inner_ip=20))
        self._pseudo = pseudo_sum(self.template[32:36], self.template[36:40], IPPROTO_UDP, len(self.template) - 40)
        self._src, self._dst = self.template[12:16], self.template[16:20]

    def flow(self, ip_id: int) -> bytes:
        """What the payload's tag covers: outer src -> dst, inner dst -> src, slot -> slot."""
        return flow_bytes(Encap.IPIP, self._src, self._dst, ip_id, ip_id, self._dst, self._src)

    def build(self, ip_id: int, payload: bytes, size: int | None = None) -> bytes:
        """The probe of slot ``ip_id``; padded to ``size`` outer bytes when given."""
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 4, ip_id)
        struct.pack_into("!HH", buf, 40, ip_id, ip_id)
        buf[48:] = payload
        pseudo = self._pseudo
        if size is not None and size > len(buf):
            buf = _padded(buf, size, ((2, 0), (22, 20), (44, 40)), (20,))
            pseudo = pseudo_sum(self._dst, self._src, IPPROTO_UDP, size - 40)
        store_ip_checksum(buf)
        store_udp_checksum(buf, 46, 40, pseudo)
        return bytes(buf)


# ------------------------------------------------------------------ IPv6
# Sent whole on a raw IPv6 socket of IPPROTO_RAW (IPV6_HDRINCL implied): the kernel routes by the
# sendto address and sends the header as built, so the source address the payload tag covers, the
# ports and the TCP options are exactly ours. IPv6 has no header checksum and no IP id; UDP
# checksums are mandatory (RFC 8200), so every UDP header here carries one.

SYN_OPTIONS = [("MSS", 1440), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None), ("WScale", 7)]


@functools.lru_cache(maxsize=256)
def _design6(kind: str, port: int, vni: int, hop_limit: int) -> bytes:
    """``_design`` for IPv6: scapy designs each kind once with :: for the addresses; the inner
    packet of a VXLAN probe is IPv6 too (the overlay of an IPv6 underlay: Calico's vxlan-v6.calico)."""
    _IP, TCP, UDP, Ether, VXLAN = _scapy()
    IPv6 = _scapy6()
    zero = "::"
    body = b"\0" * PAYLOAD_LEN
    if kind == "tcp":  # a Linux client's SYN; the MSS an IPv6 header leaves of a 1500-byte MTU
        pkt = IPv6(src=zero, dst=zero, hlim=hop_limit) / TCP(
            sport=0, dport=port, seq=0, flags="S", window=64800, chksum=0, options=SYN_OPTIONS)
    elif kind == "udp":
        pkt = IPv6(src=zero, dst=zero, hlim=hop_limit) / UDP(sport=SLOT_BASE, dport=port, chksum=0) / body
    elif kind == "vxlan":
        inner = Ether(src=VXLAN_INNER_SRC_MAC, dst=VXLAN_INNER_DST_MAC, type=ETH_P_IPV6) / IPv6(
            src=zero, dst=zero, hlim=64) / UDP(sport=SLOT_BASE, dport=SLOT_BASE, chksum=0) / body
        pkt = IPv6(src=zero, dst=zero, hlim=hop_limit) / UDP(
            sport=SLOT_BASE, dport=port, chksum=0) / VXLAN(flags=0x08, vni=vni) / inner
    else:
        raise ValueError(f"unknown IPv6 probe kind {kind!r}")
    return bytes(pkt)


def _addressed6(design: bytes, src: str, dst: str, *, inner_ip: int | None = None) -> bytearray:
    """``_addressed`` for IPv6: the outer header src -> dst, an inner IPv6 header dst -> src."""
    buf = bytearray(design)
    s, d = ip_bytes(src), ip_bytes(dst)
    buf[8:24], buf[24:40] = s, d
    if inner_ip is not None:
        buf[inner_ip + 8 : inner_ip + 24], buf[inner_ip + 24 : inner_ip + 40] = d, s
    return buf


class TcpSyn6Template:
    """``TcpSynTemplate`` over IPv6: the same SYN, the keyed marker word in the timestamp option's
    TSecr (IPv6 has no IP id; a SYN's TSecr is ignored by its receiver, RFC 7323), the TCP checksum
    finished incrementally over the IPv6 pseudo header."""

    TSVAL = IPV6_HEADER_LEN + SYN_TSECR_OFFSET - 4

    def __init__(self, src: str, dst: str, dport: int, *, hop_limit: int = DEFAULT_TTL):
        tpl = _addressed6(_design6("tcp", dport, 0, hop_limit), src, dst)
        if tpl[self.TSVAL - 2] != TCPOPT_TIMESTAMP or tpl[self.TSVAL - 1] != 10:
            raise AssertionError("the IPv6 SYN design moved its timestamp option")
        self.template = bytes(tpl)
        h = IPV6_HEADER_LEN
        self._tcp_sum = fold(ones_sum(self.template[h:]) + pseudo_sum(
            self.template[8:24], self.template[24:40], IPPROTO_TCP, len(self.template) - h))

    def build(self, sport: int, seq: int, marker_word: int = 0, tsval: int = 0) -> bytes:
        """The SYN from ``sport`` with ``seq``, ``tsval`` (the probe id) and, in TSecr, the marker
        word (``cookies.syn_ip_id``): the same arguments as the IPv4 SYN's, whose third is its IP id."""
        if LITTLE:
            added = (((sport >> 8) | (sport << 8)) & 0xFFFF) + _swap32_words(seq) + _swap32_words(tsval) \
                + (((marker_word >> 8) | (marker_word << 8)) & 0xFFFF)
        else:
            added = sport + (seq >> 16) + (seq & 0xFFFF) + (tsval >> 16) + (tsval & 0xFFFF) + marker_word
        tcp_csum = ~fold(self._tcp_sum + added) & 0xFFFF
        t, ts, h = self.template, self.TSVAL, IPV6_HEADER_LEN
        return b"".join((t[:h], struct.pack("!H", sport), t[h + 2 : h + 4], struct.pack("!I", seq),
                         t[h + 8 : h + 16], struct.pack("=H", tcp_csum), t[h + 18 : ts],
                         struct.pack("!II", tsval, marker_word & 0xFFFF), t[ts + 8 :]))


class UdpProbe6Template:
    """``UdpProbeTemplate`` over IPv6."""

    def __init__(self, src: str, dst: str, dport: int, *, hop_limit: int = DEFAULT_TTL):
        self.template = bytes(_addressed6(_design6("udp", dport, 0, hop_limit), src, dst))
        h = IPV6_HEADER_LEN
        self._pseudo = pseudo_sum(self.template[8:24], self.template[24:40], IPPROTO_UDP, len(self.template) - h)
        self._src, self._dst, self._dport = self.template[8:24], self.template[24:40], dport

    def flow(self, sport: int) -> bytes:
        return flow_bytes(Encap.UDP, self._src, self._dst, sport, self._dport)

    def build(self, sport: int, payload: bytes) -> bytes:
        h = IPV6_HEADER_LEN
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, h, sport)
        buf[h + 8 :] = payload
        store_udp_checksum(buf, h + 6, h, self._pseudo)
        return bytes(buf)


class VxlanProbe6Template:
    """``VxlanProbeTemplate`` over IPv6: outer IPv6/UDP to ``dport``, VXLAN, inner
    Ethernet/IPv6/UDP from the target to the sender; both UDP checksums computed (Linux VXLAN over
    IPv6 sends them unless told otherwise, and IPv6 forbids a zero one on plain UDP)."""

    OUTER_UDP = IPV6_HEADER_LEN
    INNER_UDP = IPV6_HEADER_LEN + VXLAN6_PAYLOAD_OFFSET - 8
    INNER_IP = INNER_UDP - IPV6_HEADER_LEN

    def __init__(self, src: str, dst: str, vni: int, *, dport: int = VXLAN_PORT, hop_limit: int = DEFAULT_TTL):
        self.template = bytes(_addressed6(_design6("vxlan", dport, vni, hop_limit), src, dst,
                                          inner_ip=self.INNER_IP))
        t = self.template
        self._src, self._dst, self._dport = t[8:24], t[24:40], dport
        self._outer_pseudo = pseudo_sum(self._src, self._dst, IPPROTO_UDP, len(t) - self.OUTER_UDP)
        self._inner_pseudo = pseudo_sum(self._dst, self._src, IPPROTO_UDP, len(t) - self.INNER_UDP)

    def flow(self, sport: int) -> bytes:
        return flow_bytes(Encap.VXLAN, self._src, self._dst, sport, sport, self._dst, self._src, sport, self._dport)

    def build(self, sport: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, self.OUTER_UDP, sport)
        struct.pack_into("!HH", buf, self.INNER_UDP, sport, sport)
        buf[self.INNER_UDP + 8 :] = payload
        store_udp_checksum(buf, self.INNER_UDP + 6, self.INNER_UDP, self._inner_pseudo)
        store_udp_checksum(buf, self.OUTER_UDP + 6, self.OUTER_UDP, self._outer_pseudo)
        return bytes(buf)


Template = (TcpSynTemplate | UdpProbeTemplate | VxlanProbeTemplate | IpipProbeTemplate | TcpSyn6Template
            | UdpProbe6Template | VxlanProbe6Template)
TemplateKey = tuple[Proto, int, str, int]  # (protocol, port or 0, target address, TTL)


def template_key(proto: Proto, port: int | None, address: str, ttl: int = DEFAULT_TTL) -> TemplateKey:
    return proto, port or 0, address, ttl


def for_targets(source: str, targets: Iterable, *, vni: int = 1) -> dict[TemplateKey, Template]:
    """One template per (check protocol, port, address, TTL) among ``targets`` (ProbeTargets),
    sent from ``source``: what a ``Prober`` over them needs, made before the run."""
    made: dict[TemplateKey, Template] = {}
    for target in targets:
        check, ttl = target.check, target.ttl
        key = template_key(check.proto, check.port, target.address, ttl)
        if key in made:
            continue
        if ":" in target.address:
            made[key] = _template6(source, target.address, check, vni, ttl)
        elif check.proto is Proto.TCP:
            made[key] = TcpSynTemplate(source, target.address, check.port, ttl=ttl)
        elif check.proto is Proto.UDP:
            made[key] = UdpProbeTemplate(source, target.address, check.port, ttl=ttl)
        elif check.proto is Proto.VXLAN:
            made[key] = VxlanProbeTemplate(source, target.address, vni, dport=check.port, ttl=ttl)
        else:
            made[key] = IpipProbeTemplate(source, target.address, ttl=ttl)
    return made


def _template6(source: str, address: str, check, vni: int, hop_limit: int) -> Template:
    if check.proto is Proto.TCP:
        return TcpSyn6Template(source, address, check.port, hop_limit=hop_limit)
    if check.proto is Proto.UDP:
        return UdpProbe6Template(source, address, check.port, hop_limit=hop_limit)
    if check.proto is Proto.VXLAN:
        return VxlanProbe6Template(source, address, vni, dport=check.port, hop_limit=hop_limit)
    raise ValueError(f"{check.id} ({check.proto}) is not probed over IPv6")
