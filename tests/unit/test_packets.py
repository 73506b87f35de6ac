"""Probe builders and ``*_untrusted`` parsers: round trips for every probe kind, checksums checked
by scapy independently, real captured replies (tests/data/packets), and garbage that may only ever
raise BadPacket."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import checksum as scapy_checksum

from netprobe.core import cookies
from netprobe.core.cookies import PAYLOAD_LEN, ProbePayload, encode_payload, slot_of, tcp_probe_id, tcp_seq
from netprobe.core.packets import (
    SYN_MARK,
    TCP_ACK,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    VXLAN_INNER_DST_MAC,
    VXLAN_INNER_SRC_MAC,
    Encap,
    IcmpPacket,
    IpipProbeTemplate,
    PayloadPacket,
    Quoted,
    TcpPacket,
    TcpSynTemplate,
    UdpProbeTemplate,
    VxlanProbeTemplate,
    build_udp_echo,
    inet_checksum,
    ip_bytes,
    ip_str,
    ones_sum,
    parse_ipv4_untrusted,
    parse_packet_untrusted,
)
from netprobe.core.session import key_from_token
from netprobe.errors import BadPacket

PACKETS = Path(__file__).resolve().parent.parent / "data" / "packets"
A, B = "198.18.0.1", "198.18.0.2"
KEY = b"k" * 32


def captured(name: str) -> dict:
    record = json.loads((PACKETS / f"{name}.json").read_text())
    record["data"] = bytes.fromhex(record["hex"])
    record["key"] = key_from_token(record["token"])
    return record


CAPTURED = sorted(p.stem for p in PACKETS.glob("*.json"))


def rechecksummed(data: bytes, *layers: tuple[type, int]) -> bytes:
    """``data`` dissected by scapy with the checksum of each (layer, nth) deleted, then rebuilt:
    scapy recomputes them, so equal bytes mean our checksums are right."""
    pkt = IP(data)
    for layer, nth in layers:
        del pkt.getlayer(layer, nth).chksum
    return bytes(pkt)


def payload(probe_id: int = 0x01020304, ts: int = 1_700_000_000_000_000_000, flags: int = 0) -> bytes:
    return encode_payload(KEY, ProbePayload(probe_id, ts, flags))


# ------------------------------------------------------------------ checksums


@given(st.binary(max_size=200))
def test_inet_checksum_matches_scapy(data):
    assert inet_checksum(data) == scapy_checksum(data)


def test_ones_sum_pads_odd_lengths_with_a_zero_byte():
    assert ones_sum(b"\x12\x34\x56") == ones_sum(b"\x12\x34\x56\x00")


# ------------------------------------------------------------------ TCP SYN


@pytest.mark.parametrize("probe_id", [0, 1, 0x7FFF, 0xDEADBEEF])
@pytest.mark.parametrize("dport", [179, 2379, 6443])
def test_tcp_syn_round_trip(probe_id, dport):
    sport = slot_of(probe_id)
    seq = tcp_seq(KEY, probe_id, ip_bytes(A), ip_bytes(B), dport)
    data = TcpSynTemplate(A, B, dport).build(sport, seq)
    pkt = parse_packet_untrusted(data)
    assert pkt == TcpPacket(ip_bytes(A), ip_bytes(B), sport, dport, seq, 0, TCP_SYN)
    assert pkt.is_syn and not pkt.is_syn_ack and not pkt.is_rst
    assert tcp_probe_id(KEY, pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq) == probe_id
    # checksums, recomputed independently by scapy
    assert rechecksummed(data, (IP, 1), (TCP, 1)) == data


def test_tcp_syn_looks_like_a_linux_syn():
    data = TcpSynTemplate(A, B, 179, ttl=33).build(40000, 7)
    pkt = IP(data)
    assert (pkt.src, pkt.dst, pkt.ttl, str(pkt.flags), pkt.frag) == (A, B, 33, "DF", 0)
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, pkt[TCP].ack, str(pkt[TCP].flags)) == (40000, 179, 7, 0, "S")
    assert pkt[TCP].window == 64240
    assert [o[0] for o in pkt[TCP].options][:4] == ["MSS", "SAckOK", "NOP", "WScale"]
    assert dict(o for o in pkt[TCP].options if o[0] in ("MSS", "WScale")) == {"MSS": 1460, "WScale": 7}
    assert len(data) == pkt.len == 52


@pytest.mark.parametrize("sport", [32768, 40000, 65535])
def test_syn_ip_id_marks_the_probe(sport):
    data = TcpSynTemplate(A, B, 179).build(sport, 0)
    ip_id = struct.unpack_from("!H", data, 4)[0]
    assert ip_id == sport ^ SYN_MARK == IP(data).id
    _proto, _src, _dst, parsed_id, _body = parse_ipv4_untrusted(data)
    assert parsed_id == ip_id


def test_template_builds_do_not_leak_into_each_other():
    tpl = TcpSynTemplate(A, B, 179)
    first = tpl.build(40000, 1)
    tpl.build(50000, 2)
    assert tpl.build(40000, 1) == first


ADDRS = st.tuples(st.integers(1, 223), st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(
    lambda t: ".".join(map(str, t)))


@settings(max_examples=200)
@given(ADDRS, ADDRS, st.integers(1, 65535), st.integers(0, 65535), st.integers(0, 0xFFFFFFFF), st.integers(1, 255))
def test_tcp_syn_checksums_for_any_flow(src, dst, dport, sport, seq, ttl):
    """The SYN's checksums are finished incrementally from the template: scapy recomputes them."""
    data = TcpSynTemplate(src, dst, dport, ttl=ttl).build(sport, seq)
    assert rechecksummed(data, (IP, 1), (TCP, 1)) == data
    pkt = parse_packet_untrusted(data)
    assert (ip_str(pkt.src), ip_str(pkt.dst), pkt.sport, pkt.dport, pkt.seq) == (src, dst, sport, dport, seq)


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
    body = payload(probe_id)
    data = UdpProbeTemplate(A, B, 53).build(slot_of(probe_id), body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.UDP, ip_bytes(A), ip_bytes(B), slot_of(probe_id), 53, body, 0)
    assert cookies.verify_payload(KEY, pkt.payload).probe_id == probe_id
    assert rechecksummed(data, (IP, 1), (UDP, 1)) == data
    assert IP(data)[UDP].len == 8 + PAYLOAD_LEN


