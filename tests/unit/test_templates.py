"""Probe templates and the responder's echo: round trips through the parser for every probe
kind, checksums checked by scapy independently."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import checksum as scapy_checksum

from helpers import captured, rechecksummed
from netprobe.core import cookies
from netprobe.core.checksum import ones_sum
from netprobe.core.cookies import (PAYLOAD_LEN, ProbeKeys, ProbePayload, dest_key, encode_payload, flow_bytes, slot_of,
                                   syn_ip_id, tcp_seq, tcp_syn_probe_id)
from netprobe.core.parse import (
    Encap,
    PayloadPacket,
    TcpPacket,
    ip_bytes,
    ip_str,
    parse_ipv4_untrusted,
    parse_packet_untrusted,
)
from netprobe.core.echoes import build_echo, build_udp_echo, echo_payload
from netprobe.core.templates import IpipProbeTemplate, TcpSynTemplate, UdpProbeTemplate, VxlanProbeTemplate
from netprobe.core.wire import (
    TCP_SYN,
    VXLAN_INNER_DST_MAC,
    VXLAN_INNER_SRC_MAC,
)
from netprobe.errors import BadPacket

A, B = "198.18.0.1", "198.18.0.2"
KEY = b"k" * 32
MARKER = 0x5A5A





def payload(probe_id: int = 0x01020304, ts: int = 1_700_000_000_000_000_000, flags: int = 0, flow: bytes = b"") -> bytes:
    return encode_payload(KEY, ProbePayload(probe_id, ts, flags, MARKER), flow)


# ------------------------------------------------------------------ checksums


@given(st.binary(max_size=200))
def test_ones_sum_gives_scapys_checksum(data):
    assert struct.pack("=H", ~ones_sum(data) & 0xFFFF) == struct.pack("!H", scapy_checksum(data))


def test_ones_sum_pads_odd_lengths_with_a_zero_byte():
    assert ones_sum(b"\x12\x34\x56") == ones_sum(b"\x12\x34\x56\x00")


# ------------------------------------------------------------------ TCP SYN


@pytest.mark.parametrize("probe_id", [0, 1, 0x7FFF, 0xDEADBEEF])
@pytest.mark.parametrize("dport", [179, 2379, 6443])
def test_tcp_syn_round_trip(probe_id, dport):
    sport = slot_of(probe_id)
    seq = tcp_seq(KEY, probe_id, ip_bytes(A), ip_bytes(B), dport)
    data = TcpSynTemplate(A, B, dport).build(sport, seq, syn_ip_id(MARKER, sport), probe_id)
    pkt = parse_packet_untrusted(data)
    assert pkt == TcpPacket(ip_bytes(A), ip_bytes(B), sport, dport, seq, 0, TCP_SYN, probe_id)
    assert pkt.is_syn and not pkt.is_syn_ack and not pkt.is_rst
    assert tcp_syn_probe_id(KEY, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq, pkt.tsval) == probe_id
    assert IP(data)[TCP].options[2] == ("Timestamp", (probe_id, 0))
    # checksums, recomputed independently by scapy
    assert rechecksummed(data, (IP, 1), (TCP, 1)) == data


def test_tcp_syn_looks_like_a_linux_syn():
    data = TcpSynTemplate(A, B, 179, ttl=33).build(40000, 7, 1, 2)
    pkt = IP(data)
    assert (pkt.src, pkt.dst, pkt.ttl, str(pkt.flags), pkt.frag) == (A, B, 33, "DF", 0)
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, pkt[TCP].ack, str(pkt[TCP].flags)) == (40000, 179, 7, 0, "S")
    assert pkt[TCP].window == 64240
    assert [o[0] for o in pkt[TCP].options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert dict(o for o in pkt[TCP].options if o[0] in ("MSS", "WScale")) == {"MSS": 1460, "WScale": 7}
    assert len(data) == pkt.len == 60


@pytest.mark.parametrize("sport", [32768, 40000, 65535])
def test_syn_ip_id_marks_the_probe(sport):
    data = TcpSynTemplate(A, B, 179).build(sport, 0, syn_ip_id(MARKER, sport))
    ip_id = struct.unpack_from("!H", data, 4)[0]
    assert ip_id == sport ^ MARKER == IP(data).id
    _proto, _src, _dst, parsed_id, _body = parse_ipv4_untrusted(data)
    assert parsed_id == ip_id


def test_template_builds_do_not_leak_into_each_other():
    tpl = TcpSynTemplate(A, B, 179)
    first = tpl.build(40000, 1, 2, 3)
    tpl.build(50000, 2, 3, 4)
    assert tpl.build(40000, 1, 2, 3) == first


ADDRS = st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(
    lambda t: ".".join(map(str, t)))


@settings(max_examples=200)
@given(ADDRS, ADDRS, st.integers(1, 65535), st.integers(0, 65535), st.integers(0, 0xFFFFFFFF), st.integers(1, 255),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
def test_tcp_syn_checksums_for_any_flow(src, dst, dport, sport, seq, ttl, ip_id, tsval):
    """The SYN's checksums are finished incrementally from the template: scapy recomputes them."""
    data = TcpSynTemplate(src, dst, dport, ttl=ttl).build(sport, seq, ip_id, tsval)
    assert rechecksummed(data, (IP, 1), (TCP, 1)) == data
    pkt = parse_packet_untrusted(data)
    assert (ip_str(pkt.src), ip_str(pkt.dst), pkt.sport, pkt.dport, pkt.seq, pkt.tsval) == (
        src, dst, sport, dport, seq, tsval)


