"""Expectations: selectors, first-match precedence, where-matching, unknown cells, validation."""

from __future__ import annotations

import pytest

from helpers import cell
from netprobe.core.expect import Mismatch, compare, load_expectation_text, parse_expectation
from netprobe.core.result import HostInfo, Reach, Result, Verdict, Where
from netprobe.errors import ConfigError

ROLES = {
    "cp1": frozenset({"node", "apiserver", "etcd"}),
    "node1": frozenset({"node", "typha"}),
    "node2": frozenset({"node"}),
}


def exp(rules, default="allowed", **kw):
    return parse_expectation({"default": default, "rules": rules}, source="e.yaml", **kw)



def result(*cells):
    hosts = [HostInfo(n, f"198.18.0.{i + 10}", tuple(sorted(r))) for i, (n, r) in enumerate(ROLES.items())]
    return Result(cells=list(cells), hosts=hosts)


# -- selectors -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rule", "cell_key", "selected"),
    [
        ({"check": "bgp", "from": "node2", "to": "cp1"}, ("bgp", "node2", "cp1"), True),
        ({"check": "bgp", "from": "node2", "to": "cp1"}, ("bgp", "node1", "cp1"), False),
        ({"check": "bgp", "from": "node2", "to": "cp1"}, ("bgp", "node2", "node1"), False),
        ({"check": "bgp", "from": "node2", "to": "cp1"}, ("ipip", "node2", "cp1"), False),
        ({"check": "etcd", "from": "role:typha", "to": "*"}, ("etcd", "node1", "cp1"), True),
        ({"check": "etcd", "from": "role:typha", "to": "*"}, ("etcd", "node2", "cp1"), False),
        ({"check": "*", "from": "*", "to": "role:etcd"}, ("apiserver", "node2", "cp1"), True),
        ({"check": "*", "from": "*", "to": "role:etcd"}, ("bgp", "cp1", "node2"), False),
        ({"from": "node1"}, ("typha", "node1", "node2"), True),  # check/from/to default to *
        ({"check": ["bgp", "ipip"], "from": ["node1", "role:apiserver"]}, ("ipip", "cp1", "node2"), True),
        ({"check": ["bgp", "ipip"], "from": ["node1", "role:apiserver"]}, ("ipip", "node2", "cp1"), False),
        ({"check": ["bgp", "ipip"], "from": ["node1", "role:apiserver"]}, ("typha", "node1", "cp1"), False),
    ],
)
def test_selectors(rule, cell_key, selected):
    e = exp([{**rule, "reach": "blocked"}])
    assert e.expected(*cell_key, ROLES) == ((Reach.BLOCKED, None) if selected else (Reach.ALLOWED, None))


def test_role_selector_uses_the_roles_given():
    e = exp([{"to": "role:typha", "reach": "blocked"}])
    assert e.expected("typha", "cp1", "node2", ROLES)[0] is Reach.ALLOWED
    assert e.expected("typha", "cp1", "node2", {**ROLES, "node2": frozenset({"typha"})})[0] is Reach.BLOCKED
    assert e.expected("typha", "cp1", "ghost", ROLES)[0] is Reach.ALLOWED  # a host without roles


# -- precedence and defaults ---------------------------------------------------------------

def test_first_matching_rule_wins():
    e = exp([
        {"check": "etcd", "from": "role:apiserver", "to": "role:etcd", "reach": "allowed"},
        {"check": "etcd", "from": "*", "to": "role:etcd", "reach": "blocked", "where": "destination-ingress"},
    ])
    assert e.expected("etcd", "cp1", "cp1", ROLES) == (Reach.ALLOWED, None)
    assert e.expected("etcd", "node2", "cp1", ROLES) == (Reach.BLOCKED, Where.DESTINATION_INGRESS)
    assert e.rule_for("etcd", "node2", "cp1", ROLES).index == 1
    # reversed order: the broad rule shadows the narrow one
    e2 = exp(list(reversed([r.to_dict() for r in e.rules])))
    assert e2.expected("etcd", "cp1", "cp1", ROLES) == (Reach.BLOCKED, Where.DESTINATION_INGRESS)


