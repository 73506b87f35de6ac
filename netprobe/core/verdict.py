"""Evidence -> (reach, where, verdict): the rules of docs/design.md "Evidence and verdicts", as one pure function.

``verdict`` is what the sender saw, in nmap's words. ``reach`` and ``where`` come from both ends
when the responder's evidence is there; from the sender alone they are claimed only where the
sender can know (an explicit admin-prohibited, a refused send, a SYN-ACK its own INPUT dropped),
and are ``unknown`` otherwise (silence, or an RST that a firewall may have forged).
"""

from __future__ import annotations

from dataclasses import dataclass

from netprobe.core.checks import Check, Proto, family_of
from netprobe.core.result import Cell, Evidence, Reach, ReplyKind, Verdict, Where

ENCAPSULATIONS = frozenset({Proto.IPIP, Proto.VXLAN})


@dataclass(frozen=True)
class IcmpCodes:
    """The ICMP errors the verdict reads, in one family's numbers."""

    unreach: int                 # destination unreachable
    time_exceeded: int
    port_unreach: int            # code of unreach: no socket on that port (or a REJECT rule)
    proto_unreach: int | None    # code of unreach: no handler of that protocol (IPIP without tunl0)
    undelivered: frozenset[int]  # codes of unreach that say "not delivered": prohibited, no route, host gone


# IPv4: 3/0 net, 3/1 host unreachable, 3/9, 3/10 net/host prohibited, 3/13 administratively prohibited
ICMP4 = IcmpCodes(unreach=3, time_exceeded=11, port_unreach=3, proto_unreach=2, undelivered=frozenset({0, 1, 9, 10, 13}))
# ICMPv6 (RFC 4443): 1/0 no route, 1/1 administratively prohibited, 1/2 beyond the source's scope,
# 1/3 address unreachable, 1/4 port unreachable, 1/5 source address failed policy, 1/6 reject route;
# time exceeded is type 3
ICMP6 = IcmpCodes(unreach=1, time_exceeded=3, port_unreach=4, proto_unreach=None,
                  undelivered=frozenset({0, 1, 2, 3, 5, 6}))
ICMP_CODES = {4: ICMP4, 6: ICMP6}


@dataclass(frozen=True)
class Classification:
    reach: Reach
    where: Where | None
    verdict: Verdict


def _icmp_from_target(ev: Evidence, dst: str | None) -> bool:
    return ev.icmp is not None and dst is not None and ev.icmp.sender == dst


def sender_verdict(proto: Proto, ev: Evidence, dst: str | None = None, family: int = 4) -> Verdict:
    """What the sender saw, in nmap's words."""
    codes = ICMP_CODES[family]
    if not ev.sent:
        return Verdict.FILTERED
    if ev.reply is ReplyKind.SYN_ACK:
        return Verdict.OPEN
    if ev.reply is ReplyKind.RST:
        return Verdict.CLOSED
    if ev.reply is ReplyKind.ECHO:
        return Verdict.ANSWERED
    if ev.reply is ReplyKind.ICMP and ev.icmp is not None:
        if ev.icmp.type == codes.unreach and _icmp_from_target(ev, dst) and (
                (proto is not Proto.TCP and ev.icmp.code == codes.port_unreach)
                or (proto is Proto.IPIP and ev.icmp.code == codes.proto_unreach)):
            # a UDP port with no socket, or a host with no IPIP decapsulation: nmap's "closed"
            return Verdict.CLOSED
        return Verdict.REJECTED
    return Verdict.FILTERED


def _sender_only(proto: Proto, ev: Evidence, dst: str | None, codes: IcmpCodes) -> tuple[Reach, Where | None]:
    if ev.reply in (ReplyKind.SYN_ACK, ReplyKind.ECHO):
        if ev.reply_accepted:
            return Reach.ALLOWED, None
        if ev.reply_arrived:
            return Reach.BLOCKED, Where.RETURN_PATH  # our own INPUT dropped the answer
        return Reach.UNKNOWN, None
    if ev.reply is ReplyKind.ICMP and ev.icmp is not None:
        here = Where.DESTINATION_INGRESS if _icmp_from_target(ev, dst) else Where.NETWORK
        if ev.icmp.type == codes.time_exceeded:
            return Reach.BLOCKED, Where.NETWORK
        if ev.icmp.type == codes.unreach:
            if ev.icmp.code in codes.undelivered:
                return Reach.BLOCKED, here
            if ev.icmp.code == codes.port_unreach and proto is Proto.TCP:
                return Reach.BLOCKED, here  # no TCP stack answers a SYN with ICMP: a REJECT rule did
            if ev.icmp.code == codes.port_unreach and dst is not None and ev.icmp.sender != dst:
                return Reach.BLOCKED, Where.NETWORK  # a router owns no UDP port: a REJECT rule on the way did
    return Reach.UNKNOWN, None  # silence, an RST, the target's UDP port unreachable: a firewall could be the author


def classify(proto: Proto, ev: Evidence, dst: str | None = None, family: int | None = None) -> Classification:
    """Classify one probe's evidence; ``dst`` (the target address) tells the target's own ICMP
    errors from a router's; ``family`` (default: ``dst``'s, else 4) which ICMP numbers apply."""
    family = family or (family_of(dst) if dst else 4)
    verdict = sender_verdict(proto, ev, dst, family)
    if not ev.sent:
        return Classification(Reach.BLOCKED, Where.SOURCE_EGRESS, verdict)
    if not ev.has_responder:
        reach, where = _sender_only(proto, ev, dst, ICMP_CODES[family])
        return Classification(reach, where, verdict)

    accepted = bool(ev.accepted)
    arrived = bool(ev.arrived) or accepted
    if not arrived:
        return Classification(Reach.BLOCKED, Where.NETWORK, verdict)
    if not accepted:
        # the target's firewall answered for it (forged RST or ICMP), or dropped it silently
        if ev.answered or ev.reply in (ReplyKind.RST, ReplyKind.ICMP):
            verdict = Verdict.REJECTED
        return Classification(Reach.BLOCKED, Where.DESTINATION_INGRESS, verdict)
    if proto in ENCAPSULATIONS:
        # accepted at the target is the whole requirement; the way back is the reverse cell
        shown = Verdict.ANSWERED if (ev.reply is ReplyKind.ECHO or ev.answered) else Verdict.OPEN
        return Classification(Reach.ALLOWED, None, shown)
    if ev.reply is not None and ev.reply_accepted:
        return Classification(Reach.ALLOWED, None, verdict)
    # accepted, but the answer never got back into the sender: dropped on its way out of the
    # target, in the network, or by the sender's INPUT
    return Classification(Reach.BLOCKED, Where.RETURN_PATH, verdict)


def classify_cell(check: Check, src: str, dst: str, dst_address: str, ev: Evidence, rtt_ms: float | None) -> Cell:
    """One matrix cell from a probe's evidence (what `probe` and `mesh` both print); its family
    is the destination address's."""
    family = family_of(dst_address)
    c = classify(check.proto, ev, dst_address, family)
    return Cell(check.id, src, dst, c.reach, c.where, c.verdict, rtt_ms, ev, family)
