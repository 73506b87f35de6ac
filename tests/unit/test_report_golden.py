"""Golden output of every renderer for one small result (3 hosts, 2 checks, every reach, where
and verdict, a skipped check, an agent error): tests/data/golden/sample_result.json.

To accept intended changes: ``UPDATE_GOLDEN=1 pytest tests/unit/test_report_golden.py`` rewrites
the files, then review them with ``git diff tests/data/golden``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import sample_result
from netprobe.core.expect import Mismatch, compare, load_expectation_text
from netprobe.core.result import Reach, Result, diff
from netprobe.report import render, render_changes, render_mismatches
from netprobe.report.table import render_table_text

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"{path} missing: run with UPDATE_GOLDEN=1 to create it")
    assert actual == path.read_text(encoding="utf-8"), f"differs from {path} (UPDATE_GOLDEN=1 rewrites it)"


@pytest.fixture
def result() -> Result:
    return sample_result()


EXPECTATION = """
default: allowed
rules:
  - {check: bgp, from: node3, to: node1, reach: blocked, where: destination-ingress}
  - {check: ipip, from: node1, to: node2, reach: allowed}
  - {check: ipip, from: "*", to: "*", reach: blocked}
"""


def mismatches_for(result: Result) -> list[Mismatch]:
    """The real comparison: bgp node3 -> node1 and the ipip blocks are intended; node2's bgp
    return path is not, and unknown cells never match (nothing proven)."""
    return compare(load_expectation_text(EXPECTATION, source="expect.yaml"), result)


def test_the_mismatches_are_the_intended_ones(result):
    assert [(m.check, m.src, m.dst) for m in mismatches_for(result)] == [
        ("bgp", "node1", "node3"), ("bgp", "node2", "node1"), ("bgp", "node2", "node3"), ("ipip", "node2", "node3")]


def test_sample_covers_every_reach_where_and_verdict(result):
    assert {c.reach for c in result.cells} == set(Reach)
    assert {str(c.where) for c in result.cells if c.where} == {
        "source-egress", "network", "destination-ingress", "return-path"}
    assert {str(c.verdict) for c in result.cells} == {"open", "closed", "filtered", "rejected", "answered", "error"}
    assert result.skipped and result.errors


def test_table_text(result):
    text = render_table_text(result, width=100, color=False)
    golden("table.txt", text)
    assert "\x1b[" not in text


def test_table_text_with_mismatches(result):
    golden("table_mismatches.txt", render_table_text(result, width=100, mismatches=mismatches_for(result)))


def test_table_text_ascii_narrow(result):
    golden("table_ascii_40.txt", render_table_text(result, width=40, ascii=True))


def test_table_summary_sentences_exact(result):
    text = render(result, "table", color=False)
    summary = text.split("Blocked and unknown flows:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert summary == [
        "  bgp node1 -> node3 unknown (no responder evidence: filtered)",
        "  bgp node2 -> node1 blocked on the return path: node1 answered, node2 never accepted the reply",
        "  bgp node2 -> node3 unknown (no responder evidence: closed)",
        "  bgp node3 -> node1 blocked at node1's INPUT (filtered)",
        "  ipip node2 -> node1 blocked in the network between node2 and node1 (never arrived)",
        "  ipip node2 -> node3 unknown (no responder evidence: filtered)",
        "  ipip node3 -> node1 blocked at node3's OUTPUT (send refused: Operation not permitted)",
        "  ipip node3 -> node2 blocked at node2's INPUT (rejected: ICMP 3/13 administratively prohibited from",
        "  198.18.0.12)",
    ]
    assert "  typha: skipped, no host has role 'typha'" in text.splitlines()
    assert "  node3: agent unreachable: connection refused (unix:/run/netprobe/node3.sock)" in text.splitlines()
    assert text.splitlines()[-1] == "3 allowed, 5 blocked, 3 unknown"


def test_markdown(result):
    golden("report.md", render(result, "markdown"))


def test_markdown_with_mismatches(result):
    golden("report_mismatches.md", render(result, "markdown", mismatches=mismatches_for(result)))


def test_junit(result):
    golden("junit.xml", render(result, "junit"))


def test_junit_with_mismatches(result):
    golden("junit_mismatches.xml", render(result, "junit", mismatches=mismatches_for(result)))


def test_json_is_the_result_file(result):
    golden("sample_result.json", render(result, "json"))


def test_changes_and_mismatches(result):
    new = Result.from_json(result.to_json())
    new.cells = [c for c in new.cells if c.key != ("ipip", "node2", "node3", 4)]
    new.cells[0] = Result.from_dict({**result.to_dict_v1(), "cells": [
        {**result.cells[0].to_dict(), "reach": "blocked", "where": "destination-ingress", "verdict": "filtered"}]}
    ).cells[0]
    golden("changes.txt", render_changes(diff(result, new)))
    golden("mismatches.txt", render_mismatches(mismatches_for(result)))
