"""describe_cell: the one wording of where a flow died, for every reach/where combination."""

from __future__ import annotations

import pytest

from helpers import cell
from netprobe.core.result import Icmp, Reach, ReplyKind, Result, Where
from netprobe.report.words import (
    change_side, count_reach, describe_cell, error_line, icmp_words, skipped_line, total_line, where_letter,
)



CASES = [
    (cell("bgp", "node2", "node3", "blocked", "destination-ingress", "filtered", arrived=True, accepted=False),
     "bgp node2 -> node3 blocked at node3's INPUT (filtered)"),
    (cell("etcd", "node1", "cp1", "blocked", "source-egress", "error", sent=False,
          send_error="Operation not permitted"),
     "etcd node1 -> cp1 blocked at node1's OUTPUT (send refused: Operation not permitted)"),
    (cell("etcd", "node1", "cp1", "blocked", "source-egress", "error", sent=False),
     "etcd node1 -> cp1 blocked at node1's OUTPUT (send refused)"),
    (cell("ipip", "node1", "node3", "blocked", "network", "filtered", arrived=False),
     "ipip node1 -> node3 blocked in the network between node1 and node3 (never arrived)"),
    (cell("bgp", "node1", "node3", "blocked", "network", "rejected", arrived=False, reply=ReplyKind.ICMP,
          icmp=Icmp(3, 10, "192.0.2.1")),
     "bgp node1 -> node3 blocked in the network between node1 and node3 "
     "(rejected: ICMP 3/10 host prohibited from 192.0.2.1)"),
    (cell("bgp", "node1", "node2", "blocked", "return-path", "filtered", arrived=True, accepted=True,
          answered=True, reply_arrived=True, reply_accepted=False),
     "bgp node1 -> node2 blocked on the return path: node2 answered, node1 never accepted the reply"),
    (cell("bgp", "node1", "node2", "blocked", "return-path", "filtered", arrived=True, accepted=True,
          answered=True, reply_arrived=False),
     "bgp node1 -> node2 blocked on the return path: node2 answered, the reply never reached node1"),
    (cell("bgp", "node2", "node3", "blocked", "destination-ingress", "rejected", arrived=True, accepted=False,
          reply=ReplyKind.RST),
     "bgp node2 -> node3 blocked at node3's INPUT (rejected: TCP RST)"),
    (cell("bgp", "node2", "node3", "blocked", "destination-ingress", "rejected", arrived=True, accepted=False,
          reply=ReplyKind.ICMP, icmp=Icmp(3, 13, "192.0.2.13")),
     "bgp node2 -> node3 blocked at node3's INPUT (rejected: ICMP 3/13 administratively prohibited "
     "from 192.0.2.13)"),
    (cell("bgp", "node2", "node3", "blocked", "destination-ingress", "filtered", arrived=True, reached_ip=False,
          accepted=False),
     "bgp node2 -> node3 blocked at node3 on the way in, below IP (tc/netdev ingress: filtered)"),
    (cell("bgp", "node2", "node3", "blocked", "destination-ingress", "filtered", arrived=True, reached_ip=True,
          accepted=False),
     "bgp node2 -> node3 blocked at node3's INPUT (filtered)"),
    (cell("typha", "node2", "node1", "blocked", "source-egress", "filtered", left=False, arrived=False),
     "typha node2 -> node1 blocked at node2 on the way out (sent, never left: dropped below IP, tc/netdev egress)"),
    (cell("bgp", "a", "b", "blocked", None, "filtered"), "bgp a -> b blocked (filtered)"),
    (cell("typha", "node3", "node4", "unknown", None, "closed", reply=ReplyKind.RST),
     "typha node3 -> node4 unknown (no responder evidence: closed)"),
    (cell("typha", "node3", "node4", "unknown", None, "filtered", arrived=True, accepted=True),
     "typha node3 -> node4 unknown (filtered)"),
    (cell("typha", "node3", "node4", "unknown", None, "error", send_error="agent unreachable"),
     "typha node3 -> node4 unknown (error: agent unreachable)"),
    (cell("bgp", "node1", "node2", "allowed", None, "open", arrived=True, accepted=True),
     "bgp node1 -> node2 allowed (open)"),
    (cell("ipip", "node1", "node2", "allowed", None, "answered", arrived=True, accepted=True),
     "ipip node1 -> node2 allowed (answered)"),
]


@pytest.mark.parametrize(("c", "sentence"), CASES, ids=[s for _, s in CASES])
def test_describe_cell(c, sentence):
    assert describe_cell(c) == sentence


def test_every_where_has_a_distinct_letter():
    letters = [where_letter(w) for w in Where]
    assert letters == ["S", "N", "D", "R"]
    assert where_letter(None) == ""


def test_icmp_words_names_known_codes_and_keeps_unknown_ones_numeric():
    assert icmp_words(Icmp(3, 3, "192.0.2.5")) == "ICMP 3/3 port unreachable from 192.0.2.5"
    assert icmp_words(Icmp(5, 1, "")) == "ICMP 5/1"


def test_counts_and_lines():
    cells = [c for c, _ in CASES]
    assert count_reach(cells) == {Reach.ALLOWED: 2, Reach.BLOCKED: 13, Reach.UNKNOWN: 3}
    assert total_line(Result(cells=cells)) == "2 allowed, 13 blocked, 3 unknown"
    assert total_line(Result(cells=[])) == "0 allowed, 0 blocked, 0 unknown"
    assert skipped_line({"check": "typha", "reason": "no host has role 'typha'"}) == \
        "typha: skipped, no host has role 'typha'"
    assert error_line({"host": "node4", "message": "agent unreachable: timed out"}) == \
        "node4: agent unreachable: timed out"
    assert error_line({"host": None, "message": "inventory has no agents"}) == "inventory has no agents"


def test_change_side():
    assert change_side(None) == "absent"
    assert change_side(CASES[0][0]) == "blocked at destination-ingress (filtered)"
    assert change_side(CASES[-1][0]) == "allowed (answered)"
