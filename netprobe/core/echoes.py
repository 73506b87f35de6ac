"""The responder's answer to an authenticated payload probe, in the probe's own encapsulation
(docs/design.md, "Echoes"). Pure: a parsed probe in, the echo's bytes out.

The echo is the overlay's own return traffic, so it crosses the prober's firewall as that does:

- UDP: from the probed port back to the prober's slot (what a stateful firewall expects back);
- IPIP: IPv4 protocol 4, outer probe destination -> probe source, the inner IPv4/UDP packet
  between the same two (the probe's inner packet goes that way already), slot -> slot;
- VXLAN: UDP to the VXLAN port the probe was sent to (both VTEPs send to it; the outer source
  port is the probe's slot, as Linux picks one from the ephemeral range), the probe's VNI, the
  inner frame turned around: MACs swapped, inner IP probe destination -> probe source, inner
  UDP ports swapped.

UDP and VXLAN echoes are IPv6 when their probe was (the inner packet too, as the probe's; both
UDP checksums computed, as IPv6 wants them). Every echo is the size of an unpadded probe of its
kind (IPv4: 84 bytes IPIP, 114 VXLAN, 64 UDP): a padded probe (the ``mtu`` check's) gets the
same small echo, and no echo is larger than what arrived. Its tag is keyed for the prober's address and covers the echo's own flow, encapsulation
included (``echo_flow``).
"""

from __future__ import annotations

import struct

from netprobe.core import cookies
from netprobe.core.checksum import pseudo_sum, store_ip_checksum, store_udp_checksum
from netprobe.core.parse import Encap, PayloadPacket, ipv6_packet, is_unicast
from netprobe.core.wire import (
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_IPIP,
    IPPROTO_UDP,
    SLOT_BASE,
    VXLAN_INNER_DST_MAC,
    VXLAN_INNER_SRC_MAC,
)

PRIVILEGED_PORTS = 1024  # a VXLAN echo never goes to a port below this (the probe chose the port)
_VXLAN_FLAGS = 0x08  # the I flag: the VNI is valid
_ECHO_MACS = bytes.fromhex(VXLAN_INNER_SRC_MAC.replace(":", "")) + bytes.fromhex(VXLAN_INNER_DST_MAC.replace(":", ""))


def echo_ports(probe: PayloadPacket) -> tuple[int, int]:
    """(source, destination) UDP ports of the echo: for UDP and IPIP from the probed port to the
    sender's slot (IPIP: the inner ports, reversed); for VXLAN the outer ports, from the probe's
    source slot to the VXLAN port it was sent to."""
    if probe.encap is Encap.VXLAN:
        return probe.outer_sport, probe.outer_dport
    return probe.dport, probe.sport


def echo_allowed(probe: PayloadPacket) -> bool:
    """Whether an authenticated probe may be echoed at all: the echo goes from the probe's outer
    destination to its outer source, both unicast; an IPIP/VXLAN probe's inner packet must go
    exactly from the outer destination back to the outer source; UDP and IPIP echoes go to a
    probe slot, a VXLAN echo from a slot to the (unprivileged) port the probe was sent to."""
    if not (is_unicast(probe.src) and is_unicast(probe.dst)) or probe.src == probe.dst:
        return False
    if probe.encap is not Encap.UDP and (probe.inner_src != probe.dst or probe.inner_dst != probe.src):
        return False
    sport, dport = echo_ports(probe)
    if probe.encap is Encap.VXLAN:
        return sport >= SLOT_BASE and dport >= PRIVILEGED_PORTS
    return dport >= SLOT_BASE


def echo_flow(probe: PayloadPacket) -> bytes:
    """The flow of the echo to ``probe`` as its tag covers it (``cookies.flow_bytes``): the same
    bytes ``PayloadPacket.flow()`` gives for the built echo."""
    src, dst = probe.dst, probe.src
    sport, dport = echo_ports(probe)
    if probe.encap is Encap.UDP:
        return cookies.flow_bytes(Encap.UDP, src, dst, sport, dport)
    if probe.encap is Encap.IPIP:
        return cookies.flow_bytes(Encap.IPIP, src, dst, sport, dport, src, dst)
    return cookies.flow_bytes(Encap.VXLAN, src, dst, probe.dport, probe.sport, src, dst, sport, dport)