@settings(max_examples=100)
@given(ADDRS, ADDRS, st.integers(1, 65535), st.integers(0, 65535), st.binary(min_size=PAYLOAD_LEN, max_size=PAYLOAD_LEN))
def test_udp_and_ipip_checksums_for_any_flow(src, dst, dport, sport, body):
    udp = UdpProbeTemplate(src, dst, dport).build(sport, body)
    assert rechecksummed(udp, (IP, 1), (UDP, 1)) == udp
    ipip = IpipProbeTemplate(src, dst).build(sport, body)
    assert rechecksummed(ipip, (IP, 1), (IP, 2), (UDP, 1)) == ipip


# ------------------------------------------------------------------ UDP


@pytest.mark.parametrize("probe_id", [0, 0x8001, 0xFFFFFFFF])
def test_udp_probe_round_trip(probe_id):
    tpl = UdpProbeTemplate(A, B, 53)
    body = payload(probe_id, flow=tpl.flow(slot_of(probe_id)))
    data = tpl.build(slot_of(probe_id), body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.UDP, ip_bytes(A), ip_bytes(B), slot_of(probe_id), 53, body, 0)
    assert pkt.flow() == tpl.flow(slot_of(probe_id))
    assert cookies.verify_payload(KEY, pkt.payload, pkt.flow()).probe_id == probe_id
    assert rechecksummed(data, (IP, 1), (UDP, 1)) == data
    assert IP(data)[UDP].len == 8 + PAYLOAD_LEN


# ------------------------------------------------------------------ VXLAN


@pytest.mark.parametrize("vni", [0, 1, 42, (1 << 24) - 1])
def test_vxlan_probe_round_trip(vni):
    body = payload(0xABCD)
    sport = slot_of(0xABCD)
    tpl = VxlanProbeTemplate(A, B, vni)
    data = tpl.build(sport, body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.VXLAN, ip_bytes(A), ip_bytes(B), sport, sport, body, 0,
                                inner_src=ip_bytes(B), inner_dst=ip_bytes(A), outer_sport=sport, outer_dport=4789,
                                vni=vni)
    assert pkt.flow() == tpl.flow(sport)
    # the VNI, inner MACs and zero UDP checksums, read by scapy
    s = IP(data)
    assert s[VXLAN].vni == vni and s[VXLAN].flags == 0x08
    assert (s[Ether].src, s[Ether].dst) == (VXLAN_INNER_SRC_MAC, VXLAN_INNER_DST_MAC)
    assert s.getlayer(UDP, 1).chksum == 0 and s.getlayer(UDP, 2).chksum == 0  # as Linux VXLAN sends them
    assert struct.unpack_from("!I", data, 32)[0] >> 8 == vni
    assert rechecksummed(data, (IP, 1), (IP, 2)) == data


