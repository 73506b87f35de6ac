"""The ``*_untrusted`` parsers: real captured replies (tests/data/packets), ICMP errors built by
hand, and garbage that may only ever raise BadPacket."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.vxlan import VXLAN

from helpers import CAPTURED, captured, rechecksummed
from netprobe.core import cookies
from netprobe.core.cookies import (ProbePayload, dest_key, encode_payload, flow_bytes, marker_of, slot_of, syn_ip_id,
                                   tcp_seq, tcp_syn_probe_id)
from netprobe.core.parse import (
    Encap,
    IcmpPacket,
    PayloadPacket,
    Quoted,
    TcpPacket,
    ip_bytes,
    ip_str,
    parse_ipv4_untrusted,
    parse_packet_untrusted,
)
from netprobe.core.templates import IpipProbeTemplate, TcpSynTemplate, UdpProbeTemplate, VxlanProbeTemplate
from netprobe.core.wire import (
    MAGIC,
    SLOT_BASE,
    TCP_ACK,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
)
from netprobe.errors import BadPacket

A, B = "198.18.0.1", "198.18.0.2"
KEY = b"k" * 32





def payload(probe_id: int = 0x01020304, ts: int = 1_700_000_000_000_000_000, flags: int = 0) -> bytes:
    return encode_payload(KEY, ProbePayload(probe_id, ts, flags), b"")


def marker(rec: dict) -> int:
    return marker_of(rec["key"])


def syn_id(rec: dict, syn: TcpPacket) -> int | None:
    """The probe id a SYN carries, checked as the responder checks it."""
    return tcp_syn_probe_id(dest_key(rec["key"], syn.dst), syn.src, syn.dst, syn.sport, syn.dport, syn.seq, syn.tsval)


def verify(rec: dict, pkt: PayloadPacket, key: bytes | None = None):
    return cookies.verify_payload(dest_key(key or rec["key"], pkt.dst), pkt.payload, pkt.flow())


def verify_quoted(rec: dict, q: Quoted, vxlan: bool = False):
    """A quoted probe's payload, checked against the flow the quote's headers say (inner packets go
    from the target back to the sender)."""
    if q.proto == 4:
        flow = flow_bytes(Encap.IPIP, q.src, q.dst, q.sport, q.dport, q.dst, q.src)
    elif vxlan:
        flow = flow_bytes(Encap.VXLAN, q.src, q.dst, q.sport, q.sport, q.dst, q.src, q.sport, q.dport)
    else:
        flow = flow_bytes(Encap.UDP, q.src, q.dst, q.sport, q.dport)
    return cookies.verify_payload(dest_key(rec["key"], q.dst), q.payload, flow)


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
    pid = syn_id(syn, probe)
    assert pid is not None and slot_of(pid) == probe.sport
    # the prober's check: the SYN-ACK acknowledges exactly the keyed sequence number it sent
    assert pkt.ack - 1 == tcp_seq(dest_key(rec["key"], pkt.src), pid, pkt.dst, pkt.src, 179)
    assert pkt.ack - 1 != tcp_seq(dest_key(b"wrong" * 8, pkt.src), pid, pkt.dst, pkt.src, 179)
    assert pkt.tsval is None  # a SYN-ACK's options are not read


def test_captured_probe_syn_is_marked():
    for name in ("probe_syn_sent", "probe_syn_arrived"):
        data = captured(name)["data"]
        pkt = parse_packet_untrusted(data)
        assert pkt.is_syn and pkt.dport == 179
        assert struct.unpack_from("!H", data, 4)[0] == syn_ip_id(marker(captured(name)), pkt.sport)
        assert syn_id(captured(name), pkt) is not None


def test_captured_kernel_syn_is_a_syn_but_unmarked():
    data = captured("kernel_syn_arrived")["data"]
    pkt = parse_packet_untrusted(data)
    assert pkt.is_syn and pkt.dport == 8080
    assert struct.unpack_from("!H", data, 4)[0] != syn_ip_id(marker(captured("kernel_syn_arrived")), pkt.sport)
    assert pkt.tsval is not None  # a Linux SYN has a timestamp too: the keyed seq tells ours apart
    assert syn_id(captured("kernel_syn_arrived"), pkt) is None


@pytest.mark.parametrize("name,port", [("rst_closed", 5473), ("rst_forged", 2379)])
def test_captured_rsts(name, port):
    rec = captured(name)
    pkt = parse_packet_untrusted(rec["data"])
    assert isinstance(pkt, TcpPacket) and pkt.is_rst and not pkt.is_syn_ack
    assert pkt.flags == TCP_RST | TCP_ACK and pkt.seq == 0
    assert (ip_str(pkt.src), pkt.sport) == (rec["target"], port)
    # the RST's ack is our seq + 1, the seq of the probe SYN the capture sent from that slot
    assert slot_of(pkt.dport - SLOT_BASE) == pkt.dport and pkt.ack != 0


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
    assert q.ip_id == syn_ip_id(marker(rec), q.sport)
    assert q.seq is not None


def test_captured_icmp_port_unreachable_quotes_the_whole_udp_probe():
    rec = captured("icmp_port_unreach_udp")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (3, 3, rec["target"])
    q = pkt.quoted
    assert (q.proto, q.dport, q.seq) == (17, 5000, None)
    assert verify_quoted(rec, q).probe_id == 0x1234
    assert q.sport == slot_of(0x1234)


def test_captured_icmp_port_unreachable_for_vxlan_quotes_the_outer_udp():
    rec = captured("icmp_port_unreach_vxlan")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code) == (3, 3)
    q = pkt.quoted
    assert (q.proto, ip_str(q.dst), q.dport) == (17, rec["target"], 4789)
    assert q.sport >= SLOT_BASE
    # the payload is dug out of the quoted VXLAN probe, so the quote authenticates
    assert q.payload is not None and q.payload[:4] == MAGIC
    # and it is the probe the quote's headers say: its id's low bits are the slot it was sent from
    verified = verify_quoted(rec, q, vxlan=True)
    assert slot_of(verified.probe_id) == q.sport


def test_captured_icmp_protocol_unreachable_quotes_the_ipip_probe():
    rec = captured("icmp_proto_unreach_ipip")
    pkt = parse_packet_untrusted(rec["data"])
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (3, 2, rec["target"])
    q = pkt.quoted
    assert (q.proto, ip_str(q.src), ip_str(q.dst)) == (4, rec["sender"], rec["target"])
    assert q.ip_id == q.sport == q.dport >= SLOT_BASE
    p = verify_quoted(rec, q)
    assert slot_of(p.probe_id) == q.ip_id


def test_captured_vxlan_probe_as_it_arrived():
    rec = captured("vxlan_probe_arrived")
    pkt = parse_packet_untrusted(rec["data"])
    assert pkt.encap is Encap.VXLAN
    assert (ip_str(pkt.src), ip_str(pkt.dst), pkt.outer_dport) == (rec["sender"], rec["target"], 4789)
    assert (ip_str(pkt.inner_src), ip_str(pkt.inner_dst)) == (rec["target"], rec["sender"])
    assert pkt.sport == pkt.dport == pkt.outer_sport
    assert slot_of(verify(rec, pkt).probe_id) == pkt.sport
    assert struct.unpack_from("!I", rec["data"], 32)[0] >> 8 == rec["vni"] == IP(rec["data"])[VXLAN].vni


@pytest.mark.parametrize("name,encap", [("udp_probe_arrived", Encap.UDP), ("ipip_probe_arrived", Encap.IPIP)])
def test_captured_payload_probes_verify(name, encap):
    rec = captured(name)
    pkt = parse_packet_untrusted(rec["data"])
    assert pkt.encap is encap
    p = verify(rec, pkt)
    assert not p.is_echo and slot_of(p.probe_id) == pkt.sport and p.marker == marker(rec)
    with pytest.raises(BadPacket):
        verify(rec, pkt, b"another key")


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
    syn = TcpSynTemplate(A, B, 179).build(40000, 0xAABBCCDD, 40000 ^ 0x1234)
    pkt = parse_packet_untrusted(_icmp(syn[:28]))
    assert (pkt.type, pkt.code, ip_str(pkt.src)) == (11, 0, "198.51.100.1")
    assert pkt.quoted == Quoted(6, ip_bytes(A), ip_bytes(B), 40000 ^ 0x1234, 40000, 179, 0xAABBCCDD)


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


@pytest.mark.parametrize("options,message", [
    (b"\x08\x0a\0\0\0\1", "bad TCP option length"),          # timestamp running past the header
    (b"\x02\x01\0\0", "bad TCP option length"),                  # length 1
    (b"\x01\x01\x01\x08", "bad TCP option length"),              # kind with no length byte
    (b"\x08\x06\0\0\0\1\0\0", "bad TCP timestamp option"),
])
def test_syn_options_are_read_strictly(options, message):
    data = bytearray(bytes(IP(src=A, dst=B) / TCP(sport=40000, dport=179, flags="S", options=[]) / options))
    data[32] = ((20 + len(options)) // 4) << 4
    with pytest.raises(BadPacket, match=message):
        parse_packet_untrusted(bytes(data))


def test_syn_options_past_the_segment_are_rejected():
    data = bytearray(bytes(IP(src=A, dst=B) / TCP(sport=40000, dport=179, flags="S")))
    data[32] = 15 << 4  # 60-byte header in a 20-byte segment
    with pytest.raises(BadPacket, match="truncated TCP options"):
        parse_packet_untrusted(bytes(data))


def test_syn_timestamp_after_eol_is_not_read():
    opts = [("EOL", None), ("Timestamp", (5, 0))]
    pkt = parse_packet_untrusted(bytes(IP(src=A, dst=B) / TCP(sport=40000, dport=179, flags="S", options=opts)))
    assert pkt.tsval is None


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
    TcpSynTemplate(A, B, 179).build(40000, 1, 2, 3),
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
            cookies.verify_payload(KEY, pkt.payload, pkt.flow())
        except BadPacket:
            pass


def test_every_truncation_of_every_valid_packet():
    for data in VALID:
        for cut in range(len(data) + 1):
            _only_bad_packet(data[:cut])
