"""The requirements table (docs/design.md "What is probed"), profiles, select_checks and plan_cells."""

from __future__ import annotations

import pytest

from netprobe.core.checks import (
    CHECKS,
    DEFAULT_PROFILE,
    PROFILES,
    Check,
    Direction,
    HostRef,
    PlannedCell,
    Proto,
    Skipped,
    UnknownCheck,
    plan_cells,
    select_checks,
)

# docs/design.md "What is probed", written out independently of the code: id -> (proto, port, direction, to_role, from_role)
DESIGN_TABLE = {
    "bgp": (Proto.TCP, 179, Direction.BOTH, None, "node"),
    "ipip": (Proto.IPIP, None, Direction.BOTH, None, "node"),
    "typha": (Proto.TCP, 5473, Direction.TO_ROLE, "typha", "node"),
    "vxlan": (Proto.VXLAN, 4789, Direction.BOTH, None, "node"),
    "apiserver": (Proto.TCP, 6443, Direction.TO_ROLE, "apiserver", None),
    "etcd": (Proto.TCP, 2379, Direction.TO_ROLE, "etcd", None),
    "wireguard": (Proto.UDP, 51820, Direction.BOTH, None, "node"),
    "wireguard6": (Proto.UDP, 51821, Direction.BOTH, None, "node"),
}


def test_table_has_exactly_the_checks_of_the_design_in_order():
    assert list(CHECKS) == ["bgp", "ipip", "typha", "vxlan", "wireguard", "wireguard6", "apiserver", "etcd"]


@pytest.mark.parametrize("check_id", list(DESIGN_TABLE))
def test_table_row_matches_design(check_id):
    c = CHECKS[check_id]
    assert c.id == check_id
    assert (c.proto, c.port, c.direction, c.to_role, c.from_role) == DESIGN_TABLE[check_id]
    assert c.description


def test_profiles_match_design():
    assert PROFILES == {
        "calico": ("bgp", "ipip", "typha", "apiserver", "etcd"),
        "calico-noipip": ("bgp", "typha", "apiserver", "etcd"),
        "calico-vxlan": ("vxlan", "typha", "apiserver", "etcd"),
        "calico-wireguard": ("bgp", "ipip", "wireguard", "wireguard6", "typha", "apiserver", "etcd"),
        "canal": ("vxlan", "typha", "apiserver", "etcd"),
    }
    assert DEFAULT_PROFILE == "calico"


@pytest.mark.parametrize("check_id", list(DESIGN_TABLE))
def test_check_dict_round_trip(check_id):
    c = CHECKS[check_id]
    d = c.to_dict()
    assert d["proto"] == str(c.proto) and d["direction"] == str(c.direction)
    assert Check.from_dict(d) == c


def test_check_from_dict_defaults():
    c = Check.from_dict({"id": "x", "proto": "udp", "port": 53})
    assert c == Check("x", "x", Proto.UDP, 53, Direction.BOTH, None, "node")


# ------------------------------------------------------------------ select_checks


@pytest.mark.parametrize("profile", list(PROFILES))
def test_select_checks_by_profile(profile):
    assert [c.id for c in select_checks(profile)] == list(PROFILES[profile])


def test_select_checks_default_is_calico():
    assert [c.id for c in select_checks()] == list(PROFILES["calico"])


def test_checks_replace_the_profile():
    # vxlan is not in calico, bgp is not in canal: --checks wins whatever the profile
    assert [c.id for c in select_checks("calico", ["vxlan", "etcd"])] == ["vxlan", "etcd"]
    assert [c.id for c in select_checks("canal", ["bgp"])] == ["bgp"]


def test_checks_ignore_an_unknown_profile():
    assert [c.id for c in select_checks("no-such-profile", ["bgp"])] == ["bgp"]


def test_checks_are_deduplicated_keeping_order():
    assert [c.id for c in select_checks("calico", ["etcd", "bgp", "etcd"])] == ["etcd", "bgp"]


def test_empty_names_mean_the_profile():
    assert [c.id for c in select_checks("canal", [])] == list(PROFILES["canal"])


def test_selected_checks_are_the_table_rows():
    assert select_checks("calico", ["bgp"])[0] is CHECKS["bgp"]


def test_apiserver_port_override():
    checks = select_checks("calico", apiserver_port=443)
    api = next(c for c in checks if c.id == "apiserver")
    assert api.port == 443
    assert CHECKS["apiserver"].port == 6443  # the table itself is untouched
    others = [c for c in checks if c.id != "apiserver"]
    assert others == [CHECKS[c.id] for c in others]


def test_apiserver_port_override_applies_to_explicit_checks():
    assert select_checks(names=["apiserver"], apiserver_port=8443)[0].port == 8443


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_bad_apiserver_port(port):
    with pytest.raises(UnknownCheck, match="apiserver port"):
        select_checks("calico", apiserver_port=port)


def test_unknown_profile():
    with pytest.raises(UnknownCheck, match="unknown profile 'flannel'"):
        select_checks("flannel")


