"""Prober, the prober as a state machine: sends, retries, deadlines and matching replies back
to probes. Replies are built with scapy from the probe that was sent, and taken from real captures."""

from __future__ import annotations

import errno
import pickle
import subprocess
import sys

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

from helpers import captured
from netprobe.core import cookies, parse, templates
from netprobe.core.checks import CHECKS, Check, Direction, Proto
from netprobe.core.cookies import FLAG_ECHO, ProbeKeys, ProbePayload, dest_key, encode_payload, flow_bytes
from netprobe.core.keys import probe_key
from netprobe.core.events import Outcome, ProbeTarget, Send, Via
from netprobe.core.parse import Encap, parse_packet_untrusted
from netprobe.core.prober import Prober
from netprobe.core.echoes import build_echo, build_udp_echo, echo_flow
from netprobe.core.result import Icmp, Reach, ReplyKind, Verdict, Where
from netprobe.core.verdict import classify

KEY = probe_key("unit-test-token")
SRC, DST, DST2 = "198.18.0.1", "198.18.0.2", "198.18.0.3"
ROUTER = "198.18.9.1"
WALL = 1_700_000_000_000_000_000
DNS = Check("dns", "cluster DNS", Proto.UDP, 53, Direction.BOTH)
BGP, ETCD, VXLAN, IPIP = CHECKS["bgp"], CHECKS["etcd"], CHECKS["vxlan"], CHECKS["ipip"]


def new_prober(key: bytes, source: str, targets, *, vni: int = 1, **kw) -> Prober:
    """A Prober with the templates its shell would make before the run."""
    targets = list(targets)
    return Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), **kw)



def prober_of(*targets: ProbeTarget, retries: int = 1, window: float = 1.0, first_id: int = 1000, **kw) -> Prober:
    return new_prober(KEY, SRC, list(targets), window=window, retries=retries, first_id=first_id, **kw)


def started(*checks: Check, address: str = DST, **kw) -> tuple[Prober, list[Send]]:
    """A prober whose first attempts were all sent successfully at t=0."""
    s = prober_of(*[ProbeTarget(c, address, "b") for c in checks], **kw)
    sends = s.start(0.0, WALL)
    for cmd in sends:
        s.send_done(cmd.probe_id, 0.0)
    return s, sends


def outcome(s: Prober, probe_id: int) -> Outcome:
    return next(o for o in s.outcomes() if o.probe_id == probe_id)


def syn_reply(send: Send, flags: str = "SA", *, src: str | None = None, ack_delta: int = 1, dst: str = SRC) -> bytes:
    """The target's answer to a SYN we sent: ack = our seq + 1."""
    syn = IP(send.data)
    return bytes(IP(src=src or syn.dst, dst=dst) / TCP(sport=syn[TCP].dport, dport=syn[TCP].sport, flags=flags,
                                                       seq=12345, ack=(syn[TCP].seq + ack_delta) & 0xFFFFFFFF))


def icmp_about(send: Send, type_: int = 3, code: int = 13, *, src: str | None = None, quote: int | None = None) -> bytes:
    """An ICMP error quoting ``quote`` bytes (all by default) of what we sent."""
    quoted = send.data if quote is None else send.data[:quote]
    return bytes(IP(src=src or IP(send.data).dst, dst=SRC) / ICMP(type=type_, code=code) / quoted)


def echo_to(send: Send, *, key: bytes = KEY, probe_id: int | None = None, src: bytes | None = None,
            flags: int = FLAG_ECHO, plain: bool = False) -> bytes:
    """The responder's echo to ``send`` (keyed for the prober's address, over the echo's flow), in
    the probe's encapsulation; ``plain``: as plain UDP, as agents older than that answered."""
    probe = parse_packet_untrusted(send.data)
    p = cookies.decode_payload_untrusted(probe.payload)[0]
    if src is not None:
        probe = parse.PayloadPacket(probe.encap, probe.src, src, probe.sport, probe.dport, probe.payload, probe.ip_id,
                                      src, probe.inner_dst, probe.outer_sport, probe.outer_dport, probe.vni)
    if plain:
        ports = (probe.outer_dport, probe.outer_sport) if probe.encap is Encap.VXLAN else (probe.dport, probe.sport)
        probe = parse.PayloadPacket(Encap.UDP, probe.src, probe.dst, ports[1], ports[0], probe.payload)
    body = encode_payload(dest_key(key, probe.src), ProbePayload(send.probe_id if probe_id is None else probe_id,
                                                                 p.timestamp_ns, flags), echo_flow(probe))
    return build_udp_echo(probe, body) if plain else build_echo(probe, body)


