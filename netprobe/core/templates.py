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
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SLOT_BASE,
    TCPOPT_TIMESTAMP,
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

    def build(self, sport: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 20, sport)
        struct.pack_into("!HH", buf, self.INNER_UDP, sport, sport)
        buf[self.INNER_UDP + 8 :] = payload
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

    def build(self, ip_id: int, payload: bytes) -> bytes:
        buf = bytearray(self.template)
        struct.pack_into("!H", buf, 4, ip_id)
        store_ip_checksum(buf)
        struct.pack_into("!HH", buf, 40, ip_id, ip_id)
        buf[48:] = payload
        store_udp_checksum(buf, 46, 40, self._pseudo)
        return bytes(buf)


Template = TcpSynTemplate | UdpProbeTemplate | VxlanProbeTemplate | IpipProbeTemplate
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
        if check.proto is Proto.TCP:
            made[key] = TcpSynTemplate(source, target.address, check.port, ttl=ttl)
        elif check.proto is Proto.UDP:
            made[key] = UdpProbeTemplate(source, target.address, check.port, ttl=ttl)
        elif check.proto is Proto.VXLAN:
            made[key] = VxlanProbeTemplate(source, target.address, vni, dport=check.port, ttl=ttl)
        else:
            made[key] = IpipProbeTemplate(source, target.address, ttl=ttl)
    return made
