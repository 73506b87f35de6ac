"""IPv6 probes end to end without a kernel: the templates (scapy the oracle), the struct parsers
(fuzzed), the BPF programs for both capture layouts (interpreted, the keyed marker included), and
the prober and responder state machines over IPv6: authenticated SYNs, SYN-ACKs, ICMPv6 errors
and echoes (docs/design.md, "Probes")."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6TimeExceeded,
                                IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop)
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netprobe.core import bpf, cookies, templates
from netprobe.core.checks import CHECKS, Check, Direction, Proto
from netprobe.core.cookies import PAYLOAD_LEN, ProbeKeys, ProbePayload, dest_key, encode_payload, slot_of, syn_ip_id
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.keys import probe_key
from netprobe.core.parse import (Encap, IcmpPacket, PayloadPacket, TcpPacket, ip_bytes, ip_str, ipv6_packet,
                                 is_unicast, parse_ipv6_untrusted, parse_packet_untrusted)
from netprobe.core.prober import Prober
from netprobe.core.responder import ResponderCore, build_udp6_echo, echo_payload
from netprobe.core.result import Icmp, Reach, ReplyKind, Verdict, Where
from netprobe.core.templates import TcpSyn6Template, UdpProbe6Template, VxlanProbe6Template
from netprobe.core.verdict import classify
from netprobe.core.wire import ETH_P_IPV6, PACKET_OUTGOING, SYN_TSECR_OFFSET, VXLAN_INNER_SRC_MAC
from netprobe.errors import BadPacket

KEY = probe_key("ipv6-unit-token")
A, B, ROUTER = "2001:db8::1", "2001:db8::2", "2001:db8:9::1"
WALL = 1_700_000_000_000_000_000
MARKER = ProbeKeys(KEY).marker
DNS = Check("dns", "cluster DNS", Proto.UDP, 53, Direction.BOTH)
BGP, ETCD, VXLAN_CHECK, WG6 = CHECKS["bgp"], CHECKS["etcd"], CHECKS["vxlan"], CHECKS["wireguard6"]


def payload(probe_id: int = 7) -> bytes:
    return encode_payload(KEY, ProbePayload(probe_id, WALL, 0, MARKER), b"")


def rechecksummed(data: bytes, *layers) -> bytes:
    """scapy rebuilds ``data`` with the checksums of ``layers`` ((class, nth)) deleted: equal bytes
    mean ours were right."""
    pkt = IPv6(data)
    for layer, nth in layers:
        del pkt.getlayer(layer, nth).chksum
    return bytes(pkt)


# ------------------------------------------------------------------ templates


@settings(max_examples=200)
@given(st.integers(0, 0x7FFF), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
       st.sampled_from([179, 2379, 5473, 6443]))
def test_syn6_round_trips_with_valid_checksum(slot, seq, word, tsval, dport):
    data = TcpSyn6Template(A, B, dport).build(32768 | slot, seq, word, tsval)
    s = IPv6(data)
    assert (s.src, s.dst, s.nh, s.hlim, s.plen) == (A, B, 6, 64, len(data) - 40)
    assert (s[TCP].sport, s[TCP].dport, s[TCP].seq, str(s[TCP].flags)) == (32768 | slot, dport, seq, "S")
    # a Linux client's SYN; the marker word where a SYN's TSecr goes unread (RFC 7323)
    assert s[TCP].options == [("MSS", 1440), ("SAckOK", b""), ("Timestamp", (tsval, word)), ("NOP", None),
                              ("WScale", 7)]
    assert struct.unpack_from("!H", data, 40 + SYN_TSECR_OFFSET + 2)[0] == word
    assert rechecksummed(data, (TCP, 1)) == data
    pkt = parse_packet_untrusted(data)
    assert isinstance(pkt, TcpPacket) and pkt.is_syn and pkt.tsval == tsval and pkt.src == ip_bytes(A)


@pytest.mark.parametrize("dport", [53, 51821])
def test_udp6_probe_round_trip(dport):
    tpl = UdpProbe6Template(A, B, dport)
    body = payload(0x4242)
    data = tpl.build(slot_of(0x4242), body)
    assert parse_packet_untrusted(data) == PayloadPacket(Encap.UDP, ip_bytes(A), ip_bytes(B), slot_of(0x4242),
                                                         dport, body)
    assert parse_packet_untrusted(data).flow() == tpl.flow(slot_of(0x4242))
    assert IPv6(data)[UDP].chksum != 0 and rechecksummed(data, (UDP, 1)) == data  # mandatory over IPv6


@pytest.mark.parametrize("dport, vni", [(4789, 1), (8472, (1 << 24) - 1)])
def test_vxlan6_probe_round_trip(dport, vni):
    tpl = VxlanProbe6Template(A, B, vni, dport=dport)
    sport, body = slot_of(0xABCD), payload(0xABCD)
    data = tpl.build(sport, body)
    pkt = parse_packet_untrusted(data)
    assert pkt == PayloadPacket(Encap.VXLAN, ip_bytes(A), ip_bytes(B), sport, sport, body, 0,
                                inner_src=ip_bytes(B), inner_dst=ip_bytes(A), outer_sport=sport, outer_dport=dport)
    assert pkt.flow() == tpl.flow(sport)
    s = IPv6(data)
    if dport != 4789:  # scapy binds VXLAN to 4789 only
        s = IPv6(bytes(s)[:48]) / VXLAN(bytes(s)[48:])
    assert s[VXLAN].vni == vni and s[Ether].type == ETH_P_IPV6 and s[Ether].src == VXLAN_INNER_SRC_MAC
    inner = s.getlayer(IPv6, 2)
    assert (inner.src, inner.dst) == (B, A)  # addressed to go back home, as for IPv4
    outer_udp, inner_udp = s.getlayer(UDP, 1), s.getlayer(UDP, 2)
    assert outer_udp.chksum and inner_udp.chksum
    del outer_udp.chksum, inner_udp.chksum
    assert bytes(s) == data


def test_templates_for_ipv6_targets_and_ipip_never():
    made = templates.for_targets(A, [ProbeTarget(BGP, B), ProbeTarget(WG6, B), ProbeTarget(VXLAN_CHECK, B)])
    assert [type(t).__name__ for t in made.values()] == ["TcpSyn6Template", "UdpProbe6Template",
                                                        "VxlanProbe6Template"]
    with pytest.raises(ValueError, match="not probed over IPv6"):
        templates.for_targets(A, [ProbeTarget(CHECKS["ipip"], B)])


# ------------------------------------------------------------------ parsers


def syn6(sport=40000, dport=179, word=0, src=A, dst=B) -> bytes:
    return bytes(IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1,
                                              options=[("Timestamp", (5, word))]))


def test_parse_ipv6_answers():
    syn_ack = bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=40000, flags="SA", seq=9, ack=2))
    assert parse_packet_untrusted(syn_ack) == TcpPacket(ip_bytes(B), ip_bytes(A), 179, 40000, 9, 2, 0x12)
    sent = TcpSyn6Template(A, B, 6443).build(40000, 0x1234, 0, 7)
    err = parse_packet_untrusted(bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / sent))
    assert isinstance(err, IcmpPacket) and (err.type, err.code, err.src) == (1, 1, ip_bytes(B))
    assert (err.quoted.proto, err.quoted.dport, err.quoted.seq, err.quoted.dst) == (6, 6443, 0x1234, ip_bytes(B))
    for tpl in (UdpProbe6Template(A, B, 53), VxlanProbe6Template(A, B, 1)):
        probe = tpl.build(40001, payload())
        quoted = parse_packet_untrusted(bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=4) / probe)).quoted
        assert quoted.payload == payload()  # the exact payload sent: matches exactly that attempt
    exceeded = parse_packet_untrusted(bytes(IPv6(src=ROUTER, dst=A) / ICMPv6TimeExceeded() / sent))
    assert (exceeded.type, exceeded.code, exceeded.src) == (3, 0, ip_bytes(ROUTER))


@pytest.mark.parametrize("data, message", [
    (bytes(IPv6(src=B, dst=A) / ICMPv6EchoRequest()), "truncated ICMP error"),
    (bytes(IPv6(src=B, dst=A) / ICMPv6EchoRequest() / (b"x" * 40)), "not an error we track"),
    (bytes(IPv6(src=B, dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt=A) / (b"x" * 40)), "not an error we track"),
    (bytes(IPv6(src=A, dst=B) / IPv6ExtHdrHopByHop() / TCP(flags="S")), "next header 0"),
    (bytes(IPv6(src=A, dst=B) / IPv6ExtHdrFragment() / UDP()), "next header 44"),
    (bytes(IPv6(src=B, dst=A) / UDP(sport=53, dport=40000) / (b"a dns answer" * 4)), "without a netprobe payload"),
    (syn6()[:39], "shorter than an IPv6 header"),
    (b"\x60" + syn6()[1:4] + b"\0\0" + syn6()[6:], "jumbogram"),
    (bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach() / bytes(IPv6(src=A, dst=B, nh=4) / (b"\0" * 40))),
     "quotes protocol 4"),
])
def test_parse_ipv6_rejects(data, message):
    with pytest.raises(BadPacket, match=message):
        parse_packet_untrusted(data)


def test_ipv6_packet_rebuilds_what_a_raw_socket_dropped():
    """A raw IPv6 socket hands over the transport header onwards; the capture puts the header back
    from recvmsg's addresses, and the result parses as what the tap saw."""
    seen = TcpSyn6Template(A, B, 179).build(40000, 5, 6, 7)
    rebuilt = ipv6_packet(ip_bytes(A), ip_bytes(B), 6, seen[40:])
    assert parse_packet_untrusted(rebuilt) == parse_packet_untrusted(seen)
    assert parse_ipv6_untrusted(rebuilt)[:4] == (6, ip_bytes(A), ip_bytes(B), 0)