def verified(send: Send) -> ProbePayload:
    """The payload of a probe we sent, checked as its target checks it."""
    pkt = parse_packet_untrusted(send.data)
    return cookies.verify_payload(dest_key(KEY, pkt.dst), pkt.payload, pkt.flow())


# ------------------------------------------------------------------ commands out


def test_start_gives_one_send_per_target():
    targets = [ProbeTarget(BGP, DST, "b"), ProbeTarget(ETCD, DST, "b"), ProbeTarget(DNS, DST2, "c"), ProbeTarget(VXLAN, DST, "b"),
               ProbeTarget(IPIP, DST2, "c")]
    s = prober_of(*targets, first_id=77)
    sends = s.start(0.0, WALL)
    assert [c.probe_id for c in sends] == [77, 78, 79, 80, 81]
    assert [c.address for c in sends] == [DST, DST, DST2, DST, DST2]
    kinds = [parse_packet_untrusted(c.data) for c in sends]
    assert [k.dport for k in kinds[:2]] == [179, 2379] and all(k.is_syn for k in kinds[:2])
    assert [(k.encap, k.dport) for k in kinds[2:4]] == [(Encap.UDP, 53), (Encap.VXLAN, cookies.slot_of(80))]
    assert kinds[3].outer_dport == 4789
    assert kinds[4].encap is Encap.IPIP and kinds[4].ip_id == cookies.slot_of(81)
    for send, k in zip(sends, kinds, strict=True):
        assert parse.ip_str(k.src) == SRC and parse.ip_str(k.dst) == send.address
        assert k.sport == cookies.slot_of(send.probe_id)
    # payload probes carry an authenticated id and the wall clock we gave
    marker = ProbeKeys(KEY).marker
    for send, k in zip(sends[2:], kinds[2:], strict=True):
        assert verified(send) == ProbePayload(send.probe_id, WALL, 0, marker)
    # the SYN carries its id (TSval) and a 32-bit keyed sequence number for it and its flow
    assert kinds[0].tsval == 77
    assert cookies.tcp_syn_probe_id(dest_key(KEY, kinds[0].dst), kinds[0].src, kinds[0].dst, kinds[0].sport, 179,
                                    kinds[0].seq, kinds[0].tsval) == 77
    assert int.from_bytes(sends[0].data[4:6], "big") == kinds[0].sport ^ marker
    assert not s.finished and s.deadline == 1.0


def test_probe_ids_wrap_around_32_bits():
    s = prober_of(ProbeTarget(BGP, DST), ProbeTarget(ETCD, DST), first_id=0xFFFFFFFF)
    assert [c.probe_id for c in s.start(0.0, WALL)] == [0xFFFFFFFF, 0]


def test_vxlan_probe_uses_the_templates_vni():
    _s, sends = started(VXLAN, vni=4242)
    assert IP(sends[0].data)["VXLAN"].vni == 4242


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES])
def test_send_refused_by_own_firewall_is_final(err):
    s = prober_of(ProbeTarget(BGP, DST), retries=3)
    (send,) = s.start(0.0, WALL)
    s.send_done(send.probe_id, 0.0, err)
    assert s.finished and s.deadline is None
    assert s.tick(10.0, WALL) == []  # no retry
    ev = outcome(s, send.probe_id).evidence
    assert ev.sent is False and ev.attempts == 1
    assert ev.send_error == ("Operation not permitted" if err == errno.EPERM else "Permission denied")
    assert classify(Proto.TCP, ev, DST).where is Where.SOURCE_EGRESS


def test_other_send_errors_are_retried():
    s = prober_of(ProbeTarget(BGP, DST), retries=1)
    (send,) = s.start(0.0, WALL)
    s.send_done(send.probe_id, 0.0, errno.ENETUNREACH)
    assert not s.finished
    assert len(s.tick(1.0, WALL)) == 1
    ev = outcome(s, send.probe_id).evidence
    assert ev.send_error == "Network is unreachable" and ev.attempts == 2


def test_unknown_errno_is_kept_as_a_number():
    s = prober_of(ProbeTarget(BGP, DST))
    (send,) = s.start(0.0, WALL)
    s.send_done(send.probe_id, 0.0, 99999)
    assert outcome(s, send.probe_id).evidence.send_error == "99999"


