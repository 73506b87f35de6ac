"""A payload probe's ICMP error does not end it: the responder's echo may follow and wins."""

from __future__ import annotations

import struct

from netprobe.core import cookies, parse, templates
from netprobe.core.checks import Check, Direction, Proto
from netprobe.core.result import ReplyKind
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.prober import Prober
from netprobe.core.echoes import build_echo, echo_payload

KEY = b"p" * 32
SRC, DST = "198.51.100.1", "198.51.100.2"
UDP_CHECK = Check("metrics", "custom", Proto.UDP, 9999, Direction.BOTH)

def new_prober(key: bytes, source: str, targets, *, vni: int = 1, **kw) -> Prober:
    """A Prober with the templates its shell would make before the run."""
    targets = list(targets)
    return Prober(key, source, targets, templates.for_targets(source, targets, vni=vni), **kw)


def port_unreachable_for(probe: bytes) -> bytes:
    quoted = probe[:64]
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                     parse.ip_bytes(DST), parse.ip_bytes(SRC))
    return ip + icmp


def echo_for(probe: bytes) -> bytes:
    pkt = parse.parse_packet_untrusted(probe)
    sent = cookies.verify_payload(cookies.dest_key(KEY, pkt.dst), pkt.payload, pkt.flow())
    return build_echo(pkt, echo_payload(cookies.ProbeKeys(KEY), pkt, sent))


def test_icmp_then_echo_gives_the_echo():
    s = new_prober(KEY, SRC, [ProbeTarget(UDP_CHECK, DST)], window=1.0, retries=0)
    (send,) = s.start(0.0, 10**18)
    s.send_done(send.probe_id, 0.0)
    assert s.receive(port_unreachable_for(send.data), Via.RAW, 0.001) == send.probe_id
    assert not s.finished  # still listening for the echo
    assert s.receive(echo_for(send.data), Via.RAW, 0.002) == send.probe_id
    assert s.finished
    (outcome,) = s.outcomes()
    assert outcome.evidence.reply is ReplyKind.ECHO


def test_icmp_alone_is_kept_when_no_echo_comes():
    s = new_prober(KEY, SRC, [ProbeTarget(UDP_CHECK, DST)], window=1.0, retries=0)
    (send,) = s.start(0.0, 10**18)
    s.send_done(send.probe_id, 0.0)
    s.receive(port_unreachable_for(send.data), Via.RAW, 0.001)
    assert s.tick(1.5, 0) == [] and s.finished
    (outcome,) = s.outcomes()
    assert (outcome.evidence.reply, outcome.evidence.icmp.code) == (ReplyKind.ICMP, 3)