def test_addresses_of_both_families():
    assert ip_str(ip_bytes("2001:DB8:0::1")) == "2001:db8::1" and len(ip_bytes(A)) == 16
    assert is_unicast(ip_bytes(A))
    for bad in ("::", "::1", "fe80::1", "ff02::1", "::ffff:198.51.100.1"):
        assert not is_unicast(ip_bytes(bad)), bad


@settings(max_examples=500)
@given(st.binary(min_size=1, max_size=120).map(lambda b: bytes([0x60 | (b[0] & 0x0F)]) + b[1:]))
def test_random_ipv6_looking_bytes_raise_only_bad_packet(data):
    try:
        parse_packet_untrusted(data)
    except BadPacket:
        pass


GENUINE6 = [TcpSyn6Template(A, B, 179).build(40000, 1, 2, 3), UdpProbe6Template(A, B, 53).build(40001, payload()),
            VxlanProbe6Template(A, B, 1).build(40002, payload()),
            bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / TcpSyn6Template(A, B, 6443).build(40000, 1, 2, 3)),
            bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=4) / VxlanProbe6Template(A, B, 1).build(1, payload()))]


@settings(max_examples=500)
@given(st.sampled_from(GENUINE6), st.data())
def test_mutated_and_truncated_ipv6_packets_raise_only_bad_packet(data, draw):
    cut = draw.draw(st.integers(0, len(data)))
    mutated = bytearray(data[:cut])
    for _ in range(draw.draw(st.integers(0, 3))):
        if mutated:
            mutated[draw.draw(st.integers(0, len(mutated) - 1))] = draw.draw(st.integers(0, 255))
    try:
        parse_packet_untrusted(bytes(mutated))
    except BadPacket:
        pass