def test_eperm_after_a_successful_send_does_not_end_the_probe():
    s, (send,) = started(BGP, retries=2)
    (retry,) = s.tick(1.0, WALL)
    s.send_done(retry.probe_id, 1.0, errno.EPERM)
    assert not s.finished
    assert outcome(s, send.probe_id).evidence.sent is True


def test_tick_before_the_deadline_does_nothing():
    s, _ = started(BGP, ETCD, window=1.0, retries=2)
    before = s.outcomes()
    assert s.tick(0.5, WALL) == []
    assert s.tick(0.999, WALL) == []
    assert s.outcomes() == before and not s.finished and s.deadline == 1.0


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_silence_retransmits_up_to_retries_then_finishes(retries):
    s, (first,) = started(BGP, window=1.0, retries=retries)
    now, resent = 0.0, []
    for _ in range(retries):
        now = s.deadline
        sends = s.tick(now, WALL)
        assert len(sends) == 1 and sends[0].probe_id == first.probe_id
        assert sends[0].data == first.data  # same keyed seq on every attempt
        s.send_done(first.probe_id, now)
        assert s.deadline == now + 1.0
        resent += sends
    assert not s.finished
    assert s.tick(s.deadline, WALL) == []
    assert s.finished and s.deadline is None
    ev = outcome(s, first.probe_id).evidence
    assert (ev.sent, ev.attempts, ev.reply) == (True, retries + 1, None)
    assert len(resent) == retries


def test_deadline_counts_from_the_send_done():
    s = prober_of(ProbeTarget(BGP, DST), window=1.0)
    (send,) = s.start(0.0, WALL)
    s.send_done(send.probe_id, 0.25)
    assert s.deadline == 1.25


def test_payload_retransmission_carries_a_fresh_timestamp():
    s, (first,) = started(DNS, retries=1)
    (second,) = s.tick(1.0, WALL + 10**9)
    p1, p2 = verified(first), verified(second)
    assert p1.probe_id == p2.probe_id and p2.timestamp_ns == p1.timestamp_ns + 10**9


# ------------------------------------------------------------------ TCP replies


@pytest.mark.parametrize("flags,kind", [("SA", ReplyKind.SYN_ACK), ("RA", ReplyKind.RST), ("R", ReplyKind.RST)])
def test_tcp_reply_via_raw_finishes_early_with_rtt(flags, kind):
    s, (send,) = started(BGP, retries=3)
    assert s.receive(syn_reply(send, flags), Via.RAW, 0.004) == send.probe_id
    assert s.finished and s.stats["matched"] == 1
    o = outcome(s, send.probe_id)
    assert o.evidence.reply is kind
    assert (o.evidence.reply_arrived, o.evidence.reply_accepted, o.evidence.attempts) == (True, True, 1)
    assert o.rtt_ms == pytest.approx(4.0)
    assert o.target == ProbeTarget(BGP, DST, "b") and o.source == SRC


def test_syn_ack_via_tap_only_arrived_but_not_accepted():
    s, (send,) = started(BGP, retries=3)
    assert s.receive(syn_reply(send), Via.TAP, 0.01) == send.probe_id
    assert not s.finished  # the raw socket may still see it
    assert s.tick(1.0, WALL) == []  # an answer came: no retransmission
    assert s.finished
    ev = outcome(s, send.probe_id).evidence
    assert (ev.reply, ev.reply_arrived, ev.reply_accepted, ev.attempts) == (ReplyKind.SYN_ACK, True, False, 1)
    assert classify(Proto.TCP, ev, DST).where is Where.RETURN_PATH


def test_a_reply_on_the_ip_tap_arrived_but_is_not_accepted():
    """IPv6's tap is bound to ETH_P_IPV6 (``Via.IP``): a tap all the same, never INPUT's word."""
    s, (send,) = started(BGP, retries=3)
    assert s.receive(syn_reply(send), Via.IP, 0.01) == send.probe_id
    ev = outcome(s, send.probe_id).evidence
    assert (ev.reply_arrived, ev.reply_accepted, s.finished) == (True, False, False)


def test_tap_then_raw_is_accepted_and_rtt_from_the_first():
    s, (send,) = started(BGP)
    s.receive(syn_reply(send), Via.TAP, 0.002)
    s.receive(syn_reply(send), Via.RAW, 0.003)
    o = outcome(s, send.probe_id)
    assert o.evidence.reply_accepted and o.rtt_ms == pytest.approx(2.0) and s.finished