# ------------------------------------------------------------------ VXLAN


@pytest.mark.parametrize("vni", [0, 1, 42, (1 << 24) - 1])
def test_vxlan_probe_round_trip(vni):
    body = payload(0xABCD)
    sport = slot_of(0xABCD)
    data = VxlanProbeTemplate(A, B, vni).build(sport, body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.VXLAN, ip_bytes(A), ip_bytes(B), sport, sport, body, 0,
                                inner_src=ip_bytes(B), inner_dst=ip_bytes(A), outer_sport=sport, outer_dport=4789)
    # the VNI, inner MACs and zero UDP checksums, read by scapy
    s = IP(data)
    assert s[VXLAN].vni == vni and s[VXLAN].flags == 0x08
    assert (s[Ether].src, s[Ether].dst) == (VXLAN_INNER_SRC_MAC, VXLAN_INNER_DST_MAC)
    assert s.getlayer(UDP, 1).chksum == 0 and s.getlayer(UDP, 2).chksum == 0  # as Linux VXLAN sends them
    assert struct.unpack_from("!I", data, 32)[0] >> 8 == vni
    assert rechecksummed(data, (IP, 1), (IP, 2)) == data


def test_vxlan_on_another_port_needs_that_port_to_parse():
    data = VxlanProbeTemplate(A, B, 7, dport=8472).build(40000, payload())
    assert parse_packet_untrusted(data, vxlan_port=8472).encap is Encap.VXLAN
    with pytest.raises(BadPacket):
        parse_packet_untrusted(data)


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
    data = IpipProbeTemplate(A, B).build(slot, body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.IPIP, ip_bytes(A), ip_bytes(B), slot, slot, body, slot,
                                inner_src=ip_bytes(B), inner_dst=ip_bytes(A))
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