# ------------------------------------------------------------------ BPF: the tap (IPv6 header at 0)
# and a raw IPv6 socket (the transport header at 0, one protocol per socket)


def passes(prog, data: bytes, pkttype: int = 0) -> bool:
    kept = bpf.run(prog, data, pkttype=pkttype)
    assert kept in (0, bpf.SNAPLEN)
    return kept == bpf.SNAPLEN


def both(kind, data: bytes, *, pkttype: int = 0, marker: int = MARKER) -> tuple[bool, bool]:
    """Whether ``kind`` (sender_filter6 or responder_filter6) passes ``data`` on the tap, and on a
    raw socket of its protocol (fed without the IPv6 header)."""
    proto = data[6]
    tap = passes(kind(tap=True, marker=marker), data, pkttype)
    raw = passes(kind(tap=False, marker=marker, proto=proto), data[40:])
    return tap, raw


def marked_syn6(sport=40000, marker=MARKER) -> bytes:
    return TcpSyn6Template(A, B, 179).build(sport, 1234, syn_ip_id(marker, sport), 99)


def echo6(tpl=None) -> bytes:
    probe = parse_packet_untrusted((tpl or UdpProbe6Template(A, B, 53)).build(40000, payload()))
    return build_udp6_echo(probe, echo_payload(ProbeKeys(KEY), probe, ProbePayload(1, 2, 1)))