def _ignored(s: Prober, data: bytes, via: Via = Via.RAW) -> None:
    before = dict(s.stats)
    assert s.receive(data, via, 0.01) is None
    assert s.stats["ignored"] == before["ignored"] + 1 and s.stats["matched"] == before["matched"]


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda send: syn_reply(send, ack_delta=2), id="wrong-seq"),
    pytest.param(lambda send: syn_reply(send, ack_delta=0), id="ack-equals-seq"),
    pytest.param(lambda send: syn_reply(send, src="198.18.0.9"), id="wrong-address"),
    pytest.param(lambda send: syn_reply(send, dst="198.18.0.7"), id="not-to-us"),
    pytest.param(lambda send: syn_reply(send, "S"), id="a-syn"),
    pytest.param(lambda send: syn_reply(send, "A"), id="a-bare-ack"),
    pytest.param(lambda send: syn_reply(send, "PA"), id="a-data-segment"),
    pytest.param(lambda send: bytes(IP(src=DST, dst=SRC) / TCP(sport=180, dport=IP(send.data)[TCP].sport, flags="SA",
                                                               ack=IP(send.data)[TCP].seq + 1)), id="wrong-port"),
])
def test_tcp_replies_that_are_not_ours_are_ignored(mangle):
    s, (send,) = started(BGP)
    _ignored(s, mangle(send))
    ev = outcome(s, send.probe_id).evidence
    assert ev.reply is None and not ev.reply_arrived and not s.finished


def test_syn_ack_for_an_unknown_id_is_ignored():
    s, _ = started(BGP, first_id=1000)
    other = prober_of(ProbeTarget(BGP, DST), first_id=5000)  # same key, an id this prober never sent
    (foreign,) = other.start(0.0, WALL)
    _ignored(s, syn_reply(foreign))


def test_syn_ack_made_with_another_key_is_ignored():
    s, _ = started(BGP, first_id=1000)
    (foreign,) = new_prober(b"another key", SRC, [ProbeTarget(BGP, DST)], first_id=1000).start(0.0, WALL)
    _ignored(s, syn_reply(foreign))


def test_reply_matches_the_probe_of_its_target():
    s = new_prober(KEY, SRC, [ProbeTarget(BGP, DST), ProbeTarget(ETCD, DST), ProbeTarget(BGP, DST2)], first_id=10)
    sends = s.start(0.0, WALL)
    for cmd in sends:
        s.send_done(cmd.probe_id, 0.0)
    assert s.receive(syn_reply(sends[2]), Via.RAW, 0.1) == 12
    assert [o.evidence.reply for o in s.outcomes()] == [None, None, ReplyKind.SYN_ACK]
    assert [o.probe_id for o in s.outcomes() if not o.evidence.reply] == [10, 11]


def test_malformed_packets_are_counted():
    s, _ = started(BGP)
    assert s.receive(b"\x45\x00garbage", Via.TAP, 0.1) is None
    assert s.receive(b"", Via.RAW, 0.1) is None
    assert s.stats == {"ignored": 0, "malformed": 2, "matched": 0}


# ------------------------------------------------------------------ ICMP


@pytest.mark.parametrize("quote", [None, 28], ids=["full-quote", "8-bytes"])
@pytest.mark.parametrize("sender", [DST, ROUTER], ids=["from-target", "from-router"])
def test_icmp_quoting_a_tcp_probe(quote, sender):
    s, (send,) = started(BGP, retries=2)
    assert s.receive(icmp_about(send, 3, 13, src=sender, quote=quote), Via.RAW, 0.02) == send.probe_id
    ev = outcome(s, send.probe_id).evidence
    assert (ev.reply, ev.icmp) == (ReplyKind.ICMP, Icmp(3, 13, sender))
    assert s.finished


def test_time_exceeded_quoting_a_tcp_probe():
    s, (send,) = started(BGP)
    s.receive(icmp_about(send, 11, 0, src=ROUTER, quote=28), Via.RAW, 0.02)
    c = classify(Proto.TCP, outcome(s, send.probe_id).evidence, DST)
    assert (c.reach, c.where, c.verdict) == (Reach.BLOCKED, Where.NETWORK, Verdict.REJECTED)


