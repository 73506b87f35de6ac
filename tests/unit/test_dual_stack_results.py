"""Dual stack in the result model and every format: cells carry their family, a matrix per check
and family ("bgp (IPv6)"), results without a family read as IPv4 (docs/design.md, "Result JSON")."""

from __future__ import annotations

import json

import pytest

from helpers import cell, sample_result
from netprobe.core.expect import compare, parse_expectation
from netprobe.core.result import Evidence, HostInfo, Icmp, Reach, ReplyKind, Result, diff
from netprobe.core.verdicts import from_changes, from_mismatches
from netprobe.errors import ConfigError
from netprobe.report import render
from netprobe.report.words import describe_cell

HOSTS = [HostInfo("a", "192.0.2.1", ("node",), "2001:db8::1"), HostInfo("b", "192.0.2.2", ("node",), "2001:db8::2"),
         HostInfo("c", "2001:db8::3", ("node",), "2001:db8::3")]
CHECKS = [{"id": "bgp", "description": "Calico networking (BGP)", "proto": "tcp", "port": 179}]
PLAIN = dict(sent=True, reply=ReplyKind.SYN_ACK, reply_arrived=True, reply_accepted=True, arrived=True,
             accepted=True, answered=True)
REJECTED6 = Evidence(reply=ReplyKind.ICMP, icmp=Icmp(1, 1, "2001:db8::2"), reply_arrived=True, reply_accepted=True,
                     arrived=True, accepted=False, answered=True)


def six(c):
    return type(c)(**{**c.__dict__, "family": 6})


def dual_result(blocked6: bool = True) -> Result:
    cells = [cell("bgp", "a", "b", rtt_ms=0.2, **PLAIN), cell("bgp", "b", "a", rtt_ms=0.3, **PLAIN),
             six(cell("bgp", "a", "c", rtt_ms=0.4, **PLAIN)), six(cell("bgp", "c", "a", rtt_ms=0.4, **PLAIN)),
             six(cell("bgp", "b", "a", rtt_ms=0.2, **PLAIN))]
    if blocked6:
        cells.append(six(cell("bgp", "a", "b", "blocked", "destination-ingress", "rejected", evidence=REJECTED6)))
    else:
        cells.append(six(cell("bgp", "a", "b", rtt_ms=0.2, **PLAIN)))
    return Result(cells=cells, hosts=HOSTS, checks=CHECKS, profile="calico")


def test_v2_keeps_a_matrix_per_check_and_family():
    r = dual_result()
    doc = json.loads(r.to_json())
    assert [(m["check"], m.get("family")) for m in doc["matrices"]] == [("bgp", None), ("bgp", 6)]
    assert [row.count(".") for row in doc["matrices"][1]["rows"]] == [1, 2, 2]  # b and c share no IPv6 cell
    assert [d.get("family") for d in doc["detail"]] == [6]  # the blocked IPv6 cell, whole
    # hosts: address6 only where it adds an address (an IPv6-only host's address is its IPv6 one)
    assert doc["hosts"][0]["address6"] == "2001:db8::1" and "address6" not in doc["hosts"][2]
    back = Result.from_json(r.to_json())
    assert {c.key: c for c in back.cells} == {c.key: c for c in r.cells}
    assert back.cell("bgp", "a", "b").reach is Reach.ALLOWED
    assert back.cell("bgp", "a", "b", 6).reach is Reach.BLOCKED
    assert [h.address6 for h in back.hosts] == ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
    assert back.counts()["cells"] == 6 and back.counts()["blocked"] == 1
    # v1 too: the cell says its family only when it is not IPv4
    v1 = r.to_dict_v1()
    assert sum("family" in c for c in v1["cells"]) == 4
    assert {c.key for c in Result.from_dict(v1).cells} == {c.key for c in r.cells}


def test_results_without_a_family_read_as_ipv4():
    old = sample_result()  # a v2 result from before IPv6
    assert old.cells and {c.family for c in old.cells} == {4}
    v1 = {"schema": "netprobe.result/v1", "hosts": [], "checks": [],
          "cells": [{"check": "bgp", "src": "a", "dst": "b", "reach": "allowed", "verdict": "open"}]}
    assert [c.key for c in Result.from_dict(v1).cells] == [("bgp", "a", "b", 4)]


@pytest.mark.parametrize("change, field", [
    (lambda d: d["matrices"][1].update(family=5), "matrices[1].family"),
    (lambda d: d["matrices"][1].update(family=4), "matrices"),  # bgp over IPv4 twice
    (lambda d: d["detail"][0].update(family="6"), "detail[0].family"),
])
def test_a_bad_family_names_the_field(change, field):
    doc = json.loads(dual_result().to_json())
    change(doc)
    with pytest.raises(ConfigError) as info:
        Result.from_dict(doc)
    assert info.value.field == field


