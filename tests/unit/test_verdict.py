"""verdict.classify: one row per rule of docs/design.md, "Evidence and verdicts", with the
responder's evidence and from the sender alone."""

from __future__ import annotations

import pytest

from netprobe.core.checks import Proto
from netprobe.core.result import Evidence, Icmp, Reach, ReplyKind, Verdict, Where
from netprobe.core.verdict import Classification, classify, sender_verdict

DST = "198.18.0.2"
ROUTER = "198.18.9.1"

ALLOWED, BLOCKED, UNKNOWN = Reach.ALLOWED, Reach.BLOCKED, Reach.UNKNOWN
EGRESS, NETWORK, INGRESS, RETURN = Where.SOURCE_EGRESS, Where.NETWORK, Where.DESTINATION_INGRESS, Where.RETURN_PATH
OPEN, CLOSED, FILTERED, REJECTED, ANSWERED = Verdict.OPEN, Verdict.CLOSED, Verdict.FILTERED, Verdict.REJECTED, Verdict.ANSWERED
TCP, UDP, IPIP, VXLAN = Proto.TCP, Proto.UDP, Proto.IPIP, Proto.VXLAN

SYN_ACK, RST, ICMP, ECHO = ReplyKind.SYN_ACK, ReplyKind.RST, ReplyKind.ICMP, ReplyKind.ECHO


def icmp(type_, code, sender=DST):
    return Icmp(type_, code, sender)


# the reply got all the way into the sender (its tap and its raw socket saw it)
GOT = {"reply_arrived": True, "reply_accepted": True}
# the reply reached the sender's tap, but the sender's INPUT dropped it
TAP_ONLY = {"reply_arrived": True, "reply_accepted": False}
# responder evidence
ACCEPTED = {"arrived": True, "accepted": True, "answered": False}
ACCEPTED_ANSWERED = {"arrived": True, "accepted": True, "answered": True}
ARRIVED_ONLY = {"arrived": True, "accepted": False, "answered": False}
NEVER_ARRIVED = {"arrived": False, "accepted": False, "answered": False}