def test_default_applies_when_no_rule_matches():
    assert exp([], default="blocked").expected("bgp", "node1", "node2", ROLES) == (Reach.BLOCKED, None)
    assert parse_expectation({}, source="e").expected("bgp", "a", "b", {}) == (Reach.ALLOWED, None)
    assert parse_expectation(None, source="e").default is Reach.ALLOWED
    assert parse_expectation({"rules": None}, source="e").rules == ()


# -- compare -------------------------------------------------------------------------------

def test_compare_reports_only_broken_cells_in_order():
    e = exp([{"check": "bgp", "from": "node2", "to": "node1", "reach": "blocked"}])
    r = result(
        cell("bgp", "node1", "node2", "allowed"),
        cell("bgp", "node2", "node1", "allowed"),       # expected blocked
        cell("bgp", "cp1", "node2", "blocked", "network"),  # expected allowed (default)
    )
    got = compare(e, r)
    assert [(m.check, m.src, m.dst) for m in got] == [("bgp", "node2", "node1"), ("bgp", "cp1", "node2")]
    assert got[0].expected is Reach.BLOCKED and got[0].rule == 0
    assert got[1].expected is Reach.ALLOWED and got[1].rule is None


def test_where_must_match_when_the_rule_names_it():
    e = exp([{"check": "bgp", "from": "node2", "to": "node1", "reach": "blocked", "where": "destination-ingress"}])
    assert compare(e, result(cell("bgp", "node2", "node1", "blocked", "destination-ingress"))) == []
    [m] = compare(e, result(cell("bgp", "node2", "node1", "blocked", "network")))
    assert m.expected_where is Where.DESTINATION_INGRESS and m.actual.where is Where.NETWORK


def test_where_is_free_when_the_rule_omits_it():
    e = exp([{"check": "bgp", "reach": "blocked"}])
    for where in Where:
        assert compare(e, result(cell("bgp", "node2", "node1", "blocked", str(where)))) == []


def test_unknown_always_mismatches():
    for default in ("allowed", "blocked"):
        [m] = compare(exp([], default=default), result(cell("ipip", "node1", "node2", "unknown")))
        assert m.actual.reach is Reach.UNKNOWN


def test_compare_takes_roles_from_the_result():
    e = exp([{"check": "typha", "to": "role:typha", "reach": "blocked"}])
    assert compare(e, result(cell("typha", "node2", "node1", "blocked", "network"))) == []
    assert len(compare(e, result(cell("typha", "node2", "node1", "allowed")))) == 1


def test_describe():
    m = Mismatch("bgp", "node2", "node3", Reach.BLOCKED, Where.DESTINATION_INGRESS,
                 cell("bgp", "node2", "node3", "allowed", verdict=Verdict.OPEN))
    assert m.describe() == "bgp node2 -> node3: expected blocked at destination-ingress, got allowed (open)"
    m2 = Mismatch("etcd", "a", "b", Reach.ALLOWED, None,
                  cell("etcd", "a", "b", "blocked", "destination-ingress", Verdict.REJECTED))
    assert m2.describe() == "etcd a -> b: expected allowed, got blocked at destination-ingress (rejected)"


# -- text form -----------------------------------------------------------------------------

def test_load_text_block_and_wrapped_forms_agree():
    block = """
default: allowed
rules:
  - {check: bgp, from: node2, to: node3, reach: blocked, where: destination-ingress}
  - {check: etcd, from: "role:node", to: "role:etcd", reach: blocked}
"""
    wrapped = "name: x\nexpect:\n" + "".join("  " + line + "\n" for line in block.strip().splitlines())
    a = load_expectation_text(block, source="a.yaml")
    b = load_expectation_text(wrapped, source="b.yaml")
    assert a.rules == b.rules and a.default == b.default
    assert a.expected("bgp", "node2", "node3", {}) == (Reach.BLOCKED, Where.DESTINATION_INGRESS)
    assert a.expected("etcd", "x", "y", {"x": frozenset({"node"}), "y": frozenset({"etcd"})})[0] is Reach.BLOCKED
    assert parse_expectation(a.to_dict(), source="rt").rules == a.rules


