"""ResponderCore, the responder as a state machine: real probes (built by Prober) in,
observations and echoes out. Replies leaving the responder are built with scapy from the probe."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP

from netprobe.core import cookies, parse, templates
from netprobe.core.checks import CHECKS, Check, Direction, Proto
from netprobe.core.cookies import FLAG_ECHO, ProbeKeys, ProbePayload, dest_key, encode_payload, verify_payload
from netprobe.core.parse import Encap, PayloadPacket, parse_packet_untrusted
from netprobe.core.echoes import echo_allowed
from netprobe.core.responder import Echo, ResponderCore
from netprobe.core.keys import probe_key
from netprobe.core.events import ProbeTarget, Send, Via
from netprobe.core.prober import Prober

KEY = probe_key("responder-unit-token")
OTHER_KEY = probe_key("some-other-cluster")
SRC, DST, SRC2 = "198.18.0.1", "198.18.0.2", "198.18.0.3"
WALL = 1_700_000_000_000_000_000
SEC = 10**9
DNS = Check("dns", "cluster DNS", Proto.UDP, 53, Direction.BOTH)
BGP, VXLAN, IPIP = CHECKS["bgp"], CHECKS["vxlan"], CHECKS["ipip"]
PAYLOAD_CHECKS = {"udp": DNS, "vxlan": VXLAN, "ipip": IPIP}

def new_prober(key: bytes, source: str, targets, *, vni: int = 1, **kw) -> Prober:
    """A Prober with the templates its shell would make before the run."""
    targets = list(targets)
    return Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), **kw)


def probe(check: Check, *, key: bytes = KEY, source: str = SRC, address: str = DST, probe_id: int = 4242,
          wall_ns: int = WALL) -> Send:
    """The bytes a real prober sends for one check."""
    prober = new_prober(key, source, [ProbeTarget(check, address)], first_id=probe_id)
    (send,) = prober.start(0.0, wall_ns)
    return send


def core(**kw) -> ResponderCore:
    return ResponderCore(KEY, **kw)


def feed(c: ResponderCore, data: bytes, via: Via = Via.RAW, *, outgoing: bool = False, now: float = 1.0,
         wall_ns: int = WALL) -> Echo | None:
    return c.on_packet(data, via=via, outgoing=outgoing, now=now, wall_ns=wall_ns)


def only(c: ResponderCore) -> dict:
    obs = c.observations()
    assert len(obs) == 1, obs
    return obs[0]


def tcp_answer(send: Send, flags: str) -> bytes:
    """What the probed host sends back to a SYN: ack = the SYN's seq + 1."""
    syn = IP(send.data)
    return bytes(IP(src=syn.dst, dst=syn.src) / TCP(sport=syn[TCP].dport, dport=syn[TCP].sport, flags=flags,
                                                    seq=999, ack=(syn[TCP].seq + 1) & 0xFFFFFFFF))


def icmp_error(send: Send, type_: int = 3, code: int = 13) -> bytes:
    """An ICMP error the probed host sends about the probe (quoting all of it)."""
    return bytes(IP(src=IP(send.data).dst, dst=IP(send.data).src) / ICMP(type=type_, code=code) / send.data)


# ------------------------------------------------------------------ TCP


def test_syn_on_the_tap_arrived_only():
    c, send = core(), probe(BGP)
    assert feed(c, send.data, Via.TAP, now=5.0) is None
    assert only(c) == {"src": SRC, "probe_id": 4242, "proto": "tcp", "arrived": True, "reached_ip": False,
                       "accepted": False, "answered": False, "t": 5.0}


def test_syn_on_the_raw_socket_accepted_only():
    c, send = core(), probe(BGP)
    assert feed(c, send.data, Via.RAW) is None  # TCP is answered by the kernel, never echoed
    obs = only(c)
    assert (obs["arrived"], obs["accepted"], obs["proto"]) == (False, True, "tcp")
    assert obs["reached_ip"]  # INPUT comes after the netdev/tc ingress hooks


@pytest.mark.parametrize("check", [BGP, DNS, VXLAN, IPIP], ids=["tcp", "udp", "vxlan", "ipip"])
def test_the_ip_tap_says_the_probe_got_past_netdev_and_tc_ingress(check):
    c, send = core(), probe(check)
    feed(c, send.data, Via.TAP)
    assert (only(c)["arrived"], only(c)["reached_ip"]) == (True, False)  # so far: a drop below IP
    assert feed(c, send.data, Via.IP) is None  # never echoed: INPUT has not accepted it yet
    assert (only(c)["reached_ip"], only(c)["accepted"]) == (True, False)
    assert c.stats["echoes"] == 0


