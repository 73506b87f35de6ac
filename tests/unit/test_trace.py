"""core/trace.py on trace messages and listings recorded from real namespaces
(tests/data/trace/record.py): the drop each case's trace points at, the rule it names, the trace
table's text, the fix lines."""

from __future__ import annotations

import json

import pytest
from helpers import DATA
from hypothesis import given
from hypothesis import strategies as st

from netprobe.core.iptables_save import iptables_form
from netprobe.core.trace import (
    PRIORITY_FIRST,
    Flow,
    NotNamed,
    RuleFound,
    TraceBook,
    TraceEvent,
    chain_rules,
    fix_lines,
    netdev_ingress_devices,
    netdev_trace_ruleset,
    packet_flow,
    parse_trace_messages,
    rule_found,
    trace_ruleset,
    trace_tables,
)

TRACES = DATA / "trace"
TABLE = "netprobe_trace_5ec0rded"


def recorded(name: str) -> tuple[dict, Flow, TraceBook]:
    doc = json.loads((TRACES / f"{name}.json").read_text())
    flow = Flow(**doc["flow"])
    book = TraceBook([flow])
    for hexed in doc["messages"]:
        for event in parse_trace_messages(bytes.fromhex(hexed)):
            book.add(event)
    return doc, flow, book


def named(name: str) -> tuple[Flow, RuleFound | NotNamed]:
    doc, flow, book = recorded(name)
    drop = book.drops[flow]
    rules = chain_rules(doc["listings"].get(f"{drop.family} {drop.table} {drop.chain}", ""))
    ipt = None
    if "iptables_nft_save" in doc:
        ipt = iptables_form(doc["iptables_nft_save"], drop.table, drop.chain, drop.handle, rules)
    return flow, rule_found(drop, rules, ipt)


def test_an_nft_rule_with_a_comment_is_named_and_the_comment_comes_out():
    _flow, found = named("nft_comment_drop")
    assert found == RuleFound("inet", "filter", "input", 3, 'tcp dport 179 drop comment "no bgp from outside"',
                              "no bgp from outside", "drop")
    assert found.to_dict() == {"family": "inet", "table": "filter", "chain": "input", "handle": 3,
                               "text": 'tcp dport 179 drop comment "no bgp from outside"',
                               "comment": "no bgp from outside", "verdict": "drop"}


def test_a_reject_rule_says_reject_although_the_kernel_traces_a_drop():
    _flow, found = named("nft_reject")
    assert (found.handle, found.text, found.comment, found.verdict) == (4, "udp dport 4789 reject", None, "reject")


def test_a_chain_policy_is_named_as_the_policy():
    _flow, found = named("chain_policy")
    assert found == RuleFound("inet", "filter", "input", None, "policy drop", None, "policy drop")


def test_an_iptables_nft_rule_is_named_in_both_forms_with_its_comment():
    """nft shows the rule without its comment (an xtables match): iptables-nft-save has it."""
    _flow, found = named("iptables_nft")
    assert found == RuleFound(
        "ip", "filter", "INPUT", 5, "tcp dport 179 counter drop", "no bgp from outside", "drop",
        '-A INPUT -p tcp -m tcp --dport 179 -m comment --comment "no bgp from outside" -j DROP', 2)
    assert found.to_dict()["iptables"].startswith("-A INPUT") and found.to_dict()["position"] == 2


def test_the_senders_own_output_drop_is_named():
    doc, flow, book = recorded("output_drop")
    assert doc["direction"] == "egress" and doc["send_errors"] == [1]  # EPERM: our OUTPUT refused it
    _flow, found = named("output_drop")
    assert (found.family, found.chain, found.handle, found.comment) == ("inet", "output", 2, "no typha from here")


def test_a_netdev_ingress_drop_is_named_from_our_netdev_chain_ahead_of_it():
    _flow, found = named("netdev_ingress")
    assert found == RuleFound("netdev", "edge", "in", 2, 'ip protocol ipencap drop comment "no ipip at the edge"',
                              "no ipip at the edge", "drop")


def test_iptables_legacy_is_invisible_to_the_trace():
    """Three packets, one trace id (the kernel reuses skb addresses): each re-tied by its headers,
    none dropped in nftables, and nothing but our own marking chain saw them."""
    doc, flow, book = recorded("iptables_legacy")
    events = [e for m in doc["messages"] for e in parse_trace_messages(bytes.fromhex(m))]
    assert len({e.trace_id for e in events}) == 1 and sum(e.headers for e in events) == 3
    assert flow in book.seen and flow not in book.drops and flow not in book.last


