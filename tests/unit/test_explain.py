"""A blocked cell's explanation: its JSON (strict, additive), its words, and the explain round's
decisions (who does what for which cell, the hop TTL-limited copies found, the answers joined)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from helpers import cell, result
from netprobe.core.cells import Cell, Evidence
from netprobe.core.checks import CHECKS
from netprobe.core.explain import Explain, Fix, Hop
from netprobe.core.explain_round import (
    HOPS_PER_SOURCE, NO_HOP, NOT_RESENT, RETURN_PATH, Resent, expected_packets, finish_explain, last_hop,
    plan_explain, probe_flow,
)
from netprobe.core.fields import InvalidReport
from netprobe.core.result import Icmp, ReplyKind, Result
from netprobe.core.trace import Flow, NotNamed, RuleFound, fix_lines
from netprobe.core.wire import SLOT_BASE
from netprobe.errors import ConfigError

RULE = RuleFound("inet", "filter", "input", 7, 'tcp dport 179 drop comment "no bgp"', "no bgp", "drop")
POLICY = RuleFound("inet", "filter", "input", None, "policy drop", None, "policy drop")
LEGACY = RuleFound("iptables-legacy", "filter", "INPUT", None, "-A INPUT -p tcp -m tcp --dport 179 -j DROP", None,
                   "drop")
FULL = Explain(RULE, Hop("192.0.2.1", 2, "core"), 1400, Fix("nft insert rule x", "iptables -I INPUT y"), "a note")
HOSTS = {"a": "192.0.2.10", "b": "192.0.2.11", "c": "192.0.2.12", "d": "192.0.2.13"}
ADDRESSES = {(host, 4): address for host, address in HOSTS.items()}
CHECKMAP = {c.id: c for c in CHECKS.values()}


# ------------------------------------------------------------------ JSON


def test_explain_round_trips_and_reads_absent_parts_as_none():
    assert Explain.from_dict(FULL.to_dict()) == FULL
    owned = Explain(rule=dataclasses.replace(LEGACY, iptables="-A INPUT -p tcp -m tcp --dport 179 -j DROP", position=3))
    assert Explain.from_dict(owned.to_dict()) == owned  # iptables' own rules keep their form and number
    assert Explain.from_dict({}) == Explain()
    assert set(Explain().to_dict()) == {"rule", "hop", "path_mtu", "fix", "note"}


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["hop"].update(address="not-an-ip"), "explain.hop.address"),
    (lambda d: d["hop"].update(ttl=0), "explain.hop.ttl"),
    (lambda d: d["rule"].pop("chain"), "explain.rule.chain"),
    (lambda d: d["rule"].update(handle=-1), "explain.rule.handle"),
    (lambda d: d["fix"].pop("iptables"), "explain.fix.iptables"),
    (lambda d: d.update(path_mtu=70000), "explain.path_mtu"),
    (lambda d: d.update(note=["x"]), "explain.note"),
])
def test_a_malformed_explanation_names_its_field(change, field):
    d = json.loads(json.dumps(FULL.to_dict()))
    change(d)
    with pytest.raises(InvalidReport) as info:
        Explain.from_dict(d)
    assert info.value.field == field


def test_cells_write_explain_only_when_they_have_one():
    plain = cell("bgp", "a", "b", "blocked", "network", arrived=False)
    assert "explain" not in plain.to_dict()
    explained = dataclasses.replace(plain, explain=FULL)
    assert Cell.from_dict(explained.to_dict()) == explained
    assert Cell.from_dict(plain.to_dict()).explain is None


@pytest.mark.parametrize("v1", [False, True])
def test_results_keep_explanations_in_v1_and_in_v2_detail(v1):
    blocked = dataclasses.replace(cell("bgp", "a", "b", "blocked", "destination-ingress", arrived=True,
                                       accepted=False), explain=FULL)
    allowed = cell("bgp", "b", "a", "allowed", None, "open", reply=ReplyKind.SYN_ACK, reply_arrived=True,
                   reply_accepted=True, arrived=True, accepted=True, answered=True, left=True, reached_ip=True)
    r = result(blocked, allowed)
    doc = r.to_dict_v1() if v1 else r.to_dict()
    if not v1:
        assert [c["explain"] for c in doc["detail"]] == [FULL.to_dict()]  # the blocked cell is in the detail
    again = Result.from_dict(json.loads(json.dumps(doc)))
    assert again.cell("bgp", "a", "b").explain == FULL
    assert again.cell("bgp", "b", "a").explain is None


def test_a_bad_explanation_in_a_result_file_is_one_config_error():
    r = result(dataclasses.replace(cell("bgp", "a", "b", "blocked", "network"), explain=FULL)).to_dict()
    r["detail"][0]["explain"]["hop"]["ttl"] = "two"
    with pytest.raises(ConfigError, match=r"detail\[0\]\.explain\.hop\.ttl"):
        Result.from_dict(r)


# ------------------------------------------------------------------ words


@pytest.mark.parametrize(("explain", "words"), [
    (Explain(rule=RULE), 'inet filter input handle 7 `tcp dport 179 drop comment "no bgp"`'),
    (Explain(rule=dataclasses.replace(RULE, text="tcp dport 179 drop")),
     'inet filter input handle 7 `tcp dport 179 drop` (comment "no bgp")'),
    (Explain(rule=POLICY), "inet filter input: chain policy drop"),
    (Explain(rule=LEGACY), "iptables-legacy filter INPUT `-A INPUT -p tcp -m tcp --dport 179 -j DROP`"),
    (Explain(hop=Hop("192.0.2.1", 2)), "died after 192.0.2.1 (hop 2)"),
    (Explain(hop=Hop("192.0.2.1", 2, "core")), "died after 192.0.2.1 (hop 2, core)"),
    (Explain(hop=Hop("192.0.2.1", None)), "stopped at 192.0.2.1 (its ICMP error)"),
    (Explain(path_mtu=1400), "path MTU 1400"),
    (Explain(note="a netdev/tc drop: not traced"), "a netdev/tc drop: not traced"),
    (Explain(), ""),
])
def test_explanation_words(explain, words):
    assert explain.words() == words


def test_describe_cell_ends_with_the_explanation_and_the_fix_comes_under_it():
    from netprobe.report.words import describe_cell, describe_with_fix, fix_lines as fix_words

    c = dataclasses.replace(cell("bgp", "node-2", "node-3", "blocked", "destination-ingress", arrived=True,
                                 accepted=False), explain=Explain(fix=Fix("nft A", "iptables B"), note="not named"))
    assert describe_cell(c) == "bgp node-2 -> node-3 blocked at node-3's INPUT (filtered): not named"
    assert fix_words(c) == ["fix (not applied): nft A", "or with iptables: iptables B"]
    assert describe_with_fix(c).splitlines()[1:] == fix_words(c)
    unexplained = dataclasses.replace(c, explain=None)
    assert describe_cell(unexplained) == "bgp node-2 -> node-3 blocked at node-3's INPUT (filtered)"
    assert fix_words(unexplained) == []


def test_the_fix_leads_with_the_tool_that_owns_the_rule():
    fix = Fix("nft X", "iptables-nft Y")
    assert Explain(rule=RULE, fix=fix).fix_words() == ["fix (not applied): nft X"]  # an iptables line can't undo it
    assert Explain(fix=fix).fix_words() == ["fix (not applied): nft X", "or with iptables: iptables-nft Y"]
    owned = dataclasses.replace(RULE, family="ip", iptables="-A INPUT -p tcp -j DROP", position=2)
    assert Explain(rule=owned, fix=fix).fix_words() == ["fix (not applied): iptables-nft Y", "or with nft: nft X"]
    legacy = dataclasses.replace(LEGACY, iptables="-A INPUT -p tcp -j DROP", position=1)
    assert Explain(rule=legacy, fix=fix).fix_words() == ["fix (not applied): iptables-nft Y"]  # no nft rule undoes it
    assert Explain(rule=RULE).fix_words() == []


# ------------------------------------------------------------------ flows and hops


def test_a_probes_flow_is_its_outer_header_with_the_slot_as_source_port():
    assert probe_flow(CHECKS["bgp"], "192.0.2.10", "192.0.2.11", 0x10005) == Flow("tcp", "192.0.2.10", "192.0.2.11",
                                                                                SLOT_BASE | 5, 179)
    assert probe_flow(CHECKS["vxlan"], "192.0.2.10", "192.0.2.11", 1).proto == "udp"
    assert probe_flow(CHECKS["ipip"], "192.0.2.10", "192.0.2.11", 1) == Flow("ipip", "192.0.2.10", "192.0.2.11",
                                                                          None, None)
    assert probe_flow(CHECKS["bgp"], "192.0.2.10", "192.0.2.11", None).sport is None  # what a fix allows


def exceeded(sender):
    return Icmp(11, 0, sender)


def test_the_highest_ttl_answered_is_the_last_hop():
    answers = [(1, exceeded("192.0.2.1")), (2, exceeded("198.51.100.1")), (3, None), (4, None)]
    assert last_hop(answers, "203.0.113.5") == (Hop("198.51.100.1", 2), None)


def test_silent_hops_below_the_last_are_named():
    hop, note = last_hop([(1, None), (2, exceeded("198.51.100.1")), (3, None)], "203.0.113.5")
    assert hop == Hop("198.51.100.1", 2) and note == "hops 1 did not answer (a router that sends no ICMP, or its rate limit)"


def test_a_routers_unreachable_names_it_without_a_ttl():
    assert last_hop([(1, None), (2, Icmp(3, 13, "192.0.2.1"))], "203.0.113.5") == (Hop("192.0.2.1", None), None)


def test_no_answer_or_the_target_answering_says_so():
    assert last_hop([(1, None), (2, None)], "203.0.113.5") == (None, NO_HOP)
    hop, note = last_hop([(1, Icmp(3, 3, "203.0.113.5"))], "203.0.113.5")
    assert hop is None and "reached 203.0.113.5" in note


# ------------------------------------------------------------------ the plan


def plan(cells, **kw):
    return plan_explain(cells, addresses=ADDRESSES, sources={}, checks=CHECKMAP,
                        first_ids={h: 100 for h in HOSTS}, **kw)


def test_each_blocked_place_asks_the_agent_that_can_answer():
    egress = cell("bgp", "a", "b", "blocked", "source-egress", sent=False)
    ingress = cell("bgp", "a", "c", "blocked", "destination-ingress", arrived=True, accepted=False)
    network = cell("bgp", "b", "c", "blocked", "network", arrived=False)
    allowed = cell("bgp", "c", "a", "allowed")
    p = plan([egress, ingress, network, allowed])
    assert [(r.cell, r.probe_id, r.trace, r.hops) for r in p.resends["a"]] == [
        (egress.key, 100, True, False), (ingress.key, 101, False, False)]
    assert [(r.cell, r.hops) for r in p.resends["b"]] == [(network.key, True)]
    # the destination traces exactly the flow its source will re-send (source port = the id's slot)
    assert p.arms == {"c": [Flow("tcp", "192.0.2.10", "192.0.2.12", SLOT_BASE | 101, 179)]}
    assert set(p.cells) == {egress.key, ingress.key, network.key} and not p.settled


def test_what_needs_no_agent_is_settled_at_once():
    router_icmp = cell("bgp", "a", "b", "blocked", "network", "rejected", arrived=False, reply=ReplyKind.ICMP,
                       icmp=Icmp(3, 13, "192.0.2.1"))
    returning = cell("bgp", "a", "c", "blocked", "return-path", arrived=True, accepted=True)
    mtu = cell("ipip", "c", "a", "blocked", "network", evidence=Evidence(arrived=False, path_mtu=1400))
    p = plan([router_icmp, returning, mtu], names={"192.0.2.1": "core"})
    assert p.empty
    assert p.settled == {
        router_icmp.key: Explain(hop=Hop("192.0.2.1", None, "core")),
        returning.key: Explain(note=RETURN_PATH),
        mtu.key: Explain(path_mtu=1400),
    }


def test_a_drop_below_ip_is_traced_and_said_so_when_no_rule_is_named():
    """An nft netdev rule is named like any other; a tc or eBPF drop is not, and no fix undoes it."""
    below_in = cell("bgp", "b", "a", "blocked", "destination-ingress",
                    evidence=Evidence(arrived=True, accepted=False, reached_ip=False))
    below_out = cell("bgp", "b", "c", "blocked", "source-egress", evidence=Evidence(sent=True, left=False))
    netdev = cell("bgp", "c", "a", "blocked", "destination-ingress",
                  evidence=Evidence(arrived=True, accepted=False, reached_ip=False))
    p = plan([below_in, below_out, netdev])
    assert not p.settled and len(p.arms["a"]) == 2 and p.resends["b"][1].trace
    named = dataclasses.replace(RULE, family="netdev", table="edge", chain="ingress")
    out = finish_explain(p, resent={"b": {100: Resent(100, "192.0.2.11", 1), 101: Resent(101, "192.0.2.11", 1,
                                                                                         NotNamed("no trace"))},
                                    "c": {100: Resent(100, "192.0.2.12", 1)}},
                         rules={"a": {p.flows[below_in.key]: NotNamed("no trace within 0.5 s"),
                                      p.flows[netdev.key]: named}},
                         failed={}, addresses=ADDRESSES, checks=CHECKMAP)
    assert out[below_in.key] == Explain(note="a netdev/tc drop: not traced")
    assert out[below_out.key] == Explain(note="dropped below IP on the way out (netdev/tc egress): not traced")
    assert out[netdev.key].rule == named and out[netdev.key].fix is not None


def test_a_source_traces_the_hops_of_at_most_six_network_cells():
    checks = ["bgp", "typha", "apiserver", "etcd"]
    cells = [cell(check, "a", dst, "blocked", "network", arrived=False) for dst in "bcd" for check in checks]
    p = plan(cells)
    assert sum(r.hops for r in p.resends["a"]) == HOPS_PER_SOURCE
    untraced = [k for k, e in p.settled.items() if "hop not traced" in (e.note or "")]
    assert len(untraced) == len(cells) - HOPS_PER_SOURCE


def test_silent_unknown_cells_get_copies_only_when_asked():
    silent = cell("bgp", "a", "b", "unknown", None, "filtered")
    assert plan([silent]).empty
    p = plan([silent], silent_hops=True)
    assert [(r.cell, r.hops) for r in p.resends["a"]] == [(silent.key, True)]
    assert p.cells[silent.key].where is None  # the cell itself is not made "network"


# ------------------------------------------------------------------ the answers


def test_answers_become_explanations_with_their_fix():
    egress = cell("bgp", "a", "b", "blocked", "source-egress", sent=False)
    ingress = cell("etcd", "b", "a", "blocked", "destination-ingress", arrived=True, accepted=False)
    network = cell("bgp", "c", "d", "blocked", "network", arrived=False)
    p = plan([egress, ingress, network])
    flow = p.arms["a"][0]
    resent = {"a": {100: Resent(100, "192.0.2.10", 0, RULE)},
              "b": {100: Resent(100, "192.0.2.11", 1)},
              "c": {100: Resent(100, "192.0.2.12", 1, hop=Hop("192.0.2.1", 1), hop_note=None)}}
    assert expected_packets(p, resent) == {"a": {flow: 1}}
    out = finish_explain(p, resent=resent, rules={"a": {flow: POLICY}}, failed={}, addresses=ADDRESSES,
                         checks=CHECKMAP, names={"192.0.2.1": "core"})
    any_port = Flow("tcp", "192.0.2.10", "192.0.2.11", None, 179)
    assert out[egress.key] == Explain(rule=RULE, fix=Fix(**fix_lines(any_port, "output", RULE)))
    assert out[ingress.key].rule == POLICY
    assert out[ingress.key].fix == Fix(**fix_lines(Flow("tcp", "192.0.2.11", "192.0.2.10", None, 2379), "input",
                                                   POLICY))
    assert out[network.key] == Explain(hop=Hop("192.0.2.1", 1, "core"))


def test_failures_and_unnamed_rules_say_why():
    egress = cell("bgp", "a", "b", "blocked", "source-egress", sent=False)
    ingress = cell("bgp", "c", "d", "blocked", "destination-ingress", arrived=True, accepted=False)
    resent_nothing = cell("bgp", "b", "c", "blocked", "destination-ingress", arrived=True, accepted=False)
    p = plan([egress, ingress, resent_nothing])
    out = finish_explain(p, resent={"b": {100: Resent(100, "192.0.2.11", 0)}, "c": {100: Resent(100, "192.0.2.12", 1)}},
                         rules={"c": {p.flows[resent_nothing.key]: NotNamed("no nftables trace support")}},
                         failed={"a": "agent a: timed out", "d": "agent d: HTTP 404"},
                         addresses=ADDRESSES, checks=CHECKMAP)
    assert out[egress.key].note == "not explained: agent a: timed out" and out[egress.key].fix is not None
    assert out[ingress.key].note == "not explained: agent d: HTTP 404" and out[ingress.key].rule is None
    assert out[resent_nothing.key].note == ("no nftables trace support; "
                                            + NOT_RESENT.format(src="b", dst="c"))


def test_the_evidence_path_mtu_is_kept_with_whatever_else_was_found():
    c = cell("ipip", "a", "b", "blocked", "destination-ingress", evidence=Evidence(arrived=True, accepted=False,
                                                                                path_mtu=1400))
    p = plan([c])
    out = finish_explain(p, resent={"a": {100: Resent(100, "192.0.2.10", 1)}}, rules={"b": {p.flows[c.key]: RULE}},
                         failed={}, addresses=ADDRESSES, checks=CHECKMAP)
    assert (out[c.key].rule, out[c.key].path_mtu) == (RULE, 1400)


def test_the_resend_waits_the_window_the_mesh_adapted_to():
    from netprobe.core.prober import adapted_window

    store = result(cell("bgp", "a", "b", "allowed", rtt_ms=2.5), cell("bgp", "b", "a", "allowed", rtt_ms=80),
                   cell("bgp", "a", "c", "blocked", "network")).store
    assert store.max_rtt_ms() == 80
    assert adapted_window(1.0, store.max_rtt_ms() / 1000) == pytest.approx(0.32)
    assert adapted_window(1.0, 0.001) == 0.2 and adapted_window(1.0, None) == 1.0
    assert result(cell("bgp", "a", "c", "blocked", "network")).store.max_rtt_ms() is None


def test_ipv6_cells_use_their_addresses_and_icmpv6():
    addresses = {**ADDRESSES, ("a", 6): "2001:db8::10", ("b", 6): "2001:db8::11"}
    ingress6 = dataclasses.replace(cell("bgp", "a", "b", "blocked", "destination-ingress", arrived=True,
                                        accepted=False), family=6)
    p = plan_explain([ingress6], addresses=addresses, sources={}, checks=CHECKMAP, first_ids={"a": 7})
    assert p.arms == {"b": [Flow("tcp", "2001:db8::10", "2001:db8::11", SLOT_BASE | 7, 179)]}
    assert p.resends["a"][0].address == "2001:db8::11"
    # ICMPv6 time exceeded is type 3, unreachable type 1 (RFC 4443); a hop limit counts like a TTL
    assert last_hop([(1, Icmp(3, 0, "2001:db8::1")), (2, None)], "2001:db8::11") == (Hop("2001:db8::1", 1), None)
    assert last_hop([(1, Icmp(1, 1, "2001:db8::1"))], "2001:db8::11") == (Hop("2001:db8::1", None), None)
    assert last_hop([(1, Icmp(11, 0, "2001:db8::1"))], "2001:db8::11") == (None, NO_HOP)  # not ICMPv6's