@pytest.mark.parametrize("check", [BGP, DNS, VXLAN, IPIP], ids=["tcp", "udp", "vxlan", "ipip"])
@pytest.mark.parametrize("order", [(Via.TAP, Via.IP, Via.RAW), (Via.RAW, Via.IP, Via.TAP), (Via.IP, Via.RAW, Via.TAP)],
                         ids=["in-kernel-order", "raw-first", "ip-tap-first"])
def test_each_probe_is_authenticated_once_whatever_copy_comes_first(check, order, monkeypatch):
    """Three captures see each probe; only the first copy read costs a MAC, the others are
    known by their bytes -- and the raw socket's copy is still the one echoed."""
    macs = []
    for name in ("verify_payload", "tcp_syn_probe_id"):
        real = getattr(cookies, name)
        monkeypatch.setattr(cookies, name, lambda *a, _real=real, _name=name: macs.append(_name) or _real(*a))
    c, send = core(), probe(check)
    echoes = [feed(c, send.data, via) for via in order]
    assert len(macs) == 1
    assert {k: only(c)[k] for k in ("arrived", "reached_ip", "accepted")} == dict.fromkeys(
        ("arrived", "reached_ip", "accepted"), True)
    assert [e is not None for e in echoes] == [via is Via.RAW and check is not BGP for via in order]


def test_a_copy_is_known_only_byte_for_byte():
    c, send = core(), probe(DNS)
    feed(c, send.data, Via.TAP)
    tampered = bytearray(send.data)
    tampered[-1] ^= 1
    assert feed(c, bytes(tampered), Via.RAW) is None
    assert c.stats["unauthenticated"] == 1 and not only(c)["accepted"]


def test_copies_remembered_are_bounded():
    c = core(max_copies=2)
    sends = [probe(DNS, probe_id=i) for i in range(3)]
    for send in sends:
        feed(c, send.data, Via.TAP)
    assert len(c._copies) == 2 and sends[0].data not in c._copies
    feed(c, sends[0].data, Via.RAW)  # forgotten: authenticated again, still recorded and echoed
    assert c.stats["echoes"] == 1


def test_one_observation_per_source_and_probe_id():
    c = core()
    first = probe(BGP, probe_id=7)
    feed(c, first.data, Via.TAP, now=1.0)
    feed(c, first.data, Via.RAW, now=1.5)
    feed(c, probe(BGP, probe_id=8).data, Via.TAP, now=2.0)
    feed(c, probe(BGP, source=SRC2, probe_id=7).data, Via.TAP, now=3.0)  # same id, another prober
    obs = {(o["src"], o["probe_id"]): o for o in c.observations()}
    assert set(obs) == {(SRC, 7), (SRC, 8), (SRC2, 7)}
    assert obs[(SRC, 7)]["arrived"] and obs[(SRC, 7)]["accepted"]
    assert obs[(SRC, 7)]["t"] == 1.0  # first seen, not last
    assert not obs[(SRC, 8)]["accepted"] and not obs[(SRC2, 7)]["accepted"]
    assert c.stats["probes"] == 3


@pytest.mark.parametrize("flags", ["SA", "R", "RA"])
def test_outgoing_syn_ack_or_rst_marks_answered(flags):
    c, send = core(), probe(BGP)
    feed(c, send.data, Via.TAP)
    assert not only(c)["answered"]
    feed(c, tcp_answer(send, flags), Via.TAP, outgoing=True)
    assert only(c)["answered"]


def test_incoming_syn_ack_does_not_mark_answered():
    c, send = core(), probe(BGP)
    feed(c, send.data, Via.TAP)
    feed(c, tcp_answer(send, "SA"), Via.TAP, outgoing=False)
    assert not only(c)["answered"]


def test_outgoing_syn_ack_with_a_wrong_ack_does_not_mark_answered():
    c, send = core(), probe(BGP)
    feed(c, send.data, Via.TAP)
    syn = IP(send.data)
    wrong = bytes(IP(src=DST, dst=SRC) / TCP(sport=179, dport=syn[TCP].sport, flags="SA", ack=syn[TCP].seq + 2))
    feed(c, wrong, Via.TAP, outgoing=True)
    assert not only(c)["answered"]