def test_diff_and_verify_tell_the_families_apart():
    before, after = dual_result(blocked6=False), dual_result(blocked6=True)
    [change] = diff(before, after)
    assert (change.check, change.src, change.dst, change.family) == ("bgp", "a", "b", 6)
    judgement = from_changes([change])
    [finding] = judgement.findings
    assert finding.failing and finding.key == ("bgp", "a", "b", 6)
    assert finding.describe().startswith("bgp (IPv6) a -> b: was allowed")
    assert finding.to_dict()["family"] == 6
    # an IPv4 finding's JSON stays as it was: no family key
    gone = from_changes(diff(before, Result(cells=[c for c in before.cells if c.family == 6], hosts=HOSTS)))
    assert gone.findings and all("family" not in f.to_dict() for f in gone.findings)


def test_an_expectation_rule_may_name_a_family():
    r = dual_result()
    hosts = {h.name: frozenset(h.roles) for h in r.hosts}
    only6 = parse_expectation({"rules": [{"check": "bgp", "from": "a", "to": "b", "family": 6, "reach": "blocked",
                                          "where": "destination-ingress"}]}, source="e", hosts=hosts)
    assert compare(only6, r) == []
    both = parse_expectation({"rules": [{"check": "bgp", "from": "a", "to": "b", "reach": "blocked"}]}, source="e",
                             hosts=hosts)
    [mismatch] = compare(both, r)  # the IPv4 cell is allowed
    assert (mismatch.family, mismatch.describe()[:14]) == (4, "bgp a -> b: ex")
    assert from_mismatches([mismatch]).findings[0].key == ("bgp", "a", "b", 4)
    assert only6.rules[0].to_dict()["family"] == 6
    with pytest.raises(ConfigError) as info:
        parse_expectation({"rules": [{"check": "bgp", "family": "v6", "reach": "blocked"}]}, source="e")
    assert info.value.field == "expect.rules[0].family"


def test_every_format_shows_a_matrix_per_family():
    r = dual_result()
    table = render(r, "table", width=100, wrap=False)
    assert "bgp: Calico networking (BGP), tcp/179" in table and "bgp (IPv6): Calico networking (BGP), tcp/179" in table
    assert "bgp (IPv6) a -> b blocked at b's INPUT (rejected: ICMPv6 1/1 administratively prohibited from " \
           "2001:db8::2)" in table
    md = render(r, "markdown")
    assert "### bgp (IPv6): Calico networking (BGP), tcp/179" in md
    junit = render(r, "junit")
    assert 'testsuite name="bgp (IPv6)"' in junit and 'classname="netprobe.bgp.ipv6"' in junit
    html = render(r, "html")
    assert '"lane":"bgp (IPv6)"' in html and 'data-family="6" data-lane="bgp (IPv6)"' in html
    from netprobe.report.rollup import render_rollup_text

    rollup = render_rollup_text(r)
    assert "bgp (IPv6): Calico networking (BGP), tcp/179: 4 cells, 3 allowed, 1 blocked" in rollup
    assert "  b: bgp (IPv6) inbound blocked at ingress from 1 of 1 peers (a)" in rollup


def test_describe_cell_names_icmpv6():
    c = six(cell("bgp", "a", "b", "blocked", "destination-ingress", "rejected", evidence=REJECTED6))
    assert describe_cell(c) == ("bgp (IPv6) a -> b blocked at b's INPUT (rejected: ICMPv6 1/1 administratively "
                                "prohibited from 2001:db8::2)")


def test_metrics_and_the_timeline_name_the_family():
    from datetime import datetime, timezone

    from netprobe.monitor.metrics import WatchMetrics
    from netprobe.monitor.state import WatchState

    state = WatchState(interval=30)
    metrics = WatchMetrics(state)
    events = state.record(dual_result(), when=datetime(2024, 1, 1, tzinfo=timezone.utc), duration=0.1)
    text = metrics.render().decode()
    assert 'netprobe_flow_blocked{check="bgp",dst="b",family="6",src="a",where="destination-ingress"} 1.0' in text
    assert 'netprobe_cells{check="bgp",family="6",reach="blocked"} 1.0' in text
    assert 'netprobe_cells{check="bgp",family="4",reach="allowed"} 2.0' in text
    assert [e.text for e in events] == ["bgp (IPv6) a -> b is blocked at destination-ingress"]
    assert events[0].to_dict()["family"] == 6