@pytest.mark.parametrize("kind", ["udp", "vxlan", "ipip"])
def test_udp_echo_goes_back_and_is_never_larger(kind):
    data = _probe_of(kind, payload(0x4242))
    probe = parse_packet_untrusted(data)
    echo_body = payload(0x4242, flags=cookies.FLAG_ECHO)
    echo = build_udp_echo(probe, echo_body)
    assert len(echo) <= len(data)
    pkt = parse_packet_untrusted(echo)
    slot = slot_of(0x4242)
    # UDP/VXLAN: from the probed port back to the slot; IPIP: the inner packet, as decapsulated
    expected_ports = {"udp": (53, slot), "vxlan": (4789, slot), "ipip": (slot, slot)}[kind]
    assert pkt == PayloadPacket(Encap.UDP, ip_bytes(B), ip_bytes(A), *expected_ports, echo_body, 0)
    assert cookies.verify_payload(KEY, pkt.payload).is_echo
    assert rechecksummed(echo, (IP, 1), (UDP, 1)) == echo
    assert IP(echo).ttl == 64 and str(IP(echo).flags) == "DF"


@pytest.mark.parametrize("name", ["udp_probe_arrived", "vxlan_probe_arrived", "ipip_probe_arrived"])
def test_udp_echo_of_captured_probes_is_never_larger(name):
    rec = captured(name)
    probe = parse_packet_untrusted(rec["data"])
    p = cookies.verify_payload(rec["key"], probe.payload)
    echo = build_udp_echo(probe, encode_payload(rec["key"], ProbePayload(p.probe_id, p.timestamp_ns, cookies.FLAG_ECHO)))
    assert len(echo) <= len(rec["data"])
    back = parse_packet_untrusted(echo)
    assert (ip_str(back.src), ip_str(back.dst)) == (rec["target"], rec["sender"])


def test_udp_echo_checksum_zero_is_sent_as_all_ones():
    probe = parse_packet_untrusted(UdpProbeTemplate(A, B, 53).build(40000, payload()))
    first = build_udp_echo(probe, b"\0\0" + b"x" * 30)
    csum = first[26:28]
    # a word equal to the checksum makes the sum all ones, so the checksum would be 0
    zero = build_udp_echo(probe, csum + b"x" * 30)
    assert zero[26:28] == b"\xff\xff"
    assert rechecksummed(zero, (IP, 1), (UDP, 1)) == zero


# ------------------------------------------------------------------ captured replies


def test_every_captured_file_is_described():
    assert len(CAPTURED) >= 19
    for name in CAPTURED:
        rec = captured(name)
        assert rec["name"] == name and rec["comment"] and "capture.py" in rec["captured"]
        assert rec["sender"].startswith("198.18.") and rec["target"].startswith("198.18.")


def test_captured_syn_ack_answers_the_captured_probe():
    syn = captured("probe_syn_sent")
    rec = captured("syn_ack")
    probe = parse_packet_untrusted(syn["data"])
    pkt = parse_packet_untrusted(rec["data"])
    assert isinstance(pkt, TcpPacket) and pkt.is_syn_ack and not pkt.is_rst and not pkt.is_syn
    assert pkt.flags == TCP_SYN | TCP_ACK
    assert (ip_str(pkt.src), ip_str(pkt.dst), pkt.sport, pkt.dport) == (rec["target"], rec["sender"], 179, probe.sport)
    assert pkt.ack == (probe.seq + 1) & 0xFFFFFFFF
    pid = tcp_probe_id(rec["key"], pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.ack - 1)
    assert pid is not None and pid == tcp_probe_id(syn["key"], probe.src, probe.dst, probe.sport, 179, probe.seq)
    assert tcp_probe_id(b"wrong" * 8, pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.ack - 1) != pid


def test_captured_probe_syn_is_marked():
    for name in ("probe_syn_sent", "probe_syn_arrived"):
        data = captured(name)["data"]
        pkt = parse_packet_untrusted(data)
        assert pkt.is_syn and pkt.dport == 179
        assert struct.unpack_from("!H", data, 4)[0] == pkt.sport ^ SYN_MARK


def test_captured_kernel_syn_is_a_syn_but_unmarked():
    data = captured("kernel_syn_arrived")["data"]
    pkt = parse_packet_untrusted(data)
    assert pkt.is_syn and pkt.dport == 8080
    assert struct.unpack_from("!H", data, 4)[0] != pkt.sport ^ SYN_MARK