def test_outgoing_syn_is_not_a_probe_to_this_host():
    c = core()
    feed(c, probe(BGP, source=DST, address=SRC).data, Via.TAP, outgoing=True)
    assert c.observations() == [] and c.stats["probes"] == 0


def test_syn_made_with_another_key_is_unauthenticated_and_not_recorded():
    c = core()
    feed(c, probe(BGP, key=OTHER_KEY).data, Via.TAP)
    feed(c, probe(BGP, key=OTHER_KEY, probe_id=99).data, Via.RAW)
    assert c.observations() == []
    assert c.stats["unauthenticated"] == 2 and c.stats["probes"] == 0


def test_syn_from_an_ordinary_client_port_is_not_recorded():
    c = core()
    feed(c, bytes(IP(src=SRC, dst=DST) / TCP(sport=40000, dport=179, flags="S", seq=123)), Via.TAP)
    feed(c, bytes(IP(src=SRC, dst=DST) / TCP(sport=1234, dport=179, flags="S", seq=123)), Via.TAP)
    assert c.observations() == []


# ------------------------------------------------------------------ ICMP answers


@pytest.mark.parametrize("check", [BGP, DNS, IPIP], ids=["tcp", "udp", "ipip"])
def test_outgoing_icmp_error_quoting_the_probe_marks_answered(check):
    c, send = core(), probe(check)
    feed(c, send.data, Via.TAP)
    assert not only(c)["answered"]
    feed(c, icmp_error(send), Via.TAP, outgoing=True)
    assert only(c)["answered"]


@pytest.mark.parametrize("answer", [
    pytest.param(lambda send: tcp_answer(send, "SA"), id="syn-ack"),
    pytest.param(lambda send: tcp_answer(send, "R"), id="rst"),
    pytest.param(lambda send: icmp_error(send), id="icmp-about-a-syn"),
])
@pytest.mark.parametrize("via", [Via.TAP, Via.IP, Via.RAW])
def test_an_answer_read_before_its_probe_still_marks_answered(answer, via):
    """Answers leaving and probes arriving come on different sockets: the answer's may be read first."""
    c, send = core(), probe(BGP)
    feed(c, answer(send), Via.TAP, outgoing=True)
    assert c.observations() == []
    feed(c, send.data, via)
    assert only(c)["answered"]


@pytest.mark.parametrize("check", [DNS, VXLAN, IPIP], ids=["udp", "vxlan", "ipip"])
def test_an_icmp_error_read_before_its_payload_probe_still_marks_answered(check):
    c, send = core(), probe(check)
    feed(c, icmp_error(send), Via.TAP, outgoing=True)
    feed(c, send.data, Via.TAP)
    assert only(c)["answered"]


def test_an_early_answer_names_exactly_its_probe_and_is_forgotten_in_bounds():
    c, send = core(max_copies=2), probe(BGP, probe_id=1)
    feed(c, tcp_answer(probe(BGP, probe_id=2), "SA"), Via.TAP, outgoing=True)  # another probe's
    feed(c, icmp_error(probe(DNS, source=SRC2)), Via.TAP, outgoing=True)          # about another prober's
    feed(c, send.data, Via.TAP)
    assert not only(c)["answered"]
    for i in range(3, 6):
        feed(c, tcp_answer(probe(BGP, probe_id=i), "SA"), Via.TAP, outgoing=True)
    assert len(c._early) == 2


def test_outgoing_icmp_error_quoting_a_vxlan_probe_marks_answered():
    c, send = core(), probe(VXLAN)
    feed(c, send.data, Via.TAP)
    feed(c, icmp_error(send, code=3), Via.TAP, outgoing=True)
    assert only(c)["answered"]


def test_incoming_icmp_error_does_not_mark_answered():
    c, send = core(), probe(BGP)
    feed(c, send.data, Via.TAP)
    feed(c, icmp_error(send), Via.TAP, outgoing=False)
    assert not only(c)["answered"]


def test_icmp_error_quoting_a_probe_of_another_key_marks_nothing():
    c, send = core(), probe(DNS)
    feed(c, send.data, Via.TAP)
    forged = probe(DNS, key=OTHER_KEY)
    feed(c, icmp_error(forged), Via.TAP, outgoing=True)
    assert not only(c)["answered"]