SYN_ACK6 = bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=40000, flags="SA"))
RST6 = bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=40000, flags="RA"))
ADMIN6 = bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / marked_syn6())
EXCEEDED6 = bytes(IPv6(src=ROUTER, dst=A) / ICMPv6TimeExceeded() / marked_syn6())
UNRELATED6 = [
    bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=1000, flags="SA")),      # to no probe slot
    bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=40000, flags="A")),      # not an answer to a SYN
    bytes(IPv6(src=B, dst=A) / ICMPv6EchoRequest() / (b"x" * 40)),
    bytes(IPv6(src=B, dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt=A)),
    bytes(IPv6(src=B, dst=A) / UDP(sport=53, dport=40000) / (b"just a dns answer" * 3)),
]


@pytest.mark.parametrize("data", [SYN_ACK6, RST6, ADMIN6, EXCEEDED6, echo6(), echo6(VxlanProbe6Template(A, B, 1))],
                         ids=["syn-ack", "rst", "icmp6-admin", "time-exceeded", "echo", "vxlan-echo"])
def test_sender_filter6_passes_answers(data):
    assert both(bpf.sender_filter6, data) == (True, True)
    assert not passes(bpf.sender_filter6(tap=True, marker=MARKER), data, PACKET_OUTGOING)  # only incoming


@pytest.mark.parametrize("data", UNRELATED6, ids=["syn-ack-low-port", "ack", "echo-request", "nd", "dns"])
def test_filters6_drop_unrelated_traffic(data):
    assert both(bpf.sender_filter6, data) == (False, False)
    assert both(bpf.responder_filter6, data) == (False, False)


def test_responder_filter6_passes_marked_probes_and_answers_leaving():
    probes = [marked_syn6(), UdpProbe6Template(A, B, 53).build(40000, payload()),
              VxlanProbe6Template(A, B, 1).build(40000, payload())]
    for data in probes:
        assert both(bpf.responder_filter6, data) == (True, True)
    unmarked = TcpSyn6Template(A, B, 179).build(40000, 1234, syn_ip_id(MARKER, 40000) ^ 1, 99)
    assert both(bpf.responder_filter6, unmarked) == (False, False)
    assert both(bpf.responder_filter6, marked_syn6(sport=1000)) == (False, False)  # no probe slot
    # on the tap, this host's answers leaving; a raw socket never sees them
    for data in (bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=40000, flags="SA")),
                 bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / marked_syn6()), echo6()):
        tap = bpf.responder_filter6(tap=True, marker=MARKER)
        assert passes(tap, data, PACKET_OUTGOING) and (data[6] == 17 or not passes(tap, data))
    # a probe of another cluster (another marker) stays out
    for data in probes:
        assert both(bpf.responder_filter6, data, marker=MARKER ^ 1) == (False, False)


def test_filters6_drop_fragments_and_extension_headers():
    frag = bytes(IPv6(src=A, dst=B) / IPv6ExtHdrFragment() / UDP(sport=40000, dport=53) / payload())
    hbh = bytes(IPv6(src=B, dst=A) / IPv6ExtHdrHopByHop() / TCP(sport=179, dport=40000, flags="SA"))
    for data in (frag, hbh):
        assert not passes(bpf.sender_filter6(tap=True, marker=MARKER), data)
        assert not passes(bpf.responder_filter6(tap=True, marker=MARKER), data)