@pytest.mark.parametrize("name,port", [("rst_closed", 5473), ("rst_forged", 2379)])
def test_captured_rsts(name, port):
    rec = captured(name)
    pkt = parse_packet_untrusted(rec["data"])
    assert isinstance(pkt, TcpPacket) and pkt.is_rst and not pkt.is_syn_ack
    assert pkt.flags == TCP_RST | TCP_ACK and pkt.seq == 0
    assert (ip_str(pkt.src), pkt.sport) == (rec["target"], port)
    # the RST's ack is our seq + 1: it gives the probe id back
    assert tcp_probe_id(rec["key"], pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.ack - 1) is not None


def test_captured_data_segment_is_plain_tcp():
    pkt = parse_packet_untrusted(captured("tcp_data")["data"])
    assert pkt.flags == TCP_PSH | TCP_ACK
    assert not (pkt.is_syn or pkt.is_syn_ack or pkt.is_rst)


def test_captured_icmp_admin_prohibited_quotes_our_syn():
    rec = captured("icmp_admin_prohibited")
    pkt = parse_packet_untrusted(rec["data"])
    assert isinstance(pkt, IcmpPacket)
    assert (pkt.type, pkt.code, ip_str(pkt.src), ip_str(pkt.dst)) == (3, 13, rec["target"], rec["sender"])
    q = pkt.quoted
    assert (q.proto, ip_str(q.src), ip_str(q.dst), q.dport, q.payload) == (6, rec["sender"], rec["target"], 6443, None)
    assert q.ip_id == q.sport ^ SYN_MARK
    assert tcp_probe_id(rec["key"], q.src, q.dst, q.sport, q.dport, q.seq) is not None


def test_captured_icmp_port_unreachable_quotes_the_whole_udp_probe():
    rec = captured("icmp_port_unreach_udp")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (3, 3, rec["target"])
    q = pkt.quoted
    assert (q.proto, q.dport, q.seq) == (17, 5000, None)
    assert cookies.verify_payload(rec["key"], q.payload).probe_id == 0x1234
    assert q.sport == slot_of(0x1234)


def test_captured_icmp_port_unreachable_for_vxlan_quotes_the_outer_udp():
    rec = captured("icmp_port_unreach_vxlan")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code) == (3, 3)
    q = pkt.quoted
    assert (q.proto, ip_str(q.dst), q.dport) == (17, rec["target"], 4789)
    assert q.sport >= cookies.SLOT_BASE
    # the payload is dug out of the quoted VXLAN probe, so the quote authenticates
    assert q.payload is not None and q.payload[:4] == cookies.MAGIC
    assert cookies.verify_payload(key_from_token(rec["token"]), q.payload).probe_id >= 0


def test_captured_icmp_protocol_unreachable_quotes_the_ipip_probe():
    rec = captured("icmp_proto_unreach_ipip")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (3, 2, rec["target"])
    q = pkt.quoted
    assert (q.proto, ip_str(q.src), ip_str(q.dst)) == (4, rec["sender"], rec["target"])
    assert q.ip_id == q.sport == q.dport >= cookies.SLOT_BASE
    p = cookies.verify_payload(rec["key"], q.payload)
    assert slot_of(p.probe_id) == q.ip_id


def test_captured_vxlan_probe_as_it_arrived():
    rec = captured("vxlan_probe_arrived")
    pkt = parse_packet_untrusted(rec["data"])
    assert pkt.encap is Encap.VXLAN
    assert (ip_str(pkt.src), ip_str(pkt.dst), pkt.outer_dport) == (rec["sender"], rec["target"], 4789)
    assert (ip_str(pkt.inner_src), ip_str(pkt.inner_dst)) == (rec["target"], rec["sender"])
    assert pkt.sport == pkt.dport == pkt.outer_sport
    assert slot_of(cookies.verify_payload(rec["key"], pkt.payload).probe_id) == pkt.sport
    assert struct.unpack_from("!I", rec["data"], 32)[0] >> 8 == rec["vni"] == IP(rec["data"])[VXLAN].vni


@pytest.mark.parametrize("name,encap", [("udp_probe_arrived", Encap.UDP), ("ipip_probe_arrived", Encap.IPIP)])
def test_captured_payload_probes_verify(name, encap):
    rec = captured(name)
    pkt = parse_packet_untrusted(rec["data"])
    assert pkt.encap is encap
    p = cookies.verify_payload(rec["key"], pkt.payload)
    assert not p.is_echo and slot_of(p.probe_id) == pkt.sport
    with pytest.raises(BadPacket):
        cookies.verify_payload(b"another key", pkt.payload)