# (id, proto, evidence fields, expected (reach, where, verdict))
WITH_RESPONDER = [
    ("tcp-accepted-syn-ack-back-open", TCP, {**ACCEPTED_ANSWERED, "reply": SYN_ACK, **GOT}, (ALLOWED, None, OPEN)),
    ("tcp-accepted-rst-back-closed", TCP, {**ACCEPTED_ANSWERED, "reply": RST, **GOT}, (ALLOWED, None, CLOSED)),
    ("tcp-accepted-implies-arrived", TCP, {"arrived": False, "accepted": True, "answered": True, "reply": SYN_ACK,
                                           **GOT}, (ALLOWED, None, OPEN)),
    ("tcp-arrived-not-accepted-silence-filtered", TCP, ARRIVED_ONLY, (BLOCKED, INGRESS, FILTERED)),
    ("tcp-forged-rst-answered-not-accepted", TCP, {**ARRIVED_ONLY, "answered": True, "reply": RST, **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-forged-rst-seen-though-not-answered", TCP, {**ARRIVED_ONLY, "reply": RST, **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-forged-rst-lost-on-the-way-back", TCP, {**ARRIVED_ONLY, "answered": True}, (BLOCKED, INGRESS, REJECTED)),
    ("tcp-admin-prohibited-by-target", TCP, {**ARRIVED_ONLY, "answered": True, "reply": ICMP, "icmp": icmp(3, 13),
                                             **GOT}, (BLOCKED, INGRESS, REJECTED)),
    ("tcp-never-arrived-network", TCP, NEVER_ARRIVED, (BLOCKED, NETWORK, FILTERED)),
    ("tcp-never-arrived-router-rejects", TCP, {**NEVER_ARRIVED, "reply": ICMP, "icmp": icmp(3, 13, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-never-arrived-time-exceeded", TCP, {**NEVER_ARRIVED, "reply": ICMP, "icmp": icmp(11, 0, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-refused-by-sender-output", TCP, {"sent": False, **NEVER_ARRIVED, "send_error": "Operation not permitted"},
     (BLOCKED, EGRESS, FILTERED)),
    ("tcp-answered-reply-never-reached-sender", TCP, ACCEPTED_ANSWERED, (BLOCKED, RETURN, FILTERED)),
    ("tcp-accepted-not-answered-return-path", TCP, ACCEPTED, (BLOCKED, RETURN, FILTERED)),
    ("tcp-syn-ack-dropped-by-sender-input", TCP, {**ACCEPTED_ANSWERED, "reply": SYN_ACK, **TAP_ONLY},
     (BLOCKED, RETURN, OPEN)),
    ("tcp-rst-dropped-by-sender-input", TCP, {**ACCEPTED_ANSWERED, "reply": RST, **TAP_ONLY},
     (BLOCKED, RETURN, CLOSED)),
    ("udp-echo-back-answered", UDP, {**ACCEPTED_ANSWERED, "reply": ECHO, **GOT}, (ALLOWED, None, ANSWERED)),
    ("udp-echo-dropped-by-sender-input", UDP, {**ACCEPTED_ANSWERED, "reply": ECHO, **TAP_ONLY},
     (BLOCKED, RETURN, ANSWERED)),
    ("udp-accepted-no-echo", UDP, ACCEPTED, (BLOCKED, RETURN, FILTERED)),
    ("udp-accepted-port-unreachable-back", UDP, {**ACCEPTED, "reply": ICMP, "icmp": icmp(3, 3), **GOT},
     (ALLOWED, None, CLOSED)),
    ("udp-arrived-not-accepted", UDP, ARRIVED_ONLY, (BLOCKED, INGRESS, FILTERED)),
    ("udp-rejected-with-port-unreachable-by-target-firewall", UDP,
     {**ARRIVED_ONLY, "answered": True, "reply": ICMP, "icmp": icmp(3, 3), **GOT}, (BLOCKED, INGRESS, REJECTED)),
    ("udp-never-arrived", UDP, NEVER_ARRIVED, (BLOCKED, NETWORK, FILTERED)),
    ("ipip-accepted-is-allowed", IPIP, ACCEPTED, (ALLOWED, None, OPEN)),
    ("ipip-accepted-protocol-unreachable-still-allowed", IPIP,
     {**ACCEPTED_ANSWERED, "reply": ICMP, "icmp": icmp(3, 2), **GOT}, (ALLOWED, None, ANSWERED)),
    ("ipip-accepted-echoed", IPIP, {**ACCEPTED_ANSWERED, "reply": ECHO, **GOT}, (ALLOWED, None, ANSWERED)),
    ("ipip-accepted-echo-lost-still-allowed", IPIP, ACCEPTED_ANSWERED, (ALLOWED, None, ANSWERED)),
    ("ipip-arrived-not-accepted", IPIP, ARRIVED_ONLY, (BLOCKED, INGRESS, FILTERED)),
    ("ipip-never-arrived", IPIP, NEVER_ARRIVED, (BLOCKED, NETWORK, FILTERED)),
    ("ipip-refused-by-sender-output", IPIP, {"sent": False, **NEVER_ARRIVED}, (BLOCKED, EGRESS, FILTERED)),
    ("vxlan-accepted-is-allowed", VXLAN, ACCEPTED, (ALLOWED, None, OPEN)),
    ("vxlan-accepted-echo-dropped-on-return-still-allowed", VXLAN, {**ACCEPTED_ANSWERED, "reply": ECHO, **TAP_ONLY},
     (ALLOWED, None, ANSWERED)),
    ("vxlan-arrived-not-accepted-rejected", VXLAN,
     {**ARRIVED_ONLY, "answered": True, "reply": ICMP, "icmp": icmp(3, 13), **GOT}, (BLOCKED, INGRESS, REJECTED)),
    ("vxlan-never-arrived", VXLAN, NEVER_ARRIVED, (BLOCKED, NETWORK, FILTERED)),
]

SENDER_ONLY = [
    ("tcp-syn-ack-accepted-allowed", TCP, {"reply": SYN_ACK, **GOT}, (ALLOWED, None, OPEN)),
    ("tcp-syn-ack-dropped-by-own-input", TCP, {"reply": SYN_ACK, **TAP_ONLY}, (BLOCKED, RETURN, OPEN)),
    ("tcp-syn-ack-without-capture-facts", TCP, {"reply": SYN_ACK}, (UNKNOWN, None, OPEN)),
    ("tcp-rst-may-be-forged", TCP, {"reply": RST, **GOT}, (UNKNOWN, None, CLOSED)),
    ("tcp-silence", TCP, {}, (UNKNOWN, None, FILTERED)),
    ("tcp-refused-by-own-output", TCP, {"sent": False, "send_error": "Operation not permitted"},
     (BLOCKED, EGRESS, FILTERED)),
    ("tcp-icmp-net-unreachable-from-router", TCP, {"reply": ICMP, "icmp": icmp(3, 0, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-icmp-host-unreachable-from-router", TCP, {"reply": ICMP, "icmp": icmp(3, 1, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-icmp-port-unreachable-from-target", TCP, {"reply": ICMP, "icmp": icmp(3, 3), **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-icmp-port-unreachable-from-router", TCP, {"reply": ICMP, "icmp": icmp(3, 3, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-icmp-net-prohibited-9-from-target", TCP, {"reply": ICMP, "icmp": icmp(3, 9), **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-icmp-host-prohibited-10-from-target", TCP, {"reply": ICMP, "icmp": icmp(3, 10), **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-icmp-admin-prohibited-13-from-target", TCP, {"reply": ICMP, "icmp": icmp(3, 13), **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-icmp-admin-prohibited-13-from-router", TCP, {"reply": ICMP, "icmp": icmp(3, 13, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("tcp-icmp-admin-prohibited-seen-on-tap-only", TCP, {"reply": ICMP, "icmp": icmp(3, 13), **TAP_ONLY},
     (BLOCKED, INGRESS, REJECTED)),
    ("tcp-time-exceeded", TCP, {"reply": ICMP, "icmp": icmp(11, 0, ROUTER), **GOT}, (BLOCKED, NETWORK, REJECTED)),
    ("tcp-icmp-frag-needed-unknown", TCP, {"reply": ICMP, "icmp": icmp(3, 4, ROUTER), **GOT},
     (UNKNOWN, None, REJECTED)),
    ("udp-port-unreachable-from-target-closed", UDP, {"reply": ICMP, "icmp": icmp(3, 3), **GOT},
     (UNKNOWN, None, CLOSED)),
    ("udp-port-unreachable-from-router-rejected", UDP, {"reply": ICMP, "icmp": icmp(3, 3, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("vxlan-port-unreachable-from-target-closed", VXLAN, {"reply": ICMP, "icmp": icmp(3, 3), **GOT},
     (UNKNOWN, None, CLOSED)),
    ("vxlan-port-unreachable-from-router-rejected", VXLAN, {"reply": ICMP, "icmp": icmp(3, 3, ROUTER), **GOT},
     (BLOCKED, NETWORK, REJECTED)),
    ("udp-admin-prohibited-from-target", UDP, {"reply": ICMP, "icmp": icmp(3, 13), **GOT},
     (BLOCKED, INGRESS, REJECTED)),
    ("udp-echo-answered", UDP, {"reply": ECHO, **GOT}, (ALLOWED, None, ANSWERED)),
    ("udp-echo-dropped-by-own-input", UDP, {"reply": ECHO, **TAP_ONLY}, (BLOCKED, RETURN, ANSWERED)),
    ("udp-silence", UDP, {}, (UNKNOWN, None, FILTERED)),
    # nmap -sO's "closed": the host has no IPIP decapsulation (a firewall could send it too)
    ("ipip-protocol-unreachable-from-target", IPIP, {"reply": ICMP, "icmp": icmp(3, 2), **GOT},
     (UNKNOWN, None, CLOSED)),
    ("ipip-protocol-unreachable-from-a-router", IPIP,
     {"reply": ICMP, "icmp": icmp(3, 2, ROUTER), **GOT},
     (UNKNOWN, None, REJECTED)),
    ("ipip-echo-answered", IPIP, {"reply": ECHO, **GOT}, (ALLOWED, None, ANSWERED)),
    ("ipip-silence", IPIP, {}, (UNKNOWN, None, FILTERED)),
    ("ipip-refused-by-own-output", IPIP, {"sent": False}, (BLOCKED, EGRESS, FILTERED)),
    ("vxlan-silence", VXLAN, {}, (UNKNOWN, None, FILTERED)),
    ("vxlan-time-exceeded", VXLAN, {"reply": ICMP, "icmp": icmp(11, 0, ROUTER), **GOT}, (BLOCKED, NETWORK, REJECTED)),
]


def _params(rows):
    return [pytest.param(proto, fields, expected, id=row_id) for row_id, proto, fields, expected in rows]


@pytest.mark.parametrize("proto,fields,expected", _params(WITH_RESPONDER))
def test_with_responder_evidence(proto, fields, expected):
    ev = Evidence(**fields)
    assert ev.has_responder
    assert classify(proto, ev, DST) == Classification(*expected)


@pytest.mark.parametrize("proto,fields,expected", _params(SENDER_ONLY))
def test_sender_only(proto, fields, expected):
    ev = Evidence(**fields)
    assert not ev.has_responder
    assert classify(proto, ev, DST) == Classification(*expected)


def test_every_outcome_is_reached():
    """Every reach, every where and every verdict but `error` appears in the tables above."""
    outcomes = [row[3] for row in WITH_RESPONDER + SENDER_ONLY]
    assert {o[0] for o in outcomes} == set(Reach)
    assert {o[1] for o in outcomes} == set(Where) | {None}
    assert {o[2] for o in outcomes} == set(Verdict) - {Verdict.ERROR}


def test_blocked_always_says_where_and_allowed_never_does():
    for _id, proto, fields, _exp in WITH_RESPONDER + SENDER_ONLY:
        c = classify(proto, Evidence(**fields), DST)
        assert (c.where is not None) == (c.reach is Reach.BLOCKED), _id


def test_without_a_target_address_an_icmp_sender_cannot_be_the_target():
    ev = Evidence(reply=ICMP, icmp=icmp(3, 13), **GOT)
    assert classify(TCP, ev) == Classification(BLOCKED, NETWORK, REJECTED)
    assert sender_verdict(UDP, Evidence(reply=ICMP, icmp=icmp(3, 3), **GOT)) is REJECTED


def test_refused_send_wins_over_everything():
    ev = Evidence(sent=False, reply=SYN_ACK, **GOT, **ACCEPTED_ANSWERED)
    assert classify(TCP, ev, DST) == Classification(BLOCKED, EGRESS, FILTERED)


@pytest.mark.parametrize("reply,expected", [(SYN_ACK, OPEN), (RST, CLOSED), (ECHO, ANSWERED), (None, FILTERED)])
def test_sender_verdict_words(reply, expected):
    assert sender_verdict(TCP, Evidence(reply=reply)) is expected


def test_icmp_reply_without_details_is_filtered():
    assert sender_verdict(TCP, Evidence(reply=ICMP)) is FILTERED


# --- IPv6: the same rules in ICMPv6's numbers (RFC 4443) -------------------------------------

DST6, ROUTER6 = "2001:db8::2", "2001:db8:9::1"
TO_ICMP6 = {(3, 0): (1, 0), (3, 1): (1, 3), (3, 3): (1, 4), (3, 9): (1, 1), (3, 10): (1, 1), (3, 13): (1, 1),
            (11, 0): (3, 0), (3, 4): (2, 0)}  # 3/4 frag needed ~ packet too big: neither says blocked


def _as_ipv6(fields: dict) -> dict:
    out = dict(fields)
    if out.get("icmp") is not None:
        i = out["icmp"]
        out["icmp"] = Icmp(*TO_ICMP6[(i.type, i.code)], {DST: DST6, ROUTER: ROUTER6}[i.sender])
    return out


@pytest.mark.parametrize("proto,fields,expected", _params(
    [row for row in WITH_RESPONDER + SENDER_ONLY if row[1] is not IPIP]))
def test_ipv6_evidence_is_classified_exactly_as_ipv4(proto, fields, expected):
    """Every IPv4 row but IPIP's (IPv4 only), its ICMP error given as the ICMPv6 one a Linux
    firewall or router sends instead: the same reach, where and verdict."""
    assert classify(proto, Evidence(**_as_ipv6(fields)), DST6) == Classification(*expected)


@pytest.mark.parametrize("type_, code, proto, expected", [
    (1, 1, TCP, (BLOCKED, INGRESS, REJECTED)),   # administratively prohibited (ip6tables icmp6-adm-prohibited)
    (1, 4, TCP, (BLOCKED, INGRESS, REJECTED)),   # port unreachable for a SYN: a REJECT rule (ip6tables' default)
    (1, 4, UDP, (UNKNOWN, None, CLOSED)),        # the target's own closed UDP port
    (1, 3, UDP, (BLOCKED, INGRESS, REJECTED)),   # address unreachable
    (1, 5, TCP, (BLOCKED, INGRESS, REJECTED)),   # source address failed ingress/egress policy
    (1, 6, TCP, (BLOCKED, INGRESS, REJECTED)),   # reject route
    (3, 0, TCP, (BLOCKED, NETWORK, REJECTED)),   # hop limit exceeded (type 3: not IPv4's unreachable)
    (3, 1, UDP, (BLOCKED, NETWORK, REJECTED)),   # fragment reassembly time exceeded
])
def test_icmpv6_types_and_codes_from_the_target(type_, code, proto, expected):
    ev = Evidence(reply=ICMP, icmp=Icmp(type_, code, DST6), **GOT)
    assert classify(proto, ev, DST6) == Classification(*expected)
    # the family comes from the target's address; told explicitly it is the same
    assert classify(proto, ev, DST6, 6) == Classification(*expected)


def test_icmpv4_numbers_mean_something_else_over_ipv6():
    """IPv4's 3/3 (port unreachable) is ICMPv6's time exceeded: a SYN answered by it over IPv6
    died in the network, not at a REJECT rule on the target."""
    ev = Evidence(reply=ICMP, icmp=Icmp(3, 3, DST6), **GOT)
    assert classify(TCP, ev, DST6).where is NETWORK
    assert classify(TCP, Evidence(reply=ICMP, icmp=Icmp(3, 3, DST), **GOT), DST).where is INGRESS