@pytest.mark.parametrize("check", [DNS, VXLAN, IPIP], ids=["udp", "vxlan", "ipip"])
@pytest.mark.parametrize("quote", [None, 28], ids=["with-payload", "without-payload"])
def test_icmp_quoting_a_payload_probe(check, quote):
    s, (send,) = started(check)
    code = 2 if check is IPIP else 3
    assert s.receive(icmp_about(send, 3, code, quote=quote), Via.RAW, 0.02) == send.probe_id
    ev = outcome(s, send.probe_id).evidence
    assert (ev.reply, ev.icmp) == (ReplyKind.ICMP, Icmp(3, code, DST))


def test_icmp_quoting_a_probe_with_a_forged_payload_tag_is_ignored():
    s, (send,) = started(DNS)
    forged = bytearray(send.data)
    forged[-1] ^= 0xFF  # the last byte of the HMAC tag
    _ignored(s, icmp_about(Send(send.probe_id, send.address, bytes(forged))))


def test_icmp_quoting_a_probe_of_another_key_is_ignored():
    s, _ = started(DNS, first_id=1000)
    (foreign,) = new_prober(b"another key", SRC, [ProbeTarget(DNS, DST)], first_id=1000).start(0.0, WALL)
    _ignored(s, icmp_about(foreign))


def test_icmp_quoting_a_packet_from_another_source_is_ignored():
    s, (send,) = started(BGP)
    other = bytearray(send.data)
    other[12:16] = parse.ip_bytes("198.18.0.77")
    _ignored(s, icmp_about(Send(send.probe_id, send.address, bytes(other))))


@pytest.mark.parametrize("check", [BGP, DNS, IPIP], ids=["tcp", "udp", "ipip"])
def test_icmp_quoting_a_probe_to_another_address_is_ignored(check):
    s, _ = started(check)
    (elsewhere,) = prober_of(ProbeTarget(check, DST2)).start(0.0, WALL)  # same id and slot, other target
    _ignored(s, icmp_about(elsewhere, quote=28))


def test_icmp_quoting_a_tcp_probe_with_a_wrong_seq_is_ignored():
    s, (send,) = started(BGP)
    other = bytearray(send.data)
    other[24] ^= 0x01
    _ignored(s, icmp_about(Send(send.probe_id, send.address, bytes(other)), quote=28))


def test_icmp_quoting_an_8_byte_udp_probe_on_another_port_is_ignored():
    s, (send,) = started(DNS)
    other = bytes(IP(src=SRC, dst=DST) / UDP(sport=IP(send.data)[UDP].sport, dport=54))
    _ignored(s, icmp_about(Send(send.probe_id, DST, other), 3, 3, quote=28))


def test_a_later_syn_ack_beats_an_earlier_icmp_but_not_the_reverse():
    s, (send,) = started(BGP)
    s.receive(icmp_about(send, 3, 13, src=ROUTER), Via.TAP, 0.01)
    s.receive(syn_reply(send), Via.TAP, 0.02)
    assert outcome(s, send.probe_id).evidence.reply is ReplyKind.SYN_ACK
    s.receive(icmp_about(send, 3, 13, src=ROUTER), Via.RAW, 0.03)
    ev = outcome(s, send.probe_id).evidence
    assert ev.reply is ReplyKind.SYN_ACK and ev.icmp is None


# ------------------------------------------------------------------ echoes


@pytest.mark.parametrize("plain", [False, True], ids=["encapsulated", "plain-udp-from-an-older-agent"])
@pytest.mark.parametrize("check", [DNS, VXLAN, IPIP], ids=["udp", "vxlan", "ipip"])
def test_echo_is_matched(check, plain):
    s, (send,) = started(check)
    echo = echo_to(send, plain=plain)
    assert parse_packet_untrusted(echo).encap is (Encap.UDP if plain else parse_packet_untrusted(send.data).encap)
    assert s.receive(echo, Via.RAW, 0.003) == send.probe_id
    o = outcome(s, send.probe_id)
    assert (o.evidence.reply, o.evidence.reply_accepted) == (ReplyKind.ECHO, True)
    assert o.rtt_ms == pytest.approx(3.0)


def test_an_echo_in_another_encapsulation_is_not_the_probes():
    """An authenticated IPIP echo does not answer a VXLAN probe of the same id (each probe's echo
    comes back in its own encapsulation, or as plain UDP)."""
    s, (send,) = started(VXLAN)
    ipip = new_prober(KEY, SRC, [ProbeTarget(IPIP, DST, "b")], first_id=send.probe_id).start(0.0, WALL)[0]
    _ignored(s, echo_to(ipip))
    assert outcome(s, send.probe_id).evidence.reply is None