def test_unknown_check_names_the_check():
    with pytest.raises(UnknownCheck, match="unknown check 'ssh'"):
        select_checks("calico", ["bgp", "ssh"])


def test_unknown_check_is_a_value_error():
    assert issubclass(UnknownCheck, ValueError)


CUSTOM = Check("dns", "cluster DNS", Proto.UDP, 53, Direction.TO_ROLE, to_role="node", from_role=None)


def test_custom_checks_join_the_profile():
    assert [c.id for c in select_checks("canal", custom=[CUSTOM])] == [*PROFILES["canal"], "dns"]


def test_custom_checks_can_be_named_explicitly():
    assert select_checks("calico", ["dns"], custom=[CUSTOM]) == [CUSTOM]


def test_custom_check_unknown_without_custom():
    with pytest.raises(UnknownCheck):
        select_checks("calico", ["dns"])


# ------------------------------------------------------------------ plan_cells


def host(name, *roles, n=None):
    return HostRef(name, f"198.18.0.{n or len(name)}", frozenset(roles))


CP = HostRef("cp1", "198.18.0.10", frozenset({"node", "apiserver", "etcd"}))
N1 = HostRef("node1", "198.18.0.11", frozenset({"node", "typha"}))
N2 = HostRef("node2", "198.18.0.12", frozenset({"node"}))
EXT = HostRef("ext", "198.18.0.13", frozenset())  # no role: an outside client (e.g. a bastion)
HOSTS = [CP, N1, N2, EXT]


def pairs(cells, check_id):
    return {(c.src.name, c.dst.name) for c in cells if c.check.id == check_id}


def test_bidirectional_check_plans_both_directions_between_nodes():
    cells, skipped = plan_cells(HOSTS, [CHECKS["bgp"]])
    nodes = ["cp1", "node1", "node2"]
    assert pairs(cells, "bgp") == {(a, b) for a in nodes for b in nodes if a != b}
    assert len(cells) == 6  # no duplicates
    assert skipped == []


@pytest.mark.parametrize("check_id", ["bgp", "ipip", "vxlan"])
def test_bidirectional_checks_leave_out_hosts_without_the_source_role(check_id):
    cells, _ = plan_cells(HOSTS, [CHECKS[check_id]])
    assert all("ext" not in pair for pair in pairs(cells, check_id))


def test_role_check_goes_only_towards_role_hosts():
    cells, skipped = plan_cells(HOSTS, [CHECKS["typha"]])
    # typha: every node -> hosts with role typha; never node1 to itself, never from ext
    assert pairs(cells, "typha") == {("cp1", "node1"), ("node2", "node1")}
    assert skipped == []


@pytest.mark.parametrize("check_id,role_host", [("apiserver", "cp1"), ("etcd", "cp1")])
def test_from_role_none_means_every_host(check_id, role_host):
    cells, _ = plan_cells(HOSTS, [CHECKS[check_id]])
    assert pairs(cells, check_id) == {(h.name, role_host) for h in HOSTS if h.name != role_host}
    assert ("ext", role_host) in pairs(cells, check_id)


def test_no_self_cells_ever():
    cells, _ = plan_cells(HOSTS, select_checks("calico") + [CHECKS["vxlan"]])
    assert cells
    assert all(c.src.name != c.dst.name for c in cells)


def test_cells_carry_the_check_and_hosts():
    cells, _ = plan_cells([CP, N1], [CHECKS["bgp"]])
    assert cells == [PlannedCell(CHECKS["bgp"], CP, N1), PlannedCell(CHECKS["bgp"], N1, CP)]


def test_planned_cells_use_the_overridden_apiserver_port():
    cells, _ = plan_cells(HOSTS, select_checks(names=["apiserver"], apiserver_port=443))
    assert {c.check.port for c in cells} == {443}


def test_role_check_without_role_host_is_skipped_with_reason():
    cells, skipped = plan_cells([N2, host("node3", "node")], [CHECKS["typha"], CHECKS["etcd"]])
    assert cells == []
    assert skipped == [Skipped("typha", "no host has role 'typha'"), Skipped("etcd", "no host has role 'etcd'")]


def test_bidirectional_check_with_one_node_is_skipped():
    cells, skipped = plan_cells([CP, EXT], [CHECKS["bgp"]])
    assert cells == []
    assert skipped == [Skipped("bgp", "no pair of distinct hosts to probe")]


def test_role_check_whose_only_source_is_the_role_host_is_skipped():
    lonely = HostRef("solo", "198.18.0.20", frozenset({"node", "typha"}))
    cells, skipped = plan_cells([lonely], [CHECKS["typha"]])
    assert cells == []
    assert skipped == [Skipped("typha", "no pair of distinct hosts to probe")]


def test_skipping_one_check_keeps_the_others():
    cells, skipped = plan_cells([CP, N2], select_checks("calico"))
    assert {c.check.id for c in cells} == {"bgp", "ipip", "apiserver", "etcd"}
    assert [s.check for s in skipped] == ["typha"]