def test_other_traced_packets_are_not_ours():
    doc, flow, book = recorded("foreign_trace")
    assert flow not in book.drops and book.foreign == 5  # the other table's ping, all five events
    last = book.last[flow]
    assert (last.table, last.chain, last.handle, last.verdict) == ("filter", "input", 2, "accept")


def test_a_packet_reusing_an_id_is_retied_by_its_headers():
    ours = Flow("tcp", "198.51.100.1", "198.51.100.2", None, 179)
    book = TraceBook([ours])
    book.add(TraceEvent(7, "inet", "t", "c", "rule", 1, "continue", True, ours))
    book.add(TraceEvent(7, "inet", "t", "c", "rule", 2, "continue", True, None))  # a ping now holds id 7
    book.add(TraceEvent(7, "inet", "t", "c", "rule", 3, "drop", False, None))
    assert ours not in book.drops and book.foreign == 2


def test_a_trace_table_and_its_netdev_twin_are_listed_and_ours_are_not_netdev_chains():
    doc, _flow, _book = recorded("netdev_ingress")
    assert trace_tables(doc["tables"]) == [("inet", TABLE), ("netdev", TABLE)]
    assert netdev_ingress_devices(doc["chains"]) == ["eth0"]  # edge's; our dev0 chain is skipped
    assert netdev_ingress_devices(recorded("nft_comment_drop")[0]["chains"]) == []


def test_netdev_devices_in_every_spelling():
    listing = ('table netdev a {\n\tchain x {\n\t\ttype filter hook ingress devices = { "eth1", eth2 } priority 0;\n'
               '\t}\n}\ntable netdev b {\n\tchain y {\n\t\ttype filter hook ingress device eth3 priority -5;\n\t}\n'
               '\tchain z {\n\t\ttype filter hook egress device "eth4" priority 0;\n\t}\n}\n')
    assert netdev_ingress_devices(listing) == ["eth1", "eth2", "eth3"]


def test_the_trace_table_marks_exactly_the_flows_in_sets_first_at_each_hook():
    flows = [(Flow("tcp", "198.51.100.1", "198.51.100.2", 40001, 179), "ingress"),
             (Flow("tcp", "198.51.100.3", "198.51.100.2", None, 179), "ingress"),
             (Flow("ipip", "198.51.100.1", "198.51.100.2"), "ingress"),
             (Flow("udp", "2001:db8::2", "2001:db8::1", None, 4789), "egress")]
    text = trace_ruleset(TABLE, flows)
    assert text == f"""table inet {TABLE} {{
  set ingress_tcp4sd {{
    type ipv4_addr . ipv4_addr . inet_service . inet_service
    elements = {{ 198.51.100.1 . 198.51.100.2 . 40001 . 179 }}
  }}
  set ingress_tcp4d {{
    type ipv4_addr . ipv4_addr . inet_service
    elements = {{ 198.51.100.3 . 198.51.100.2 . 179 }}
  }}
  set ingress_ipip4 {{
    type ipv4_addr . ipv4_addr
    elements = {{ 198.51.100.1 . 198.51.100.2 }}
  }}
  set egress_udp6d {{
    type ipv6_addr . ipv6_addr . inet_service
    elements = {{ 2001:db8::2 . 2001:db8::1 . 4789 }}
  }}
  chain ingress {{
    type filter hook prerouting priority {PRIORITY_FIRST}; policy accept;
    ip saddr . ip daddr . tcp sport . tcp dport @ingress_tcp4sd meta nftrace set 1
    ip saddr . ip daddr . tcp dport @ingress_tcp4d meta nftrace set 1
    meta l4proto 4 ip saddr . ip daddr @ingress_ipip4 meta nftrace set 1
  }}
  chain egress {{
    type filter hook output priority {PRIORITY_FIRST}; policy accept;
    ip6 saddr . ip6 daddr . udp dport @egress_udp6d meta nftrace set 1
  }}
}}
"""
    assert netdev_trace_ruleset(TABLE, flows[3:], ["eth0"]) is None  # egress flows pass through output first
    netdev = netdev_trace_ruleset(TABLE, flows[:1], ["eth0", 'ev"il'])
    assert 'hook ingress device "eth0"' in netdev and 'ev"il' not in netdev