def test_keyless_marked_ipv6_probes_pass_about_once_in_65536():
    """The marker test of IPv4 holds over IPv6: SYNs with a guessed TSecr word and payloads with a
    guessed marker pass as often as a 16-bit guess, on both capture layouts."""
    rng = random.Random(6)
    body = bytearray(encode_payload(b"x", ProbePayload(1, 2), b""))
    tap, raw_tcp, raw_udp = (bpf.responder_filter6(tap=True, marker=MARKER),
                             bpf.responder_filter6(tap=False, marker=MARKER, proto=6),
                             bpf.responder_filter6(tap=False, marker=MARKER, proto=17))
    passed = 0
    syn_tpl, udp_tpl = TcpSyn6Template(A, B, 179), UdpProbe6Template(A, B, 53)
    for _ in range(20_000):
        sport = rng.randrange(32768, 65536)
        syn = syn_tpl.build(sport, 1, rng.randrange(65536), 2)
        body[6:8] = rng.randrange(65536).to_bytes(2, "big")
        udp = udp_tpl.build(sport, bytes(body))
        passed += passes(tap, syn) + passes(raw_tcp, syn[40:]) + passes(raw_udp, udp[40:])
    assert passed <= 6  # expected 0.9


@pytest.mark.parametrize("prog", [bpf.sender_filter6(tap=True, marker=1), bpf.sender_filter6(tap=False, marker=1, proto=6),
                                  bpf.responder_filter6(tap=True, marker=1),
                                  bpf.responder_filter6(tap=False, marker=1, proto=17)],
                         ids=["sender-tap", "sender-raw", "responder-tap", "responder-raw"])
def test_programs6_are_valid_for_the_kernel(prog):
    assert 0 < len(prog) <= 4096 and prog[-1][0] & 0x07 == bpf.RET
    for i, (code, jt, jf, k) in enumerate(prog):
        if code & 0x07 == bpf.JMP:
            targets = [i + 1 + k] if code == bpf.JMP | bpf.JA else [i + 1 + jt, i + 1 + jf]
            assert all(t < len(prog) for t in targets), (i, targets)


def test_a_raw_socket_filter6_needs_its_protocol():
    with pytest.raises(ValueError, match="protocol"):
        bpf.sender_filter6(tap=False, marker=1)


@settings(max_examples=300)
@given(st.binary(max_size=120), st.sampled_from([0, PACKET_OUTGOING]), st.sampled_from([6, 17, 58]))
def test_filters6_never_crash(data, pkttype, proto):
    for kind in (bpf.sender_filter6, bpf.responder_filter6):
        assert bpf.run(kind(tap=True, marker=MARKER), data, pkttype=pkttype) in (0, bpf.SNAPLEN)
        assert bpf.run(kind(tap=False, marker=MARKER, proto=proto), data) in (0, bpf.SNAPLEN)


# ------------------------------------------------------------------ the state machines over IPv6


def prober6(*targets: ProbeTarget, **kw) -> Prober:
    return Prober(KEY, A, list(targets), templates.for_targets(A, targets), first_id=1000, **kw)


def started6(*checks: Check, **kw):
    p = prober6(*[ProbeTarget(c, B, "b") for c in checks], **kw)
    sends = p.start(0.0, WALL)
    for s in sends:
        p.send_done(s.probe_id, 0.0)
    return p, sends


def test_prober6_sends_keyed_syns_the_responder_authenticates():
    p, (send,) = started6(BGP)
    syn = parse_packet_untrusted(send.data)
    assert send.address == B and syn.tsval == 1000 and syn.sport == slot_of(1000)
    assert struct.unpack_from("!H", send.data, 40 + SYN_TSECR_OFFSET + 2)[0] == syn_ip_id(MARKER, syn.sport)
    core = ResponderCore(KEY)
    core.on_packet(send.data, via=Via.TAP, outgoing=False, now=1.0, wall_ns=WALL)
    core.on_packet(send.data, via=Via.RAW, outgoing=False, now=1.0, wall_ns=WALL)
    assert core.observations() == [{"src": A, "probe_id": 1000, "proto": "tcp", "arrived": True, "accepted": True,
                                     "answered": False, "t": 1.0}]
    # the target's SYN-ACK, built by scapy from what was sent, is matched on its exact sequence number
    reply = bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=syn.sport, flags="SA", seq=7, ack=syn.seq + 1))
    assert p.receive(reply, Via.RAW, 0.002) == 1000 and p.finished
    [o] = p.outcomes()
    assert (o.evidence.reply, o.evidence.reply_accepted) == (ReplyKind.SYN_ACK, True)
    wrong = bytes(IPv6(src=B, dst=A) / TCP(sport=179, dport=syn.sport, flags="SA", ack=syn.seq + 2))
    assert prober6(ProbeTarget(BGP, B)).receive(wrong, Via.RAW, 0.0) is None


