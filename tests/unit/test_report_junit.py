"""JUnit XML parses back and its counts agree with the cells, with and without an expectation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from helpers import sample_result
from netprobe.core.expect import Mismatch
from netprobe.core.result import Cell, Evidence, Reach, Result, Verdict, Where
from netprobe.report.junit import render_junit



def mismatch(result: Result, check: str, src: str, dst: str, expected: Reach = Reach.BLOCKED) -> Mismatch:
    """A real mismatch, as ``compare`` makes it, for one cell of ``result``."""
    return Mismatch(check, src, dst, expected, None, result.cell(check, src, dst))


@pytest.fixture
def result() -> Result:
    return sample_result()


def counts(el: ET.Element) -> tuple[int, int, int, int]:
    return tuple(int(el.get(k)) for k in ("tests", "failures", "errors", "skipped"))  # type: ignore[return-value]


def outcomes(root: ET.Element) -> dict[tuple[str, str], str]:
    out = {}
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            kids = [k.tag for k in case]
            out[(suite.get("name"), case.get("name"))] = kids[0] if kids else "pass"
    return out


def test_without_expectation_blocked_fail_and_unknown_error(result):
    root = ET.fromstring(render_junit(result))
    assert root.tag == "testsuites"
    # 11 cells + 1 skipped check + 1 agent error
    assert counts(root) == (13, 5, 3 + 1, 1)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["bgp", "ipip", "typha", "agents"]
    assert counts(suites["bgp"]) == (6, 2, 2, 0)
    assert counts(suites["ipip"]) == (5, 3, 1, 0)
    # Totals are the sums of the suites, as CI tools expect.
    assert counts(root) == tuple(map(sum, zip(*(counts(s) for s in suites.values()))))
    got = outcomes(root)
    for c in result.cells:
        expected = {Reach.ALLOWED: "pass", Reach.BLOCKED: "failure", Reach.UNKNOWN: "error"}[c.reach]
        assert got[(c.check, f"{c.src} -> {c.dst}")] == expected
    failure = root.find("./testsuite[@name='bgp']/testcase[@name='node3 -> node1']/failure")
    assert failure.get("message") == "bgp node3 -> node1 blocked at node1's INPUT (filtered)"
    assert failure.get("type") == "blocked"
    assert '"accepted": false' in failure.text
    assert got[("typha", "(check skipped)")] == "skipped"
    assert got[("agents", "node3")] == "error"


def test_with_expectation_only_mismatches_fail(result):
    mismatches = [mismatch(result, "bgp", "node3", "node2"), mismatch(result, "ipip", "node2", "node3")]
    root = ET.fromstring(render_junit(result, mismatches))
    got = outcomes(root)
    assert got[("bgp", "node3 -> node2")] == "failure"      # allowed but expected otherwise
    assert got[("ipip", "node2 -> node3")] == "failure"     # unknown: nothing proven, a mismatch like any
    assert got[("bgp", "node3 -> node1")] == "pass"         # blocked on purpose
    assert got[("bgp", "node1 -> node3")] == "pass"         # unknown, yet not a mismatch here
    assert counts(root) == (13, 2, 1, 1)  # failures = the mismatches; the error is the agent's
    msg = root.find("./testsuite[@name='bgp']/testcase[@name='node3 -> node2']/failure").get("message")
    assert msg == "bgp node3 -> node2: expected blocked, got allowed (closed)"


def test_empty_expectation_passes_every_cell(result):
    result.errors = []
    root = ET.fromstring(render_junit(result, []))
    assert counts(root) == (12, 0, 0, 1)


def test_special_characters_are_escaped():
    cell = Cell("bgp", "a<&>\"", "b", Reach.BLOCKED, Where.NETWORK, Verdict.FILTERED, evidence=Evidence(arrived=False))
    root = ET.fromstring(render_junit(Result(cells=[cell])))
    case = root.find("./testsuite/testcase")
    assert case.get("name") == 'a<&>" -> b'
    assert case[0].get("message").startswith('bgp a<&>" -> b blocked in the network')


def test_real_expectation_mismatches(result):
    """With netprobe.core.expect's own compare(): intended blocks pass, the rest fail."""
    expect = pytest.importorskip("netprobe.core.expect")
    expectation = expect.parse_expectation({
        "default": "allowed",
        "rules": [
            {"check": "bgp", "from": "node3", "to": "node1", "reach": "blocked", "where": "destination-ingress"},
            {"check": "ipip", "from": "*", "to": "*", "reach": "blocked"},
        ],
    }, source="expect.yaml")
    mismatches = expect.compare(expectation, result)
    got = outcomes(ET.fromstring(render_junit(result, mismatches)))
    assert got[("bgp", "node3 -> node1")] == "pass"
    assert got[("ipip", "node2 -> node1")] == "pass"
    assert got[("ipip", "node1 -> node2")] == "failure"   # allowed, expected blocked
    assert got[("bgp", "node2 -> node1")] == "failure"    # return path, expected allowed
    assert got[("bgp", "node1 -> node3")] == "failure"    # unknown: a mismatch, so a failure