# ------------------------------------------------------------------ payload probes


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_payload_probe_recorded_with_its_proto(proto):
    c, send = core(), probe(PAYLOAD_CHECKS[proto], probe_id=31337)
    assert feed(c, send.data, Via.TAP, now=2.0) is None  # the tap alone never echoes
    assert only(c) == {"src": SRC, "probe_id": 31337, "proto": proto, "arrived": True, "reached_ip": False,
                       "accepted": False, "answered": False, "t": 2.0}
    feed(c, send.data, Via.RAW, now=2.5)
    assert only(c)["accepted"] and only(c)["arrived"]


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_echo_only_for_raw_not_tap(proto):
    send = probe(PAYLOAD_CHECKS[proto])
    tap = core()
    assert feed(tap, send.data, Via.TAP) is None
    assert tap.stats["echoes"] == 0
    raw = core()
    assert isinstance(feed(raw, send.data, Via.RAW), Echo)
    assert raw.stats["echoes"] == 1


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_echo_parses_back_in_the_probes_encapsulation_and_verifies(proto):
    send = probe(PAYLOAD_CHECKS[proto], probe_id=0x12345)
    arrived = parse_packet_untrusted(send.data)
    echo = feed(core(), send.data, Via.RAW, wall_ns=WALL + 2 * SEC)
    assert echo is not None
    assert echo.address == SRC
    assert len(echo.data) <= len(send.data)  # never amplify

    back = parse_packet_untrusted(echo.data)
    assert isinstance(back, PayloadPacket) and back.encap is arrived.encap
    assert (parse.ip_str(back.src), parse.ip_str(back.dst)) == (DST, SRC)
    if proto == "udp":  # from the probed port back to the prober's slot
        assert (back.sport, back.dport) == (arrived.dport, arrived.sport)
    else:  # the inner packet from this host to the prober too
        assert (back.inner_src, back.inner_dst) == (back.src, back.dst)
    if proto == "vxlan":  # to the VXLAN port it was probed on, from the prober's slot, same VNI
        assert (back.outer_sport, back.outer_dport, back.vni) == (cookies.slot_of(0x12345), 4789, arrived.vni)

    body = verify_payload(dest_key(KEY, back.dst), back.payload, back.flow())
    assert body.probe_id == 0x12345
    assert body.timestamp_ns == WALL  # the probe's own timestamp, not the responder's clock
    assert body.flags & FLAG_ECHO and body.is_echo
    with pytest.raises(Exception):
        verify_payload(dest_key(OTHER_KEY, back.dst), back.payload, back.flow())
    with pytest.raises(Exception):  # keyed for the prober's address, not the responder's
        verify_payload(dest_key(KEY, back.src), back.payload, back.flow())


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_the_prober_accepts_the_echo(proto):
    prober = new_prober(KEY, SRC, [ProbeTarget(PAYLOAD_CHECKS[proto], DST)], first_id=500)
    (send,) = prober.start(0.0, WALL)
    prober.send_done(send.probe_id, 0.0)
    echo = feed(core(), send.data, Via.RAW)
    assert prober.receive(echo.data, Via.RAW, 0.01) == 500


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_wrong_key_payload_gets_no_echo_and_no_record(proto):
    c = core()
    send = probe(PAYLOAD_CHECKS[proto], key=OTHER_KEY)
    assert feed(c, send.data, Via.RAW) is None
    assert c.stats["unauthenticated"] == 1 and c.stats["echoes"] == 0
    assert c.observations() == []


def test_tampered_payload_gets_no_echo():
    c = core()
    data = bytearray(probe(DNS).data)
    data[-1] ^= 0x01  # last byte of the HMAC tag
    assert feed(c, bytes(data), Via.RAW) is None
    assert c.stats["unauthenticated"] == 1 and c.observations() == []


@pytest.mark.parametrize("skew", [-31 * SEC, 31 * SEC, -3600 * SEC])
def test_stale_probe_recorded_but_not_echoed(skew):
    c = core()
    send = probe(DNS, wall_ns=WALL + skew)
    assert feed(c, send.data, Via.RAW, wall_ns=WALL) is None
    assert c.stats["stale"] == 1 and c.stats["echoes"] == 0
    assert only(c)["accepted"]  # it did get in; it just won't be answered