# -- validation errors: each names file and field ------------------------------------------

@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (["x"], "expect", "must be a mapping"),
        ({"default": "maybe"}, "expect.default", "'allowed' or 'blocked'"),
        ({"default": "unknown"}, "expect.default", "'allowed' or 'blocked'"),
        ({"defaults": "allowed"}, "expect.defaults", "unknown key"),
        ({"rules": {"check": "bgp"}}, "expect.rules", "must be a list"),
        ({"rules": ["bgp"]}, "expect.rules[0]", "must be a mapping"),
        ({"rules": [{"check": "bgp"}]}, "expect.rules[0].reach", "missing 'reach'"),
        ({"rules": [{"reach": "open"}]}, "expect.rules[0].reach", "'allowed' or 'blocked'"),
        ({"rules": [{"reach": "blocked", "where": "firewall"}]}, "expect.rules[0].where", "must be one of"),
        ({"rules": [{"reach": "allowed", "where": "network"}]}, "expect.rules[0].where", "only applies"),
        ({"rules": [{"reach": "blocked", "src": "a"}]}, "expect.rules[0].src", "unknown key"),
        ({"rules": [{"reach": "blocked", "check": "bpg"}]}, "expect.rules[0].check", "unknown check 'bpg'"),
        ({"rules": [{"reach": "blocked", "check": 179}]}, "expect.rules[0].check", "must be a name"),
        ({"rules": [{"reach": "blocked", "from": []}]}, "expect.rules[0].from", "must be a name"),
        ({"rules": [{"reach": "blocked", "to": "role:master"}]}, "expect.rules[0].to", "unknown role 'master'"),
        ({"rules": [{}, {"reach": "blocked", "from": "nodeX"}]}, "expect.rules[0].reach", "missing"),
    ],
)
def test_validation_errors(data, field, words):
    with pytest.raises(ConfigError) as info:
        parse_expectation(data, source="lab.yaml")
    assert info.value.file == "lab.yaml"
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(f"lab.yaml: {field}: ")


def test_missing_host_is_an_error_only_with_hosts_given():
    data = {"rules": [{"check": "bgp", "from": "node2", "to": "node9", "reach": "blocked"}]}
    parse_expectation(data, source="e.yaml")  # no hosts: any name is fine
    with pytest.raises(ConfigError, match=r"e.yaml: expect.rules\[0\].to: no host named 'node9'"):
        parse_expectation(data, source="e.yaml", hosts=ROLES)


def test_role_no_host_has_is_an_error_with_hosts_given():
    data = {"rules": [{"from": ["node1", "role:typha"], "reach": "blocked"}]}
    parse_expectation(data, source="e.yaml", hosts=ROLES)
    roles = {k: v - {"typha"} for k, v in ROLES.items()}
    with pytest.raises(ConfigError, match=r"expect.rules\[0\].from: no host has role 'typha'"):
        parse_expectation(data, source="e.yaml", hosts=roles)


def test_custom_checks_are_allowed_when_listed():
    data = {"rules": [{"check": "kubelet", "reach": "blocked"}]}
    with pytest.raises(ConfigError, match="unknown check 'kubelet'"):
        parse_expectation(data, source="e")
    e = parse_expectation(data, source="e", checks=["bgp", "kubelet"])
    assert e.expected("kubelet", "a", "b", {})[0] is Reach.BLOCKED


@pytest.mark.parametrize(
    ("text", "words"),
    [("rules: [", "not valid YAML"), ("", "is empty"), ("- a\n- b\n", "must be a mapping")],
)
def test_text_errors(text, words):
    with pytest.raises(ConfigError, match=words) as info:
        load_expectation_text(text, source="x.yaml")
    assert info.value.file == "x.yaml"


def test_standalone_field_paths_have_no_prefix():
    with pytest.raises(ConfigError) as info:
        load_expectation_text("rules:\n  - {reach: maybe}\n", source="x.yaml")
    assert info.value.field == "rules[0].reach"