def test_vxlan_is_known_by_its_framing_on_any_port_unless_one_is_pinned():
    # flannel (canal) runs VXLAN on 8472, Calico on 4789, an inventory may name another
    data = VxlanProbeTemplate(A, B, 7, dport=8472).build(40000, payload())
    assert parse_packet_untrusted(data).encap is Encap.VXLAN
    assert parse_packet_untrusted(data, vxlan_port=8472).encap is Encap.VXLAN
    with pytest.raises(BadPacket):
        parse_packet_untrusted(data, vxlan_port=4789)


def test_vxlan_without_the_i_flag_is_not_ours():
    data = bytearray(VxlanProbeTemplate(A, B, 7).build(40000, payload()))
    data[28] = 0
    with pytest.raises(BadPacket):
        parse_packet_untrusted(bytes(data))


# ------------------------------------------------------------------ IPIP


@pytest.mark.parametrize("probe_id", [0, 0x7FFF, 0x12345678])
def test_ipip_probe_round_trip(probe_id):
    body = payload(probe_id)
    slot = slot_of(probe_id)
    tpl = IpipProbeTemplate(A, B)
    data = tpl.build(slot, body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.IPIP, ip_bytes(A), ip_bytes(B), slot, slot, body, slot,
                                inner_src=ip_bytes(B), inner_dst=ip_bytes(A))
    assert pkt.flow() == tpl.flow(slot)
    s = IP(data)
    assert s.proto == 4 and s.id == slot
    inner = s.getlayer(IP, 2)
    assert (inner.src, inner.dst) == (B, A)
    assert rechecksummed(data, (IP, 1), (IP, 2), (UDP, 1)) == data


# ------------------------------------------------------------------ echoes


def _probe_of(kind: str, body: bytes) -> bytes:
    slot = slot_of(0x4242)
    return {
        "udp": lambda: UdpProbeTemplate(A, B, 53).build(slot, body),
        "vxlan": lambda: VxlanProbeTemplate(A, B, 1).build(slot, body),
        "ipip": lambda: IpipProbeTemplate(A, B).build(slot, body),
    }[kind]()


def _echo_to(data: bytes, key: bytes = KEY) -> tuple[PayloadPacket, bytes]:
    probe = parse_packet_untrusted(data)
    sent = cookies.verify_payload(dest_key(key, probe.dst), probe.payload, probe.flow())
    return probe, build_echo(probe, echo_payload(ProbeKeys(key), probe, sent))