def test_freshness_window_is_configurable():
    send = probe(DNS, wall_ns=WALL - 5 * SEC)
    assert feed(core(freshness_ns=10 * SEC), send.data, wall_ns=WALL) is not None
    strict = core(freshness_ns=1 * SEC)
    assert feed(strict, send.data, wall_ns=WALL) is None
    assert strict.stats["stale"] == 1


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_the_same_probe_twice_is_echoed_once(proto):
    c, send = core(), probe(PAYLOAD_CHECKS[proto])
    assert feed(c, send.data, Via.RAW, now=1.0) is not None
    assert feed(c, send.data, Via.RAW, now=1.1) is None
    assert c.stats["replayed"] == 1 and c.stats["echoes"] == 1


def test_each_probe_id_is_echoed_once_per_source():
    """Even a freshly signed copy (a retry with a new timestamp) of an answered probe id gets no
    second echo: one probe id, one echo per source (issue #9, item 1)."""
    c = core()
    assert feed(c, probe(DNS, wall_ns=WALL).data, now=1.0) is not None
    assert feed(c, probe(DNS, wall_ns=WALL + SEC).data, now=2.0, wall_ns=WALL + SEC) is None
    assert c.stats["replayed"] == 1 and c.stats["echoes"] == 1
    assert len(c.observations()) == 1  # still one probe
    # another source may use the same id; and after twice the freshness window it is forgotten
    assert feed(c, probe(DNS, source=SRC2).data, now=3.0) is not None
    assert feed(c, probe(DNS, wall_ns=WALL + 70 * SEC).data, now=72.0, wall_ns=WALL + 70 * SEC) is None  # (src2 evicts)
    assert feed(c, probe(DNS, probe_id=1, wall_ns=WALL + 70 * SEC).data, now=72.0, wall_ns=WALL + 70 * SEC)


def rewritten(data: bytes, **fields) -> bytes:
    """A captured probe with header fields rewritten (``src``, ``dst``, ``inner_src``,
    ``inner_dst``, ``sport``, ``dport``, ``inner_sport``, ``inner_dport``), checksums redone: what
    an on-path attacker can replay."""
    pkt = IP(data)
    outer, inner = pkt[IP], pkt.getlayer(IP, 2)
    for name, value in fields.items():
        layer = inner if name.startswith("inner_") else outer
        name = name.removeprefix("inner_")
        if name in ("sport", "dport"):
            layer = layer.getlayer(UDP)
        setattr(layer, name, value)
    for layer in (IP, UDP):
        for nth in (1, 2):
            got = pkt.getlayer(layer, nth)
            if got is not None and got.chksum:
                del got.chksum
    return bytes(pkt)


REFLECTED = "192.0.2.66"  # a victim's address (documentation range; these bytes never leave the test)


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
@pytest.mark.parametrize("field,value", [("src", REFLECTED), ("src", SRC2), ("dst", "198.18.0.9"),
                                         ("sport", 40001), ("dport", 54)])
def test_replay_with_a_rewritten_outer_header_is_not_authenticated(proto, field, value):
    """Issue #9, item 1: one captured probe re-sent with 1,000 spoofed sources got 997 echoes.
    The tag covers the whole flow now, so a rewritten copy is not a probe at all."""
    c, send = core(), probe(PAYLOAD_CHECKS[proto])
    assert feed(c, rewritten(send.data, **{field: value}), now=1.0) is None
    # (VXLAN to another port than 4789 is not even parsed as VXLAN)
    assert c.stats["unauthenticated"] + c.stats["malformed"] == 1
    assert c.stats["echoes"] == 0 and c.observations() == []
    assert feed(c, send.data, now=1.1).address == SRC  # the genuine probe is still answered once


@pytest.mark.parametrize("field,value", [("inner_src", REFLECTED), ("inner_dst", REFLECTED),
                                         ("inner_sport", 53), ("inner_dport", 53)])
@pytest.mark.parametrize("proto", ["vxlan", "ipip"])
def test_replay_with_a_rewritten_inner_packet_is_not_authenticated(proto, field, value):
    """Issue #9, item 1: an IPIP probe with its inner addresses and port rewritten made the
    responder emit packets from 192.0.2.66:41550 to X:53."""
    c, send = core(), probe(PAYLOAD_CHECKS[proto])
    assert feed(c, rewritten(send.data, **{field: value})) is None
    assert c.stats["unauthenticated"] == 1 and c.stats["echoes"] == 0