@pytest.mark.parametrize("bad", [
    pytest.param({"key": b"another key"}, id="forged-tag"),
    pytest.param({"probe_id": 424242}, id="unknown-id"),
    pytest.param({"src": parse.ip_bytes("198.18.0.99")}, id="wrong-address"),
    pytest.param({"flags": 0}, id="a-probe-not-an-echo"),
])
def test_echoes_that_are_not_ours_are_ignored(bad):
    s, (send,) = started(DNS)
    _ignored(s, echo_to(send, **bad))
    assert outcome(s, send.probe_id).evidence.reply is None


def test_our_own_probe_seen_again_is_not_an_echo():
    s, (send,) = started(DNS)  # a probe to DST is not a reply from DST
    _ignored(s, send.data, Via.TAP)


# ------------------------------------------------------------------ outcomes


def test_outcome_to_dict():
    s, (send,) = started(BGP, first_id=9)
    s.receive(syn_reply(send), Via.RAW, 0.0012345)
    d = outcome(s, 9).to_dict()
    assert d == {"probe_id": 9, "check": "bgp", "name": "b", "address": DST, "source": SRC, "rtt_ms": 1.234,
                 "evidence": outcome(s, 9).evidence.to_dict()}
    assert d["evidence"]["reply"] == "syn-ack"


# ------------------------------------------------------------------ real captures



def _tcp_probe_id(rec: dict, pkt) -> int:
    """The id of the probe a captured reply answers, from its ack (or quoted seq)."""
    if isinstance(pkt, parse.IcmpPacket):
        q = pkt.quoted
        src, dst, sport, dport, seq = q.src, q.dst, q.sport, q.dport, q.seq
    else:
        src, dst, sport, dport, seq = pkt.dst, pkt.src, pkt.dport, pkt.sport, (pkt.ack - 1) & 0xFFFFFFFF
    # a reply carries the slot and the keyed seq, not the id's high bits: try them all (2^17)
    dkey = dest_key(rec["key"], dst)
    for high in range(1 << 17):
        pid = high << 15 | (sport & 0x7FFF)
        if cookies.tcp_seq(dkey, pid, src, dst, dport) == seq:
            return pid
    raise AssertionError("no probe id gives this sequence number")


@pytest.mark.parametrize("name,check,kind,expected", [
    ("syn_ack", "bgp", ReplyKind.SYN_ACK, (Reach.ALLOWED, None, Verdict.OPEN)),
    ("rst_closed", "typha", ReplyKind.RST, (Reach.UNKNOWN, None, Verdict.CLOSED)),
    ("rst_forged", "etcd", ReplyKind.RST, (Reach.UNKNOWN, None, Verdict.CLOSED)),
    ("icmp_admin_prohibited", "apiserver", ReplyKind.ICMP, (Reach.BLOCKED, Where.DESTINATION_INGRESS, Verdict.REJECTED)),
])
def test_captured_tcp_replies_match_a_prober_that_sent_the_probe(name, check, kind, expected):
    rec = captured(name)
    pid = _tcp_probe_id(rec, parse_packet_untrusted(rec["data"]))
    s = new_prober(rec["key"], rec["sender"], [ProbeTarget(CHECKS[check], rec["target"])], first_id=pid)
    (send,) = s.start(0.0, 0)
    if name == "syn_ack":  # the prober rebuilds the very SYN that was captured
        assert send.data == captured("probe_syn_sent")["data"]
    s.send_done(pid, 0.0)
    assert s.receive(rec["data"], Via.RAW, 0.001) == pid
    ev = outcome(s, pid).evidence
    assert ev.reply is kind
    c = classify(CHECKS[check].proto, ev, rec["target"])
    assert (c.reach, c.where, c.verdict) == expected


@pytest.mark.parametrize("probe,reply,check,code", [
    ("vxlan_probe_arrived", "icmp_port_unreach_vxlan", VXLAN, 3),
    ("ipip_probe_arrived", "icmp_proto_unreach_ipip", IPIP, 2),
    ("udp_probe_arrived", "icmp_port_unreach_udp", Check("udp5000", "u", Proto.UDP, 5000, Direction.BOTH), 3),
])
def test_captured_icmp_about_payload_probes_match(probe, reply, check, code):
    sent, rec = captured(probe), captured(reply)
    pkt = parse_packet_untrusted(sent["data"])
    p = cookies.verify_payload(dest_key(sent["key"], pkt.dst), pkt.payload, pkt.flow())
    s = new_prober(sent["key"], sent["sender"], [ProbeTarget(check, sent["target"])], first_id=p.probe_id,
                     vni=sent["vni"])
    (send,) = s.start(0.0, p.timestamp_ns)
    assert send.data == sent["data"]  # byte for byte what arrived at the target
    s.send_done(p.probe_id, 0.0)
    assert s.receive(rec["data"], Via.RAW, 0.001) == p.probe_id
    assert outcome(s, p.probe_id).evidence.icmp == Icmp(3, code, rec["target"])


