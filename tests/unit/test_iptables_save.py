"""core/iptables_save.py: the iptables-legacy rule whose counter moved by exactly the packets sent
(recorded `iptables-legacy-save -c` from tests/data/trace/record.py, and made-up counters for
the cases a recording cannot pin down), and the iptables form of an iptables-nft rule."""

from __future__ import annotations

import json

from helpers import DATA

from netprobe.core.iptables_save import iptables_form, legacy_rules, parse_save
from netprobe.core.trace import Flow, RuleFound

LEGACY = json.loads((DATA / "trace" / "iptables_legacy.json").read_text())
A, B = "192.0.2.1", "192.0.2.2"


def save(*lines: str, policy: str = "ACCEPT [0:0]") -> str:
    return "\n".join(["*filter", f":INPUT {policy}", ":OUTPUT ACCEPT [0:0]", ":cali-INPUT - [0:0]", *lines,
                      "COMMIT", ""])


def test_the_recorded_legacy_drop_is_named_by_its_counter():
    flow = Flow(**LEGACY["flow"])
    found = legacy_rules(LEGACY["legacy_before"], LEGACY["legacy_after"], {flow: ("ingress", LEGACY["probes"])})
    spec = '-A INPUT -p udp -m udp --dport 8472 -m comment --comment "no flannel vxlan" -j DROP'
    assert found == {flow: RuleFound("iptables-legacy", "filter", "INPUT", None, spec, "no flannel vxlan", "drop",
                                     spec, 2)}


def test_parsing_keeps_positions_counters_and_policies():
    saved = parse_save(LEGACY["legacy_after"])
    assert [(r.chain, r.position, r.packets, r.target) for r in saved.rules] == [
        ("INPUT", 1, 0, "ACCEPT"), ("INPUT", 2, 3, "DROP")]
    assert [(p.chain, p.policy) for p in saved.policies] == [("INPUT", "DROP"), ("FORWARD", "ACCEPT"),
                                                             ("OUTPUT", "ACCEPT")]


def test_a_counter_that_moved_by_other_than_the_probes_names_nothing():
    flow = Flow("udp", A, B, None, 8472)
    found = legacy_rules(LEGACY["legacy_before"], LEGACY["legacy_after"], {flow: ("ingress", 2)})
    assert found == {flow: "no iptables-legacy drop rule counted exactly the 2 packet(s) sent"}


def test_a_rule_that_cannot_match_the_flow_is_not_named():
    flow = Flow("tcp", A, B, None, 179)  # the moved rule is -p udp
    found = legacy_rules(LEGACY["legacy_before"], LEGACY["legacy_after"], {flow: ("ingress", 3)})
    assert found == {flow: "no iptables-legacy drop rule that could match it counted a packet (sent 3)"}


def test_output_rules_do_not_name_an_ingress_flow():
    before = save("[0:0] -A OUTPUT -p tcp -j DROP")
    after = save("[2:120] -A OUTPUT -p tcp -j DROP")
    flow = Flow("tcp", A, B, None, 179)
    assert isinstance(legacy_rules(before, after, {flow: ("ingress", 2)})[flow], str)
    assert legacy_rules(before, after, {flow: ("egress", 2)})[flow].chain == "OUTPUT"


def test_flows_share_a_rule_and_a_policy_by_their_counts():
    """bgp (2 packets) and typha (1) both match the cali-INPUT rule, which counted 2; the policy
    counted 1: only bgp -> rule, typha -> policy fits both counters exactly."""
    rule = "-A cali-INPUT -s 192.0.2.0/24 -p tcp -m multiport --dports 179,5473 -j DROP"
    before = save(f"[5:300] {rule}", policy="DROP [10:600]")
    after = save(f"[7:420] {rule}", policy="DROP [11:660]")
    bgp, typha = Flow("tcp", A, B, None, 179), Flow("tcp", A, B, None, 5473)
    found = legacy_rules(before, after, {bgp: ("ingress", 2), typha: ("ingress", 1)})
    assert found[bgp].text == rule and found[bgp].position == 1
    assert found[typha].verdict == "policy drop" and found[typha].iptables == "-P INPUT DROP"


def test_two_flows_on_one_rule_add_up():
    rule = "-A INPUT -p tcp -j REJECT --reject-with tcp-reset"
    flows = {Flow("tcp", A, B, None, 179): ("ingress", 3), Flow("tcp", A, B, None, 2379): ("ingress", 3)}
    found = legacy_rules(save(f"[0:0] {rule}"), save(f"[6:360] {rule}"), flows)
    assert {f.verdict for f in found.values()} == {"reject"}


def test_counters_that_fit_two_answers_name_nothing():
    rules = ["-A INPUT -p udp -j DROP", "-A INPUT -s 192.0.2.0/24 -j DROP"]
    before = save(*(f"[0:0] {r}" for r in rules))
    after = save(*(f"[1:60] {r}" for r in rules))
    one, two = Flow("udp", A, B, None, 4789), Flow("udp", A, B, None, 8472)
    found = legacy_rules(before, after, {one: ("ingress", 1), two: ("ingress", 1)})
    assert found == dict.fromkeys((one, two), "iptables-legacy counters fit more than one rule (other traffic, "
                                              "or flows alike)")


def test_negated_and_unknown_matches_do_not_exclude_a_rule():
    rule = '-A INPUT ! -s 198.51.100.0/24 -m set --match-set blocked src -p tcp -m tcp ! --dport 22 -j DROP'
    flow = Flow("tcp", A, B, None, 179)
    found = legacy_rules(save(f"[0:0] {rule}"), save(f"[1:60] {rule}"), {flow: ("ingress", 1)})
    assert isinstance(found[flow], RuleFound)


def test_port_ranges_and_lists_are_read():
    rule = "-A INPUT -p udp -m multiport --dports 4000:4999,8472 -j DROP"
    inside, outside = Flow("udp", A, B, None, 4789), Flow("udp", A, B, None, 5000)
    found = legacy_rules(save(f"[0:0] {rule}"), save(f"[1:60] {rule}"), {inside: ("ingress", 1),
                                                                          outside: ("ingress", 1)})
    assert isinstance(found[inside], RuleFound) and isinstance(found[outside], str)


def test_the_iptables_nft_form_is_taken_by_position_only_when_the_chains_agree():
    recorded = json.loads((DATA / "trace" / "iptables_nft.json").read_text())
    nft_rules = [(4, "udp dport 53 counter accept"), (5, "tcp dport 179 counter drop")]
    form = iptables_form(recorded["iptables_nft_save"], "filter", "INPUT", 5, nft_rules)
    assert form == ('-A INPUT -p tcp -m tcp --dport 179 -m comment --comment "no bgp from outside" -j DROP',
                    "no bgp from outside", 2)
    assert iptables_form(recorded["iptables_nft_save"], "filter", "INPUT", 5, nft_rules[1:]) is None
    assert iptables_form(recorded["iptables_nft_save"], "filter", "INPUT", None, nft_rules) == \
        ("-P INPUT ACCEPT", None, None)