def test_a_rule_gone_before_it_was_listed_is_not_named():
    doc, flow, book = recorded("nft_comment_drop")
    assert rule_found(book.drops[flow], []) == NotNamed(
        "inet filter input handle 3 dropped it, but the rule was gone when listed")


def test_counters_are_zeroed_out_of_rule_text():
    listing = "table ip t {\n\tchain c { # handle 1\n\t\ttcp dport 1  counter packets 12 bytes 720 drop # handle 7\n"
    assert chain_rules(listing) == [(7, "tcp dport 1 counter drop")]


@given(st.binary(max_size=400))
def test_trace_parsing_survives_any_bytes(data):
    for event in parse_trace_messages(data):
        assert event.kind in ("rule", "policy", "return")


@given(st.binary(max_size=60), st.one_of(st.none(), st.binary(max_size=24)))
def test_packet_parsing_survives_any_bytes(network, transport):
    flow = packet_flow(network, transport)
    assert flow is None or flow.proto in ("tcp", "udp", "ipip")


def test_truncated_messages_are_skipped_not_raised():
    data = bytes.fromhex(recorded("nft_comment_drop")[0]["messages"][-1])
    assert len(parse_trace_messages(data)) == 1
    assert parse_trace_messages(data[:-9]) == []


# ---------------------------------------------------------------- fix lines

BGP = Flow("tcp", "192.0.2.1", "192.0.2.2", 40001, 179)


@pytest.mark.parametrize("rule,hook,nft,iptables", [
    (RuleFound("inet", "filter", "input", 3, "tcp dport 179 drop", None, "drop"), "input",
     "nft insert rule inet filter input position 3 ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables -I INPUT -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("inet", "filter", "input", None, "policy drop", None, "policy drop"), "input",
     "nft add rule inet filter input ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables -I INPUT -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("ip", "filter", "INPUT", 5, "tcp dport 179 counter drop", None, "drop", "-A INPUT ... -j DROP", 2),
     "input", "nft insert rule ip filter INPUT position 5 ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables-nft -I INPUT 2 -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("ip", "raw", "PREROUTING", 9, "tcp dport 179 drop", None, "drop", "-A PREROUTING ... -j DROP", 1),
     "input", "nft insert rule ip raw PREROUTING position 9 ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables-nft -t raw -I PREROUTING 1 -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("iptables-legacy", "filter", "cali-INPUT", None, "-A cali-INPUT -j DROP", None, "drop",
               "-A cali-INPUT -j DROP", 4), "input",
     "nft insert rule inet filter input ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables-legacy -I cali-INPUT 4 -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("iptables-legacy", "filter", "INPUT", None, "policy drop", None, "policy drop", "-P INPUT DROP"),
     "input", "nft insert rule inet filter input ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables-legacy -A INPUT -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (None, "output", "nft insert rule inet filter output ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept",
     "iptables -I OUTPUT -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
    (RuleFound("inet", "my table", "9in", 2, "drop", None, "drop"), "input",
     'nft insert rule inet "my table" "9in" position 2 ip saddr 192.0.2.1 ip daddr 192.0.2.2 tcp dport 179 accept',
     "iptables -I INPUT -s 192.0.2.1 -d 192.0.2.2 -p tcp -m tcp --dport 179 -j ACCEPT"),
])
def test_fix_lines_go_before_the_rule_that_dropped_it(rule, hook, nft, iptables):
    assert fix_lines(BGP, hook, rule) == {"nft": nft, "iptables": iptables}


def test_fix_lines_for_ipip_and_ipv6():
    assert fix_lines(Flow("ipip", "192.0.2.1", "192.0.2.2"), "forward", None) == {
        "nft": "nft insert rule inet filter forward ip saddr 192.0.2.1 ip daddr 192.0.2.2 meta l4proto 4 accept",
        "iptables": "iptables -I FORWARD -s 192.0.2.1 -d 192.0.2.2 -p 4 -j ACCEPT"}
    assert fix_lines(Flow("udp", "2001:db8::1", "2001:db8::2", None, 51821), "input", None) == {
        "nft": "nft insert rule inet filter input ip6 saddr 2001:db8::1 ip6 daddr 2001:db8::2 udp dport 51821 accept",
        "iptables": "ip6tables -I INPUT -s 2001:db8::1 -d 2001:db8::2 -p udp -m udp --dport 51821 -j ACCEPT"}


def test_a_flow_names_its_protocol():
    with pytest.raises(ValueError):
        Flow("icmp", "192.0.2.1", "192.0.2.2")