def echo_payload(keys: cookies.ProbeKeys, probe: PayloadPacket, payload: cookies.ProbePayload) -> bytes:
    """The echo's payload: the probe's id and timestamp, flagged, its tag keyed for the prober's
    address and covering the echo's own flow."""
    return cookies.encode_payload(keys.for_dest(probe.src),
                                  cookies.ProbePayload(payload.probe_id, payload.timestamp_ns, cookies.FLAG_ECHO,
                                                       keys.marker), echo_flow(probe))


def _ipv4(src: bytes, dst: bytes, proto: int, total: int, ttl: int) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, ttl, proto, 0, src, dst))
    store_ip_checksum(header)
    return bytes(header)


def _udp_in_ip(src: bytes, dst: bytes, sport: int, dport: int, body: bytes, ttl: int, *,
               checksum: bool = True) -> bytes:
    """An IPv4 or IPv6 (by the addresses) UDP packet; over IPv4 without a checksum unless asked."""
    udp = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(body), 0) + body)
    if len(src) == 16 or checksum:
        store_udp_checksum(udp, 6, 0, pseudo_sum(src, dst, IPPROTO_UDP, len(udp)))
    if len(src) == 16:
        return ipv6_packet(src, dst, IPPROTO_UDP, bytes(udp), ttl)
    return _ipv4(src, dst, IPPROTO_UDP, 20 + len(udp), ttl) + bytes(udp)


def build_udp_echo(probe: PayloadPacket, payload: bytes, *, ttl: int = 64) -> bytes:
    """A plain UDP echo (IPv4 or IPv6, as the probe) from the probe's outer destination back to
    its outer source."""
    return _udp_in_ip(probe.dst, probe.src, probe.dport, probe.sport, payload, ttl)


def _build_ipip_echo(probe: PayloadPacket, payload: bytes, ttl: int) -> bytes:
    src, dst = probe.dst, probe.src
    sport, dport = echo_ports(probe)
    inner = _udp_in_ip(src, dst, sport, dport, payload, 64)
    return _ipv4(src, dst, IPPROTO_IPIP, 20 + len(inner), ttl) + inner


def _build_vxlan_echo(probe: PayloadPacket, payload: bytes, ttl: int) -> bytes:
    """Over IPv4 both UDP checksums are 0, as Linux VXLAN sends them; over IPv6 both are computed
    (as the probe's), and the inner packet is IPv6 too."""
    src, dst = probe.dst, probe.src
    sport, dport = echo_ports(probe)
    v6 = len(src) == 16
    inner = _udp_in_ip(src, dst, probe.dport, probe.sport, payload, 64, checksum=False)
    frame = _ECHO_MACS + struct.pack("!H", ETH_P_IPV6 if v6 else ETH_P_IP) + inner  # dst MAC: the probe's source
    vxlan = struct.pack("!B3xI", _VXLAN_FLAGS, (probe.vni & 0xFFFFFF) << 8)
    return _udp_in_ip(src, dst, sport, dport, vxlan + frame, ttl, checksum=False)


def build_echo(probe: PayloadPacket, payload: bytes, *, ttl: int = 64) -> bytes:
    """The echo to ``probe`` in its own encapsulation (``echo_allowed`` said it may be sent)."""
    if probe.encap is Encap.IPIP:
        return _build_ipip_echo(probe, payload, ttl)
    if probe.encap is Encap.VXLAN:
        return _build_vxlan_echo(probe, payload, ttl)
    return build_udp_echo(probe, payload, ttl=ttl)


__all__ = ["echo_ports", "echo_allowed", "echo_flow", "echo_payload", "build_echo", "build_udp_echo"]
