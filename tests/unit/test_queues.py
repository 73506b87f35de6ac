"""This host's own drops (core/queues.py): parsed from the kernel's texts, compared between two
reads, and a mesh or probe run partial only when a host whose queues dropped is an end of a cell
that got no answer."""

from __future__ import annotations

from netprobe.core import queues
from netprobe.core.cells import Cell, Evidence, Reach, ReplyKind, Verdict, Where
from netprobe.core.exitcode import PARTIAL, probe_exit_code
from netprobe.core.matrix_store import MatrixStore
from netprobe.core.mesh_logic import mesh_errors, unanswered_hosts

SOFTNET = ("004f558a 00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n"
           "00a82966 00001ab7 00000006 00000000 00000000 00000000 00000000 00000000 00000000 00031cab 00000000\n")
SNMP = ("Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards "
        "InDelivers OutRequests OutDiscards OutNoRoutes\n"
        "Ip: 2 64 218277 0 0 0 0 0 218277 188142 440 0\n"
        "Icmp: InMsgs InErrors OutMsgs OutRateLimitGlobal OutRateLimitHost\n"
        "Icmp: 2 0 9 3 4\n"
        "Tcp: RtoAlgorithm OutRsts\n"
        "Tcp: 1 100000\n")


def test_the_kernel_texts_parse():
    assert queues.parse_softnet(SOFTNET) == 0x1AB7  # the second column, summed over CPUs
    assert queues.parse_snmp(SNMP) == {"ip_out_discards": 440, "icmp_ratelimited": 7}
    assert queues.parse_snmp("Ip: Forwarding\nIp: 2\n") == {}  # an older kernel: nothing to compare


def test_only_what_was_read_twice_is_compared_and_a_counter_never_goes_back():
    before = {"softnet_dropped": 10, "ip_out_discards": 5, "link_dropped": 7}
    after = {"softnet_dropped": 13, "ip_out_discards": 445, "icmp_ratelimited": 2, "link_dropped": 3}
    moved = queues.moved(before, after)
    # IP output discards are reported, never acted on: this host's OUTPUT drops count there too
    assert moved == {"softnet_dropped": 3, "ip_out_discards": 440, "link_dropped": 0, queues.TOTAL: 3}
    assert queues.describe(moved) == "3 packets (receive backlog (netdev_max_backlog) 3)"
    assert queues.from_stats({"matched": 9, **moved}) == moved
    assert queues.from_stats({"matched": 9}) == {}  # an agent older than these counters


def _store_with(problem: tuple[str, str, str] | None, where: Where = Where.NETWORK) -> MatrixStore:
    store = MatrixStore(["a", "b", "c"], ["bgp"])
    ok = Evidence(sent=True, reply=ReplyKind.RST, reply_arrived=True, reply_accepted=True, arrived=True,
                  accepted=True, answered=True, attempts=1)
    for src, dst in (("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")):
        store.put(Cell("bgp", src, dst, Reach.ALLOWED, None, Verdict.CLOSED, 0.1, ok))
    if problem:
        store.put(Cell(*problem, Reach.BLOCKED, where, Verdict.FILTERED, None, Evidence(sent=True, attempts=2)))
    return store


def test_a_host_whose_queues_dropped_makes_the_run_partial_only_when_it_ends_an_unanswered_cell():
    drops = {"b": ("observe", queues.moved({"softnet_dropped": 0}, {"softnet_dropped": 12})),
             "c": ("probe", queues.moved({"softnet_dropped": 0}, {"softnet_dropped": 0}))}
    clean = _store_with(None)
    assert unanswered_hosts(clean) == set()
    assert mesh_errors(["a", "b", "c"], {}, {}, {}, drops, unanswered_hosts(clean)) == []
    blocked = _store_with(("bgp", "a", "b"))
    assert unanswered_hosts(blocked) == {"a", "b"}
    [error] = mesh_errors(["a", "b", "c"], {}, {}, {}, drops, unanswered_hosts(blocked))
    assert (error["host"], error["stage"]) == ("b", "observe")
    assert "its own queues dropped 12 packets" in error["message"] and "not a firewall" in error["message"]
    # a blocked cell elsewhere: b's drops cannot explain it
    assert mesh_errors(["a", "b", "c"], {}, {}, {}, drops, unanswered_hosts(_store_with(("bgp", "a", "c")))) == []
    # a probe b's firewall dropped after it arrived (or one b refused to send): no lost packet there
    for where in (Where.DESTINATION_INGRESS, Where.SOURCE_EGRESS):
        assert unanswered_hosts(_store_with(("bgp", "a", "b"), where)) == set()


def test_a_one_shot_probe_without_an_answer_is_partial_when_this_host_dropped_packets():
    silent = Cell("bgp", "me", "t", Reach.UNKNOWN, None, Verdict.FILTERED, None, Evidence(sent=True, attempts=2))
    answered = Cell("bgp", "me", "t", Reach.UNKNOWN, None, Verdict.CLOSED, 0.2,
                    Evidence(sent=True, reply=ReplyKind.RST, reply_arrived=True, reply_accepted=True, attempts=1))
    assert probe_exit_code([silent], 0, queue_drops=5) == PARTIAL
    assert probe_exit_code([silent], 0, queue_drops=0) == 0
    assert probe_exit_code([answered], 0, queue_drops=5) == 0
