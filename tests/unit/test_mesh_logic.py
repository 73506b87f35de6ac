"""The mesh's pure decisions: whom each host probes, the join of both ends, the error lines."""

from __future__ import annotations

from netprobe.core.checks import select_checks
from netprobe.core.inventory import parse_inventory
from netprobe.core.mesh_logic import Peer, join_cells, mesh_errors, plan_mesh
from netprobe.core.reports import ObservationReport, OutcomeReport
from netprobe.core.result import Evidence, Reach, ReplyKind, Verdict, Where

INVENTORY = parse_inventory(
    "hosts:\n"
    "  - {name: n1, address: 192.0.2.1, roles: [node, etcd], agent: 'unix:/n1'}\n"
    "  - {name: n2, address: 192.0.2.2, roles: [node], agent: 'unix:/n2'}\n"
    "  - {name: x3, address: 192.0.2.3, roles: [], agent: 'unix:/x3'}\n"
)
CHECKS = select_checks(names=["bgp", "etcd"])


def test_every_host_gets_its_peers_even_nobody():
    plan = plan_mesh(INVENTORY, CHECKS)
    assert plan.peers == {
        "n1": (Peer("n2", "192.0.2.2", ("bgp",)),),
        "n2": (Peer("n1", "192.0.2.1", ("bgp", "etcd")),),
        "x3": (Peer("n1", "192.0.2.1", ("etcd",)),),
    }
    assert len(plan.cells) == 2 + 2 and plan.skipped == ()
    assert list(plan.peers) == ["n1", "n2", "x3"]


def outcome(src_addr: str, check: str, dst: str, pid: int, reply=ReplyKind.SYN_ACK) -> OutcomeReport:
    ev = Evidence(reply=reply, reply_arrived=reply is not None, reply_accepted=reply is not None)
    return OutcomeReport(pid, check, dst, "192.0.2.1", src_addr, 0.1, ev)


def test_join_uses_both_ends_and_marks_what_is_missing():
    plan = plan_mesh(INVENTORY, CHECKS)
    sent = {"n2": [outcome("192.0.2.2", "bgp", "n1", 1, reply=None), outcome("192.0.2.2", "etcd", "n1", 2)],
            "x3": [outcome("192.0.2.3", "etcd", "n1", 3)]}
    seen = {"n1": [ObservationReport("192.0.2.2", 1, "tcp", True, False, False, 0.0),
                   ObservationReport("192.0.2.2", 2, "tcp", True, True, True, 0.0)]}
    cells = {c.key[:3]: c for c in join_cells(plan.cells, sent, seen, {"n1": "agent n1: refused"})}
    assert (cells[("bgp", "n2", "n1")].reach, cells[("bgp", "n2", "n1")].where) == (Reach.BLOCKED,
                                                                                  Where.DESTINATION_INGRESS)
    assert cells[("etcd", "n2", "n1")].reach is Reach.ALLOWED
    # x3's probe has no observation at n1 although n1 answered: it never arrived
    assert cells[("etcd", "x3", "n1")].where is Where.NETWORK
    failed = cells[("bgp", "n1", "n2")]
    assert (failed.reach, failed.verdict) == (Reach.UNKNOWN, Verdict.ERROR)
    assert failed.evidence.send_error == "not probed: agent n1: refused"


def test_errors_come_in_inventory_order_then_kernel_drops():
    errors = mesh_errors(["n1", "n2", "x3"], {"x3": ("observe", "late"), "n1": ("probe", "gone")},
                         {"n2": 2, "x3": 0}, {"n2": 1})
    assert [(e["host"], e["stage"]) for e in errors] == [("n1", "probe"), ("x3", "observe"), ("n2", "probe"),
                                                          ("n2", "observe")]
    assert "dropped 2 captured packets (its probes' replies)" in errors[2]["message"]


def test_a_full_mesh_stays_within_the_agents_caps():
    """Above 1,024 hosts each agent would be asked for more peers than it accepts: say so before
    anything runs, and point at --sample (which keeps each agent's share under its cap)."""
    import pytest

    from netprobe.core.checks import CHECKS
    from netprobe.core.inventory import parse_inventory
    from netprobe.core.mesh_logic import plan_mesh
    from netprobe.errors import ConfigError

    hosts = "".join(f"  - {{name: h{i}, address: 198.18.{i // 250}.{i % 250 + 1}}}\n" for i in range(1100))
    inventory = parse_inventory("hosts:\n" + hosts, source="inv.yaml")
    with pytest.raises(ConfigError, match="--sample K"):
        plan_mesh(inventory, [CHECKS["bgp"]])
    with pytest.raises(ConfigError, match="at most 1023 peers"):
        plan_mesh(inventory, [CHECKS["bgp"]], sample=(2000, 0))
    plan = plan_mesh(inventory, [CHECKS["bgp"]], sample=(50, 0))
    assert plan is not None


DUAL_INVENTORY = parse_inventory(
    "hosts:\n"
    "  - {name: a, address: 198.18.0.1, address6: '2001:db8::1'}\n"
    "  - {name: b, address: 198.18.0.2, address6: '2001:db8::2'}\n"
    "  - {name: c, address: 198.18.0.3}\n", source="inv.yaml")


def test_a_dual_stack_plan_asks_for_each_family_at_its_address():
    from netprobe.core.checks import CHECKS

    plan = plan_mesh(DUAL_INVENTORY, [CHECKS["bgp"], CHECKS["ipip"], CHECKS["wireguard6"]])
    assert plan.peers["a"] == (Peer("b", "198.18.0.2", ("bgp", "ipip"), "2001:db8::2", ("bgp", "wireguard6")),
                               Peer("c", "198.18.0.3", ("bgp", "ipip")))
    assert plan.peers["c"] == (Peer("a", "198.18.0.1", ("bgp", "ipip")), Peer("b", "198.18.0.2", ("bgp", "ipip")))
    # the same pairs as the cell planner, and wireguard6 is not skipped: a and b have IPv6
    assert sum(p.probes for peers in plan.peers.values() for p in peers) == len(plan.cells) == 6 * 2 + 2 * 2
    assert plan.skipped == ()


def test_the_join_keeps_each_family_apart():
    from netprobe.core.checks import CHECKS

    plan = plan_mesh(DUAL_INVENTORY, [CHECKS["bgp"]])
    ok = Evidence(reply=ReplyKind.SYN_ACK, reply_arrived=True, reply_accepted=True)
    sent = {"a": [OutcomeReport(1, "bgp", "b", "198.18.0.2", "198.18.0.1", 0.1, ok),
                  OutcomeReport(2, "bgp", "b", "2001:db8::2", "2001:db8::1", 0.2, Evidence(reply=None))]}
    seen = {"b": [ObservationReport("198.18.0.1", 1, "tcp", True, True, True, 0.0),
                  ObservationReport("2001:db8::1", 2, "tcp", True, False, False, 0.0)]}
    cells = {c.key: c for c in join_cells(plan.cells, sent, seen, {})}
    assert cells[("bgp", "a", "b", 4)].reach is Reach.ALLOWED
    six = cells[("bgp", "a", "b", 6)]
    assert (six.reach, six.where, six.family) == (Reach.BLOCKED, Where.DESTINATION_INGRESS, 6)
    assert ("bgp", "a", "c", 6) not in cells and cells[("bgp", "a", "c", 4)].reach is Reach.UNKNOWN