# TCP segments of the kernel's own stack leave with a partial checksum (offloaded to a NIC a veth
# does not have), so the capture shows it unfinished: only these have full transport checksums.
FULL_CHECKSUMS = {"probe_syn_sent": TCP, "probe_syn_arrived": TCP, "udp_probe_arrived": UDP,
                  "rst_closed": TCP, "rst_closed_leaving": TCP,
                  "icmp_admin_prohibited": ICMP, "icmp_port_unreach_udp": ICMP, "icmp_port_unreach_vxlan": ICMP,
                  "icmp_proto_unreach_ipip": ICMP, "icmp_proto_unreach_leaving": ICMP,
                  "icmp_admin_prohibited_leaving": ICMP}


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_checksums_are_valid(name):
    """The IP header checksum of every captured packet, and the transport checksum of those the
    kernel finished in software, recompute to the same bytes (a sanity check of the data)."""
    data = captured(name)["data"]
    layers = [(IP, 1)]
    if name in FULL_CHECKSUMS:
        layers.append((FULL_CHECKSUMS[name], 1))
    assert rechecksummed(data, *layers) == data


# ------------------------------------------------------------------ ICMP built by hand


def _icmp(quoted: bytes, type_=11, code=0, src="198.51.100.1") -> bytes:
    return bytes(IP(src=src, dst=A) / ICMP(type=type_, code=code) / quoted)


def test_time_exceeded_quoting_only_8_bytes_of_tcp():
    syn = TcpSynTemplate(A, B, 179).build(40000, 0xAABBCCDD)
    pkt = parse_packet_untrusted(_icmp(syn[:28]))
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (11, 0, "198.51.100.1")
    assert pkt.quoted == Quoted(6, ip_bytes(A), ip_bytes(B), 40000 ^ SYN_MARK, 40000, 179, 0xAABBCCDD)


def test_icmp_quoting_8_bytes_of_udp_has_no_payload():
    probe = UdpProbeTemplate(A, B, 53).build(40000, payload())
    pkt = parse_packet_untrusted(_icmp(probe[:28], 3, 3))
    assert pkt.quoted == Quoted(17, ip_bytes(A), ip_bytes(B), 0, 40000, 53, None, None)


def test_icmp_quoting_8_bytes_of_ipip_has_only_the_ip_id():
    probe = IpipProbeTemplate(A, B).build(40000, payload())
    pkt = parse_packet_untrusted(_icmp(probe[:28], 3, 2))
    assert pkt.quoted == Quoted(4, ip_bytes(A), ip_bytes(B), 40000)


@pytest.mark.parametrize("quoted,message", [
    (bytes(IP(src=A, dst=B) / ICMP()), "quotes protocol 1"),
    (bytes(IP(src=A, dst=B) / TCP())[:24], "less than 8 bytes"),
])
def test_icmp_quoting_what_we_never_send(quoted, message):
    with pytest.raises(BadPacket, match=message):
        parse_packet_untrusted(_icmp(quoted + b"\0" * max(0, 20 - len(quoted)), 3, 3))


def test_icmp_echo_is_not_an_error_we_track():
    with pytest.raises(BadPacket, match="ICMP type 8"):
        parse_packet_untrusted(bytes(IP(src=B, dst=A) / ICMP(type=8) / (b"x" * 40)))


# ------------------------------------------------------------------ parser rejections


@pytest.mark.parametrize("data,message", [
    (b"", "shorter than an IPv4 header"),
    (b"\x45" + b"\0" * 18, "shorter than an IPv4 header"),
    (bytes(IP(src=A, dst=B, version=6) / TCP()), "not IPv4"),
    (bytes(IP(src=A, dst=B, ihl=4) / TCP()), "bad IPv4 header length"),
    (bytes(IP(src=A, dst=B, ihl=15) / TCP()), "bad IPv4 header length"),
    (bytes(IP(src=A, dst=B, len=10) / TCP()), "bad IPv4 header length"),
    (bytes(IP(src=A, dst=B, flags="MF") / TCP()), "fragment"),
    (bytes(IP(src=A, dst=B, frag=100) / TCP()), "fragment"),
])
def test_parse_ipv4_rejects(data, message):
    with pytest.raises(BadPacket, match=message):
        parse_ipv4_untrusted(data)
    with pytest.raises(BadPacket):
        parse_packet_untrusted(data)