@pytest.mark.parametrize("kind", ["udp", "vxlan", "ipip"])
def test_the_echo_keeps_the_probes_encapsulation_and_size(kind):
    """UDP back from the probed port to the slot; IPIP as IPIP, both headers from the target to
    the prober; VXLAN to the VXLAN port the probe was sent to, from the probe's slot, the inner
    frame turned around. Each the size of the probe, its tag over its own flow."""
    slot = slot_of(0x4242)
    data = _probe_of(kind, encode_payload(dest_key(KEY, ip_bytes(B)), ProbePayload(0x4242, 1, 0),
                                          _flow_of(kind, slot)))
    probe, echo = _echo_to(data)
    assert len(echo) == len(data)
    pkt = parse_packet_untrusted(echo)
    assert pkt.encap is probe.encap and (pkt.src, pkt.dst) == (ip_bytes(B), ip_bytes(A))
    assert cookies.verify_payload(dest_key(KEY, ip_bytes(A)), pkt.payload, pkt.flow()).is_echo
    s = IP(echo)
    assert s.ttl == 64 and str(s.flags) == "DF"
    if kind == "udp":
        assert (s[UDP].sport, s[UDP].dport) == (53, slot)
        assert rechecksummed(echo, (IP, 1), (UDP, 1)) == echo
    elif kind == "ipip":
        inner = s.getlayer(IP, 2)
        assert s.proto == 4 and (inner.src, inner.dst) == (B, A) and (s[UDP].sport, s[UDP].dport) == (slot, slot)
        assert rechecksummed(echo, (IP, 1), (IP, 2), (UDP, 1)) == echo
    else:
        assert (s[UDP].sport, s[UDP].dport) == (slot, 4789) and s[VXLAN].vni == 1 and s[VXLAN].flags == 0x08
        frame = s[VXLAN].payload
        assert (frame.src, frame.dst) == (VXLAN_INNER_DST_MAC, VXLAN_INNER_SRC_MAC)
        inner = frame[IP]
        assert (inner.src, inner.dst) == (B, A) and (inner[UDP].sport, inner[UDP].dport) == (slot, slot)
        assert s[UDP].chksum == 0 and inner[UDP].chksum == 0
        assert rechecksummed(echo, (IP, 1), (IP, 2)) == echo


def _flow_of(kind: str, slot: int) -> bytes:
    return {"udp": lambda: UdpProbeTemplate(A, B, 53).flow(slot), "vxlan": lambda: VxlanProbeTemplate(A, B, 1).flow(slot),
            "ipip": lambda: IpipProbeTemplate(A, B).flow(slot)}[kind]()


def test_a_vxlan_echo_carries_the_probes_vni_and_port():
    slot = slot_of(7)
    tpl = VxlanProbeTemplate(A, B, 4242, dport=8472)
    _probe, echo = _echo_to(tpl.build(slot, encode_payload(dest_key(KEY, ip_bytes(B)), ProbePayload(7, 1, 0),
                                                           tpl.flow(slot))))
    pkt = parse_packet_untrusted(echo)
    assert (pkt.vni, pkt.outer_sport, pkt.outer_dport) == (4242, slot, 8472)


@pytest.mark.parametrize("kind", ["vxlan", "ipip"])
def test_a_padded_probe_gets_the_small_echo(kind):
    """An mtu probe padded to 1,500 bytes is echoed at the unpadded probe's size."""
    slot = slot_of(0x4242)
    body = encode_payload(dest_key(KEY, ip_bytes(B)), ProbePayload(0x4242, 1, 0), _flow_of(kind, slot))
    tpl = VxlanProbeTemplate(A, B, 1) if kind == "vxlan" else IpipProbeTemplate(A, B)
    _probe, echo = _echo_to(tpl.build(slot, body, 1500))
    assert len(echo) == len(tpl.template)


@pytest.mark.parametrize("name", ["udp_probe_arrived", "vxlan_probe_arrived", "ipip_probe_arrived"])
def test_echo_of_captured_probes_is_never_larger(name):
    rec = captured(name)
    probe, echo = _echo_to(rec["data"], rec["key"])
    assert len(echo) <= len(rec["data"])
    back = parse_packet_untrusted(echo)
    assert back.encap is probe.encap
    assert (ip_str(back.src), ip_str(back.dst)) == (rec["target"], rec["sender"])


def test_udp_echo_checksum_zero_is_sent_as_all_ones():
    probe = parse_packet_untrusted(UdpProbeTemplate(A, B, 53).build(40000, payload()))
    first = build_udp_echo(probe, b"\0\0" + b"x" * 30)
    csum = first[26:28]
    # a word equal to the checksum makes the sum all ones, so the checksum would be 0
    zero = build_udp_echo(probe, csum + b"x" * 30)
    assert zero[26:28] == b"\xff\xff"
    assert rechecksummed(zero, (IP, 1), (UDP, 1)) == zero