def test_custom_check_planned_from_every_host():
    cells, _ = plan_cells(HOSTS, [CUSTOM])  # to role node, from every host
    assert pairs(cells, "dns") == {(s.name, d.name) for s in HOSTS for d in (CP, N1, N2) if s.name != d.name}


def test_empty_inputs():
    assert plan_cells([], select_checks("calico"))[0] == []
    assert plan_cells(HOSTS, []) == ([], [])


# ------------------------------------------------------------------ VXLAN's port, WireGuard


def _port(checks, check_id):
    return next(c.port for c in checks if c.id == check_id)


def test_canal_probes_flannels_real_port_8472():
    # flannel keeps the kernel's default 8472 on Linux, whatever the old requirements page says
    assert _port(select_checks("canal"), "vxlan") == 8472
    assert _port(select_checks("canal", ["vxlan"]), "vxlan") == 8472


def test_calico_vxlan_probes_4789_and_needs_no_bgp():
    checks = select_checks("calico-vxlan")
    assert _port(checks, "vxlan") == 4789
    assert "bgp" not in [c.id for c in checks]


def test_inventory_vxlan_port_wins_over_the_profile():
    assert _port(select_checks("canal", vxlan_port=4789), "vxlan") == 4789
    assert _port(select_checks("calico", ["vxlan"], vxlan_port=4790), "vxlan") == 4790


def test_bad_vxlan_port():
    with pytest.raises(UnknownCheck, match="vxlan port"):
        select_checks("canal", vxlan_port=70000)


def test_wireguard_carries_the_authenticated_udp_payload():
    assert CHECKS["wireguard"].proto is Proto.UDP and CHECKS["wireguard"].family == 4


def test_wireguard6_is_skipped_when_no_host_has_ipv6():
    hosts = [HostRef("a", "192.0.2.1", frozenset({"node"})), HostRef("b", "192.0.2.2", frozenset({"node"}))]
    cells, skipped = plan_cells(hosts, select_checks("calico", ["wireguard", "wireguard6"]))
    assert {c.check.id for c in cells} == {"wireguard"} and len(cells) == 2
    assert skipped == [Skipped("wireguard6", "no host has an IPv6 address")]
    six = [HostRef("a", "2001:db8::1", frozenset({"node"}), "2001:db8::1"),
           HostRef("b", "2001:db8::2", frozenset({"node"}), "2001:db8::2")]
    assert plan_cells(six, [CHECKS["wireguard"]])[1] == [Skipped("wireguard", "no host has an IPv4 address")]


DUAL = HostRef("dual", "192.0.2.1", frozenset({"node", "etcd"}), "2001:db8::1")
V4 = HostRef("v4", "192.0.2.2", frozenset({"node"}))
V6 = HostRef("v6", "2001:db8::3", frozenset({"node", "typha"}), "2001:db8::3")


def test_each_check_is_planned_over_every_family_both_ends_have():
    cells, skipped = plan_cells([DUAL, V4, V6], select_checks("calico-wireguard") + [CHECKS["vxlan"]])
    planned = {(c.check.id, c.src.name, c.dst.name, c.family) for c in cells}
    # bgp: dual <-> v4 over IPv4 only, dual <-> v6 over IPv6 only, v4 and v6 share no family
    assert {p for p in planned if p[0] == "bgp"} == {
        ("bgp", "dual", "v4", 4), ("bgp", "v4", "dual", 4), ("bgp", "dual", "v6", 6), ("bgp", "v6", "dual", 6)}
    # IPIP and wireguard stay IPv4, wireguard6 is IPv6 only, VXLAN runs over both on the same port
    assert {p[3] for p in planned if p[0] in ("ipip", "wireguard")} == {4}
    assert {p for p in planned if p[0] == "wireguard6"} == {("wireguard6", "dual", "v6", 6),
                                                          ("wireguard6", "v6", "dual", 6)}
    assert {p[3] for p in planned if p[0] == "vxlan"} == {4, 6}
    # every host -> etcd over each family it shares with the etcd host; typha only reachable over IPv6
    assert {p for p in planned if p[0] == "etcd"} == {("etcd", "v4", "dual", 4), ("etcd", "v6", "dual", 6)}
    assert {p for p in planned if p[0] == "typha"} == {("typha", "dual", "v6", 6)}
    # a cell knows the address it goes to
    assert {c.dst_address for c in cells if c.check.id == "bgp" and c.dst.name == "dual"} == {"192.0.2.1",
                                                                                             "2001:db8::1"}
    assert skipped == [Skipped("apiserver", "no host has role 'apiserver'")]


def test_family_round_trips_and_ipv4_dicts_stay_as_they_were():
    assert "family" not in CHECKS["bgp"].to_dict()  # probed over each family: result files as before
    assert CHECKS["wireguard"].to_dict()["family"] == 4 and CHECKS["wireguard6"].to_dict()["family"] == 6
    for check in CHECKS.values():
        assert Check.from_dict(check.to_dict()) == check
    assert CHECKS["ipip"].families == (4,) and CHECKS["bgp"].families == (4, 6)
    assert CHECKS["wireguard6"].families == (6,)