@pytest.mark.parametrize("name", ["syn_ack", "rst_closed", "icmp_admin_prohibited", "icmp_port_unreach_udp"])
def test_captured_replies_are_ignored_by_a_prober_with_another_key(name):
    rec = captured(name)
    s = new_prober(KEY, rec["sender"], [ProbeTarget(c, rec["target"], mtu=1500) for c in CHECKS.values()])
    for cmd in s.start(0.0, WALL):
        s.send_done(cmd.probe_id, 0.0)
    assert s.receive(rec["data"], Via.RAW, 0.001) is None
    assert s.stats["ignored"] == 1


@pytest.mark.parametrize("name", ["tcp_data", "kernel_syn_arrived", "probe_syn_sent", "vxlan_probe_arrived"])
def test_captured_unrelated_packets_are_ignored(name):
    rec = captured(name)
    s = new_prober(rec["key"], rec["sender"], [ProbeTarget(c, rec["target"], mtu=1500) for c in CHECKS.values()])
    s.start(0.0, WALL)
    assert s.receive(rec["data"], Via.TAP, 0.001) is None
    assert s.stats["matched"] == 0


def test_running_the_prober_never_loads_scapy():
    """Templates are made before the run (here, in this process) and injected: a fresh
    interpreter that only runs the state machine over them (sends, a reply, retries, outcomes)
    never imports scapy."""
    targets = [ProbeTarget(c, DST, "b") for c in (BGP, DNS, VXLAN, IPIP)]
    made = templates.for_targets(SRC, targets, vni=7)
    code = (
        "import pickle, struct, sys\n"
        "from netprobe.core.events import Via\n"
        "from netprobe.core.prober import Prober\n"
        "key, src, targets, made = pickle.loads(sys.stdin.buffer.read())\n"
        "def syn_ack(syn):  # struct alone\n"
        "    sport, dport, seq = struct.unpack_from('!HHI', syn, 20)\n"
        "    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0, 64, 6, 0, syn[16:20], syn[12:16])\n"
        "    return ip + struct.pack('!HHIIBBHHH', dport, sport, 1, (seq + 1) & 0xFFFFFFFF, 0x50, 0x12, 0, 0, 0)\n"
        "p = Prober(key, src, targets, made, window=1.0, retries=1, first_id=10)\n"
        "sends = p.start(0.0, 1)\n"
        "assert len(sends) == 4 and all(s.data for s in sends)\n"
        "for s in sends: p.send_done(s.probe_id, 0.0)\n"
        "assert p.receive(syn_ack(sends[0].data), Via.RAW, 0.1) == 10\n"
        "assert len(p.tick(1.5, 2)) == 3\n"
        "assert len(p.outcomes()) == 4\n"
        "assert not [m for m in sys.modules if m == 'scapy' or m.startswith('scapy.')], 'scapy loaded'\n"
    )
    blob = pickle.dumps((KEY, SRC, targets, made))
    proc = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()



# ------------------------------------------------------------------ seen leaving (below IP, on the way out)


def leaving_prober(*checks: Check, **kw) -> tuple[Prober, list[Send]]:
    s, sends = started(*checks, **kw)
    s.sees_leaving = True
    return s, sends


def test_without_a_tap_that_sees_leaving_left_is_not_known():
    s, (send,) = started(BGP)
    assert s.leaving(send.data) == send.probe_id  # fed anyway: still no claim without the shell's word
    assert outcome(s, send.probe_id).evidence.left is None


@pytest.mark.parametrize("check", [BGP, DNS, VXLAN, IPIP], ids=["tcp", "udp", "vxlan", "ipip"])
def test_a_probe_seen_leaving_left_and_one_never_seen_did_not(check):
    s, (send,) = leaving_prober(check)
    assert outcome(s, send.probe_id).evidence.left is False
    assert s.unseen() == {DST}
    assert s.leaving(send.data) == send.probe_id
    assert outcome(s, send.probe_id).evidence.left is True and s.unseen() == set()