def test_a_probe_made_for_another_host_is_not_authenticated():
    """The same probe sent to a second responder with the same token: its tag is keyed for the
    first host's address (and covers it)."""
    send = probe(DNS, address=DST)
    other_host = core()
    assert feed(other_host, rewritten(send.data, dst=SRC2)) is None
    assert other_host.stats["unauthenticated"] == 1


def _signed(encap, src, dst, sport, dport, inner_src=b"", inner_dst=b"", outer_sport=0, outer_dport=0,
            probe_id=7):
    """What a token holder can make: any flow, correctly signed for ``dst``."""
    pkt = PayloadPacket(encap, src, dst, sport, dport, b"", 0, inner_src, inner_dst, outer_sport, outer_dport)
    keys = ProbeKeys(KEY)
    return pkt, encode_payload(keys.for_dest(dst), ProbePayload(probe_id, WALL, 0, keys.marker), pkt.flow())


def test_echoes_go_only_from_the_probed_address_to_the_outer_source_and_to_a_slot():
    """... or, for VXLAN, from the probe's slot to the unprivileged VXLAN port it was sent to."""
    a, b, victim = parse.ip_bytes(SRC), parse.ip_bytes(DST), parse.ip_bytes(REFLECTED)
    allowed = [
        (Encap.UDP, a, b, 40000, 53),
        (Encap.VXLAN, a, b, 40000, 40000, b, a, 40000, 4789),
        (Encap.VXLAN, a, b, 40000, 40000, b, a, 40000, 8472),
        (Encap.IPIP, a, b, 40000, 40000, b, a),
    ]
    refused = [
        (Encap.UDP, a, b, 53, 53),                                  # to a service port, not a slot
        (Encap.IPIP, a, b, 40000, 40000, victim, a),                # inner source not this host
        (Encap.IPIP, a, b, 40000, 40000, b, victim),                # inner destination not the sender
        (Encap.IPIP, a, b, 53, 40000, b, a),                        # the echo would go to port 53
        (Encap.VXLAN, a, b, 40000, 40000, b, victim, 40000, 4789),
        (Encap.VXLAN, a, b, 40000, 40000, b, a, 53, 4789),          # from port 53, not a slot
        (Encap.VXLAN, a, b, 40000, 40000, b, a, 40000, 53),         # to a privileged port
        (Encap.UDP, parse.ip_bytes("255.255.255.255"), b, 40000, 53),
        (Encap.UDP, a, parse.ip_bytes("224.0.0.1"), 40000, 53),
        (Encap.UDP, parse.ip_bytes("127.0.0.1"), b, 40000, 53),
        (Encap.UDP, parse.ip_bytes("0.0.0.0"), b, 40000, 53),
        (Encap.UDP, b, b, 40000, 53),
    ]
    for fields in allowed:
        assert echo_allowed(_signed(*fields)[0]), fields
    for fields in refused:
        assert not echo_allowed(_signed(*fields)[0]), fields


def test_a_token_holders_ipip_probe_with_a_foreign_inner_address_is_refused():
    """Even correctly signed, a probe whose echo would carry an address that is neither this
    host's nor the sender's gets no echo."""
    templ = templates.IpipProbeTemplate(SRC, DST)
    pkt, body = _signed(Encap.IPIP, parse.ip_bytes(SRC), parse.ip_bytes(DST), 40000, 40000,
                        parse.ip_bytes(REFLECTED), parse.ip_bytes(SRC))
    forged = rewritten(templ.build(40000, body), inner_src=REFLECTED)
    assert parse_packet_untrusted(forged).flow() == pkt.flow()
    c = core()
    assert feed(c, forged) is None
    assert c.stats["refused"] == 1 and c.stats["unauthenticated"] == 0 and c.stats["echoes"] == 0


def test_packets_beyond_a_sources_admission_rate_get_no_mac_computed():
    """What passes the kernel filter is rate-limited per source before any MAC (issue #9, item 7)."""
    c = core(admit_rate=0.0, admit_burst=3.0)
    for i in range(5):
        feed(c, probe(DNS, probe_id=i).data, Via.TAP)
    assert c.stats["throttled"] == 2 and c.stats["probes"] == 3
    feed(c, probe(DNS, source=SRC2).data, Via.TAP)  # another source has its own allowance
    assert c.stats["probes"] == 4