def test_prober6_matches_an_icmpv6_error_and_the_verdict_reads_it():
    p, (send,) = started6(ETCD)
    err = bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / send.data)
    assert p.receive(err, Via.RAW, 0.001) == 1000
    [o] = p.outcomes()
    assert o.evidence.icmp == Icmp(1, 1, B)
    c = classify(ETCD.proto, o.evidence, B)
    assert (c.reach, c.where, c.verdict) == (Reach.BLOCKED, Where.DESTINATION_INGRESS, Verdict.REJECTED)
    # a quoted SYN of another flow (another destination port) matches nothing
    other = bytes(IPv6(src=B, dst=A) / ICMPv6DestUnreach(code=1) / TcpSyn6Template(A, B, 2380).build(
        parse_packet_untrusted(send.data).sport, parse_packet_untrusted(send.data).seq, 0, 1000))
    assert prober6(ProbeTarget(ETCD, B)).receive(other, Via.RAW, 0.0) is None


@pytest.mark.parametrize("check", [WG6, VXLAN_CHECK, DNS])
def test_payload_probes_round_trip_over_ipv6(check):
    """prober -> responder -> echo -> prober: the echo is IPv6, keyed for the prober's address,
    never larger than the probe, with a valid UDP checksum, and it answers exactly its probe."""
    p, (send,) = started6(check)
    core = ResponderCore(KEY, is_own_address=lambda addr: addr == ip_bytes(B))
    echo = core.on_packet(send.data, via=Via.RAW, outgoing=False, now=1.0, wall_ns=WALL)
    assert echo is not None and echo.address == A and len(echo.data) <= len(send.data)
    back = IPv6(echo.data)
    assert (back.src, back.dst, back[UDP].dport) == (B, A, slot_of(1000))
    assert rechecksummed(echo.data, (UDP, 1)) == echo.data
    assert core.on_packet(send.data, via=Via.RAW, outgoing=False, now=1.1, wall_ns=WALL) is None  # once
    assert p.receive(echo.data, Via.RAW, 0.003) == 1000
    [o] = p.outcomes()
    assert (o.evidence.reply, o.evidence.reply_accepted) == (ReplyKind.ECHO, True)


def test_a_rewritten_or_misaddressed_ipv6_probe_is_not_authenticated():
    _p, (send,) = started6(WG6)
    core = ResponderCore(KEY)
    moved = bytearray(send.data)
    moved[24:40] = ip_bytes("2001:db8::3")  # sent to another host: its key differs
    assert core.on_packet(bytes(moved), via=Via.RAW, outgoing=False, now=1.0, wall_ns=WALL) is None
    assert core.stats["unauthenticated"] == 1 and core.observations() == []
    # and no echo leaves an address that is not this host's own
    refusing = ResponderCore(KEY, is_own_address=lambda addr: False)
    assert refusing.on_packet(send.data, via=Via.RAW, outgoing=False, now=1.0, wall_ns=WALL) is None
    assert refusing.stats["refused"] == 1


def test_ipv6_payload_offsets_agree_with_the_wire_constants():
    from netprobe.core.wire import VXLAN6_PAYLOAD_OFFSET

    data = VxlanProbe6Template(A, B, 1).build(40000, payload())
    assert data[40 + VXLAN6_PAYLOAD_OFFSET:40 + VXLAN6_PAYLOAD_OFFSET + PAYLOAD_LEN] == payload()
    assert dest_key(KEY, ip_bytes(B)) != dest_key(KEY, ip_bytes("198.18.0.2"))