def test_parse_ipv4_keeps_options_out_of_the_body_and_trims_padding():
    data = bytes(IP(src=A, dst=B, options=b"\x01\x01\x01\x00") / UDP(sport=1, dport=2) / b"xy")
    proto, src, dst, _id, body = parse_ipv4_untrusted(data + b"ethernet-padding")
    assert (proto, src, dst) == (17, ip_bytes(A), ip_bytes(B))
    assert bytes(body) == data[24:]


def test_fragments_of_a_probe_are_rejected():
    big = IP(src=A, dst=B) / UDP(sport=40000, dport=53) / (payload() * 40)
    frags = fragment(big, fragsize=512)
    assert len(frags) > 1
    for f in frags:
        with pytest.raises(BadPacket, match="fragment"):
            parse_packet_untrusted(bytes(f))


@pytest.mark.parametrize("data,message", [
    (bytes(IP(src=A, dst=B) / TCP())[:30], "truncated TCP header"),
    (bytes(IP(src=A, dst=B) / TCP(dataofs=4)), "bad TCP data offset"),
    (bytes(IP(src=A, dst=B, proto=17) / b"1234567"), "truncated UDP header"),
    (bytes(IP(src=A, dst=B) / UDP(sport=1, dport=53) / b"hello"), "without a netprobe payload"),
    (bytes(IP(src=A, dst=B) / UDP(sport=1, dport=53) / (b"NPRB" + b"\0" * 20)), "without a netprobe payload"),
    (bytes(IP(src=A, dst=B, proto=47) / (b"\0" * 20)), "protocol 47 is not probed"),
    (bytes(IP(src=A, dst=B) / IP(src=B, dst=A) / TCP()), "IPIP without an inner UDP probe"),
    (bytes(IP(src=A, dst=B) / IP(src=B, dst=A) / UDP() / b"plain"), "IPIP without a netprobe payload"),
    (bytes(IP(src=B, dst=A) / ICMP(type=3, code=3) / (b"\0" * 10)), "truncated ICMP error"),
])
def test_parse_packet_rejects(data, message):
    with pytest.raises(BadPacket, match=message):
        parse_packet_untrusted(data)


def test_ip_str_and_bytes():
    assert ip_str(ip_bytes("203.0.113.7")) == "203.0.113.7"
    assert ip_bytes("198.18.0.1") == bytes([198, 18, 0, 1])


# ------------------------------------------------------------------ garbage (hypothesis)


def _only_bad_packet(data: bytes) -> None:
    for parse in (parse_packet_untrusted, parse_ipv4_untrusted):
        try:
            parse(data)
        except BadPacket:
            pass


VALID = [captured(n)["data"] for n in CAPTURED] + [
    TcpSynTemplate(A, B, 179).build(40000, 1),
    UdpProbeTemplate(A, B, 53).build(40000, payload()),
    VxlanProbeTemplate(A, B, 9).build(40000, payload()),
    IpipProbeTemplate(A, B).build(40000, payload()),
    _icmp(UdpProbeTemplate(A, B, 53).build(40000, payload()), 3, 3),
    _icmp(IpipProbeTemplate(A, B).build(40000, payload()), 3, 2),
]


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_bad_packet(data):
    _only_bad_packet(data)


@settings(max_examples=500)
@given(st.binary(min_size=20, max_size=200).map(lambda b: bytes([0x45]) + b[1:]))
def test_random_ipv4_looking_bytes_raise_only_bad_packet(data):
    _only_bad_packet(data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    extra = draw(st.binary(max_size=20))
    return bytes(data[:cut]) + extra


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_and_truncated_packets_raise_only_bad_packet(data):
    _only_bad_packet(data)
    try:
        pkt = parse_packet_untrusted(data)
    except BadPacket:
        return
    assert isinstance(pkt, (TcpPacket, IcmpPacket, PayloadPacket))
    if isinstance(pkt, PayloadPacket):
        try:
            cookies.verify_payload(KEY, pkt.payload)
        except BadPacket:
            pass


def test_every_truncation_of_every_valid_packet():
    for data in VALID:
        for cut in range(len(data) + 1):
            _only_bad_packet(data[:cut])
