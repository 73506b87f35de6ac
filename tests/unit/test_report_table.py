"""Table layout: orders, narrow terminals, colour, and the render() dispatch."""

from __future__ import annotations

import json

import pytest
from rich.console import Group

from helpers import sample_result
from netprobe.core.result import Cell, Evidence, HostInfo, Reach, Result, Verdict, Where
from netprobe.report import FORMATS, render
from netprobe.report.jsonout import render_json
from netprobe.report.matrix import check_title, matrices
from netprobe.report.table import render_table, render_table_text



@pytest.fixture
def result() -> Result:
    return sample_result()


def allowed(check, src, dst):
    return Cell(check, src, dst, Reach.ALLOWED, None, Verdict.OPEN, evidence=Evidence(arrived=True, accepted=True))


def test_render_table_is_a_group(result):
    assert isinstance(render_table(result), Group)


def test_rows_and_columns_follow_result_hosts_and_only_hosts_of_that_check():
    hosts = [HostInfo(n, "", ()) for n in ("zeta", "alpha", "typha1", "mid")]
    cells = [allowed("typha", "alpha", "typha1"), allowed("typha", "zeta", "typha1"),
             allowed("bgp", "mid", "zeta"), allowed("bgp", "zeta", "mid"), allowed("bgp", "ghost", "zeta")]
    r = Result(cells=cells, hosts=hosts, checks=[{"id": "typha"}, {"id": "bgp"}])
    typha, bgp = matrices(r)
    assert (typha.check, typha.rows, typha.cols) == ("typha", ["zeta", "alpha"], ["typha1"])
    # a host missing from result.hosts is appended, never dropped
    assert (bgp.rows, bgp.cols) == (["zeta", "mid", "ghost"], ["zeta", "mid"])
    text = render_table_text(r)
    assert text.index("typha") < text.index("bgp")
    header = next(line for line in text.splitlines() if line.startswith("from") and "typha1" in line)
    assert header.split() == ["from", "\\", "to", "typha1"]


def test_checks_without_declaration_still_get_a_matrix():
    r = Result(cells=[allowed("custom-1", "a", "b")])
    assert [m.check for m in matrices(r)] == ["custom-1"]
    assert "custom-1" in render_table_text(r)


def test_check_title():
    assert check_title({"id": "bgp", "description": "Calico networking (BGP)", "proto": "tcp", "port": 179}) == \
        "bgp: Calico networking (BGP), tcp/179"
    assert check_title({"id": "ipip", "description": "ipip", "proto": "ipip", "port": None}) == "ipip: ipip"
    assert check_title({"id": "x"}) == "x"


def test_narrow_terminal_numbers_the_columns():
    names = [f"very-long-host-name-{i}" for i in range(6)]
    cells = [allowed("bgp", a, b) for a in names for b in names if a != b]
    r = Result(cells=cells, hosts=[HostInfo(n, "", ()) for n in names])
    wide = render_table_text(r, width=300)
    assert "columns:" not in wide
    narrow = render_table_text(r, width=80)
    assert "columns: 1 very-long-host-name-0, 2 very-long-host-name-1" in narrow
    assert "1 very-long-host-name-0" in narrow.splitlines()[3]
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert "…" not in narrow


def test_colour_only_when_asked(result):
    plain = render(result, "table", color=False)
    coloured = render(result, "table", color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32m" in coloured and "\x1b[1;31m" in coloured and "\x1b[33m" in coloured


def test_empty_result_still_prints_a_total():
    text = render_table_text(Result(cells=[], skipped=[{"check": "typha", "reason": "no host has role 'typha'"}]))
    assert text.splitlines() == ["", "Skipped checks:", "  typha: skipped, no host has role 'typha'", "",
                                 "0 allowed, 0 blocked, 0 unknown"]


def test_no_mismatch_section_unless_an_expectation_is_given(result):
    assert "Expectation" not in render(result, "table")
    assert "Every cell as expected." in render(result, "table", mismatches=[])


def test_blocked_without_where_shows_bare_cross():
    r = Result(cells=[Cell("bgp", "a", "b", Reach.BLOCKED, None, Verdict.FILTERED)])
    row = next(line for line in render_table_text(r).splitlines() if line.startswith("a "))
    assert row.split() == ["a", "✗"]


def test_json_round_trip(result):
    text = render(result, "json")
    assert text == render_json(result) == result.to_json()
    again = Result.from_json(text)
    assert again == result
    assert json.loads(text)["schema"] == "netprobe.result/v2"


def test_every_format_renders_and_unknown_format_is_refused(result):
    for fmt in FORMATS:
        assert render(result, fmt, color=False).endswith("\n")
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render(result, "yaml", color=False)


def test_where_letters_reach_the_table():
    cells = [Cell("bgp", "a", d, Reach.BLOCKED, w, Verdict.FILTERED)
             for d, w in zip("bcde", (Where.SOURCE_EGRESS, Where.NETWORK, Where.DESTINATION_INGRESS, Where.RETURN_PATH))]
    row = next(line for line in render_table_text(Result(cells=cells)).splitlines() if line.startswith("a "))
    assert row.split() == ["a", "✗S", "✗N", "✗D", "✗R"]


def test_every_format_carries_the_same_failing_flows(result):
    """#12: every format names the same blocked and unknown flows; JSON carries every cell."""
    import re

    failing = {(c.check, c.src, c.dst) for c in result.cells if c.reach is not Reach.ALLOWED}
    assert failing
    assert {c.key for c in Result.from_json(render(result, "json")).cells} == {c.key for c in result.cells}
    html = render(result, "html")
    shown = set(re.findall(r'data-check="([^"]*)" data-src="([^"]*)" data-dst="([^"]*)"', html))
    assert failing <= shown
    for fmt in ("table", "markdown", "junit"):
        text = render(result, fmt, color=False).replace("-&gt;", "->")
        for check, src, dst in failing:
            assert f"{src} -> {dst}" in text and check in text, (fmt, check, src, dst)