def test_echoes_are_rate_limited_per_source_and_refill_with_time():
    c = core(echo_rate=2.0, echo_burst=3.0)
    sends = [probe(DNS, probe_id=i) for i in range(10)]
    got = [feed(c, s.data, now=10.0) for s in sends[:4]]
    assert [e is not None for e in got] == [True, True, True, False]
    assert c.stats["rate_limited"] == 1 and c.stats["echoes"] == 3

    other = probe(DNS, source=SRC2, probe_id=1)  # another source has its own bucket
    assert feed(c, other.data, now=10.0) is not None

    assert feed(c, sends[4].data, now=10.25) is None  # half a token
    assert feed(c, sends[5].data, now=10.5) is not None  # one token refilled (2/s)
    assert feed(c, sends[6].data, now=10.5) is None
    assert feed(c, sends[7].data, now=100.0) is not None  # refilled, but never above the burst
    assert feed(c, sends[8].data, now=100.0) is not None
    assert feed(c, sends[9].data, now=100.0) is not None
    assert feed(c, probe(DNS, probe_id=10).data, now=100.0) is None
    assert c.stats["rate_limited"] == 4


def test_rate_limited_probes_are_still_recorded():
    c = core(echo_burst=1.0, echo_rate=0.0)
    feed(c, probe(DNS, probe_id=1).data)
    assert feed(c, probe(DNS, probe_id=2).data) is None
    assert {o["probe_id"] for o in c.observations()} == {1, 2}


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_incoming_echo_is_neither_recorded_nor_echoed(proto):
    """This host's own prober gets echoes back from its peers: they are not probes."""
    peer = core()
    send = probe(PAYLOAD_CHECKS[proto], source=DST, address=SRC)  # this host (DST) probed SRC
    echo = feed(peer, send.data)
    c = core()
    assert feed(c, echo.data, Via.RAW) is None
    assert feed(c, echo.data, Via.TAP) is None
    assert c.observations() == [] and c.stats["echoes"] == 0 and c.stats["probes"] == 0


def test_forged_echo_flag_payload_is_not_echoed():
    c = core()
    probe_pkt = parse_packet_untrusted(probe(DNS).data)
    keys = ProbeKeys(KEY)
    body = encode_payload(keys.for_dest(probe_pkt.dst), ProbePayload(1, WALL, FLAG_ECHO, keys.marker), probe_pkt.flow())
    data = bytes(IP(src=SRC, dst=DST) / UDP(sport=probe_pkt.sport, dport=probe_pkt.dport) / body)
    assert feed(c, data) is None and c.stats["echoes"] == 0
    assert c.observations() == []


@pytest.mark.parametrize("proto", ["udp", "vxlan", "ipip"])
def test_outgoing_echo_marks_answered(proto):
    c, send = core(), probe(PAYLOAD_CHECKS[proto])
    feed(c, send.data, Via.TAP)
    echo = feed(c, send.data, Via.RAW)
    assert not only(c)["answered"]
    feed(c, echo.data, Via.TAP, outgoing=True)
    assert only(c)["answered"]
    assert c.stats["echoes"] == 1  # seeing its own echo leave answers nothing


def test_outgoing_probe_of_this_hosts_prober_is_ignored():
    c = core()
    assert feed(c, probe(DNS, source=DST, address=SRC).data, Via.TAP, outgoing=True) is None
    assert c.observations() == [] and c.stats["unauthenticated"] == 0


def test_echo_never_larger_than_what_arrived():
    for check in PAYLOAD_CHECKS.values():
        send = probe(check)
        echo = feed(core(), send.data)
        assert 0 < len(echo.data) <= len(send.data)


# ------------------------------------------------------------------ robustness and bounds


@pytest.mark.parametrize("data", [
    b"",
    b"\x45",
    b"\x60" + b"\0" * 39,  # IPv6
    b"\x45\x00\x00\x14" + b"\0" * 16,  # IPv4 with nothing inside (protocol 0)
    bytes(IP(src=SRC, dst=DST) / UDP(sport=1, dport=53) / b"hello"),  # not ours
    bytes(IP(src=SRC, dst=DST) / ICMP(type=8)),  # an echo request
])
def test_malformed_or_foreign_bytes_are_counted_never_raised(data):
    c = core()
    assert feed(c, data) is None
    assert c.stats["malformed"] == 1 and c.observations() == []