def test_never_left_is_source_egress_even_for_the_sender_alone():
    s, (send,) = leaving_prober(BGP, retries=0)
    assert s.tick(1.0, WALL) == [] and s.finished
    c = classify(Proto.TCP, outcome(s, send.probe_id).evidence, DST)
    assert (c.reach, c.where, c.verdict) == (Reach.BLOCKED, Where.SOURCE_EGRESS, Verdict.FILTERED)


def test_any_attempt_seen_leaving_counts():
    s, (first,) = leaving_prober(DNS, retries=1)  # the first attempt died below IP
    (second,) = s.tick(1.0, WALL + 10**9)
    s.send_done(second.probe_id, 1.0)
    assert s.leaving(second.data) == first.probe_id
    s.tick(2.0, WALL)
    assert s.finished and outcome(s, first.probe_id).evidence.left is True


def test_a_refused_send_never_says_left():
    s = prober_of(ProbeTarget(BGP, DST), sees_leaving=True)
    (send,) = s.start(0.0, WALL)
    s.send_done(send.probe_id, 0.0, errno.EPERM)
    assert outcome(s, send.probe_id).evidence.left is None and s.unseen() == set()


@pytest.mark.parametrize("check", [BGP, DNS], ids=["tcp", "udp"])
def test_a_probe_leaving_is_known_after_a_source_nat(check):
    """A masquerade on the way out rewrites the source address and port; the TSval with the keyed
    sequence number, or the payload, still name the probe."""
    s, (send,) = leaving_prober(check)
    nat = IP(send.data)
    nat.src, nat.sport = "203.0.113.7", 61000
    del nat.chksum, nat.payload.chksum
    assert s.leaving(bytes(nat)) == send.probe_id


@pytest.mark.parametrize("check", [DNS, VXLAN, IPIP], ids=["udp", "vxlan", "ipip"])
def test_a_payload_probe_leaving_is_known_by_its_payload_where_it_sits(check):
    """Found at its place in the encapsulation, not at the end: a probe padded to a size (a path
    MTU probe) is known too."""
    s, (send,) = leaving_prober(check)
    assert s.leaving(send.data + bytes(200)) == send.probe_id


@pytest.mark.parametrize("data", [
    pytest.param(lambda send: send.data[:30], id="truncated"),
    pytest.param(lambda send: bytes(IP(src=SRC, dst=DST) / TCP(sport=40000, dport=179, flags="S", seq=IP(send.data).seq)),
                 id="our-seq-without-our-tsval"),
    pytest.param(lambda send: send.data[:24] + bytes([send.data[24] ^ 1]) + send.data[25:], id="our-tsval-another-seq"),
    pytest.param(lambda send: b"\x46" + send.data[1:], id="ip-options"),
    pytest.param(lambda send: b"", id="empty"),
])
def test_packets_leaving_that_are_not_our_probes_are_ignored(data):
    s, (send,) = leaving_prober(BGP)
    assert s.leaving(data(send)) is None and s.stats["ignored"] == 1
    assert outcome(s, send.probe_id).evidence.left is False


def test_another_probers_probes_leaving_are_not_ours():
    s, _ = leaving_prober(BGP, DNS, first_id=1000)
    for other in new_prober(b"another key", SRC, [ProbeTarget(BGP, DST), ProbeTarget(DNS, DST)],
                            first_id=1000).start(0.0, WALL):
        assert s.leaving(other.data) is None
    assert [o.evidence.left for o in s.outcomes()] == [False, False]


def test_an_unresolved_next_hop_makes_left_unknown_not_false():
    """A probe held in the neighbour queue (ARP never answered) never reaches the device: not
    seen leaving, yet no filter dropped it."""
    s = prober_of(ProbeTarget(BGP, DST), ProbeTarget(BGP, DST2), ProbeTarget(ETCD, DST2), sees_leaving=True)
    sends = s.start(0.0, WALL)
    for cmd in sends:
        s.send_done(cmd.probe_id, 0.0)
    s.leaving(sends[2].data)
    assert s.unseen() == {DST, DST2}
    s.unresolved({DST2})
    assert [o.evidence.left for o in s.outcomes()] == [False, None, True]
    c = classify(Proto.TCP, s.outcomes()[1].evidence, DST2)
    assert (c.reach, c.where) == (Reach.UNKNOWN, None)