@pytest.mark.parametrize("check", [BGP, DNS, VXLAN, IPIP], ids=["tcp", "udp", "vxlan", "ipip"])
def test_truncated_probes_are_counted_never_raised(check):
    data = probe(check).data
    c = core()
    for n in range(len(data)):
        assert feed(c, data[:n], via=Via.RAW) is None
    assert c.stats["echoes"] == 0


MUTATION_BASE = {"tcp": probe(BGP).data, "udp": probe(DNS).data, "vxlan": probe(VXLAN).data,
                 "ipip": probe(IPIP).data}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["tcp", "udp", "vxlan", "ipip"]), flips=st.lists(
    st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    via=st.sampled_from(list(Via)), outgoing=st.booleans())
def test_mutated_probes_never_raise(kind, flips, via, outgoing):
    data = bytearray(MUTATION_BASE[kind])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    c = core()
    echo = feed(c, bytes(data), via, outgoing=outgoing)
    if echo is not None:
        assert len(echo.data) <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data):
    c = core()
    assert feed(c, data) is None  # nothing random carries a valid tag
    assert c.stats["echoes"] == 0


def test_log_is_bounded_oldest_evicted():
    c = core(max_observations=3)
    for i in range(5):
        feed(c, probe(BGP, probe_id=100 + i).data, Via.TAP, now=float(i))
    assert [o["probe_id"] for o in c.observations()] == [102, 103, 104]
    assert c.stats["evicted"] == 2 and c.stats["probes"] == 5


def test_evicted_probe_answer_is_ignored():
    c = core(max_observations=1)
    first = probe(BGP, probe_id=1)
    feed(c, first.data, Via.TAP)
    feed(c, probe(BGP, probe_id=2).data, Via.TAP)
    feed(c, tcp_answer(first, "SA"), Via.TAP, outgoing=True)
    assert only(c)["probe_id"] == 2 and not only(c)["answered"]


def test_observations_since_filters_by_first_seen():
    c = core()
    for i, t in enumerate([1.0, 2.0, 3.0]):
        feed(c, probe(BGP, probe_id=i).data, Via.TAP, now=t)
    feed(c, probe(BGP, probe_id=0).data, Via.RAW, now=10.0)  # seen again later: still first seen at 1.0
    assert [o["probe_id"] for o in c.observations(since=2.0)] == [1, 2]
    assert [o["probe_id"] for o in c.observations(since=3.5)] == []
    assert len(c.observations()) == 3
    assert [o["t"] for o in c.observations(since=0)] == [1.0, 2.0, 3.0]


def test_syns_with_the_marker_but_a_guessed_seq_make_no_observation():
    """Issue #9, item 7: the SYN check was 15 bits (327,680 forged SYNs made 10 observations). A
    SYN now needs the 32-bit keyed sequence number of its flow and id: 20,000 guesses with a right
    marker, slot and id make none."""
    import random

    rng = random.Random(7)
    c = core(admit_rate=1e9, admit_burst=1e9)
    tpl = templates.TcpSynTemplate(SRC, DST, 179)
    for _ in range(20_000):
        pid = rng.getrandbits(32)
        slot = cookies.slot_of(pid)
        feed(c, tpl.build(slot, rng.getrandbits(32), cookies.syn_ip_id(c.marker, slot), pid), Via.TAP)
    assert c.observations() == [] and c.stats["unauthenticated"] == 20_000


def test_no_echo_from_an_address_that_is_not_this_hosts_own():
    """A raw socket also gets packets sent to a broadcast address: the shell says which addresses
    are this host's own unicast ones, and an echo leaves only from one of those."""
    asked = []
    c = core(is_own_address=lambda addr: asked.append(addr) or addr == parse.ip_bytes(DST))
    assert feed(c, probe(DNS, address=DST).data) is not None
    assert feed(c, probe(DNS, address="198.18.0.255", probe_id=2).data) is None
    assert c.stats["refused"] == 1 and c.stats["echoes"] == 1
    assert asked == [parse.ip_bytes(DST), parse.ip_bytes("198.18.0.255")]
