"""JUnit XML for CI: one testsuite per check and family (``bgp``, ``bgp (IPv6)``), one testcase
per cell ("src -> dst").

Without an expectation a blocked cell is a failure and an unknown one an error (nothing proven).
Judged (an expectation's mismatches, or a verify/diff ``Judgement``), the failures are exactly
the failing findings, so a cell that is blocked on purpose, or fixed since the baseline, passes. Skipped checks appear as skipped testcases, unreachable agents as errors.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from netprobe.core.result import Cell, Reach, Result
from netprobe.core.verdicts import Finding, Judgement, from_mismatches
from netprobe.report.matrix import matrices
from netprobe.report.words import describe_cell, describe_with_fix

_COUNTS = ("tests", "failures", "errors", "skipped")


class _Suite:
    def __init__(self, name: str, timestamp: str | None = None):
        self.element = ET.Element("testsuite", name=name)
        if timestamp:
            self.element.set("timestamp", timestamp)
        self.counts = dict.fromkeys(_COUNTS, 0)

    def case(self, name: str, classname: str, *, time_s: float | None = None,
             outcome: str | None = None, type_: str = "", message: str = "", body: str = "") -> None:
        case = ET.SubElement(self.element, "testcase", classname=classname, name=name)
        if time_s is not None:
            case.set("time", f"{time_s:.6f}")
        self.counts["tests"] += 1
        if outcome is None:
            return
        self.counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[outcome]] += 1
        child = ET.SubElement(case, outcome, message=message)
        if type_:
            child.set("type", type_)
        if body:
            child.text = body

    def finish(self) -> ET.Element:
        for key in _COUNTS:
            self.element.set(key, str(self.counts[key]))
        return self.element


def _body(cell: Cell) -> str:
    """The sentence plus the raw evidence, so a CI page shows why without the JSON file."""
    explain = f"\nexplain: {json.dumps(cell.explain.to_dict())}" if cell.explain is not None else ""
    return (f"{describe_with_fix(cell)}\nverdict: {cell.verdict}\nevidence: {json.dumps(cell.evidence.to_dict())}"
            + explain)


def _classname(check: str, family: int) -> str:
    return f"netprobe.{check}" + (".ipv6" if family == 6 else "")


def _cell_case(suite: _Suite, cell: Cell, finding: Finding | None, judged: bool) -> None:
    time_s = None if cell.rtt_ms is None else cell.rtt_ms / 1000
    kwargs: dict = {"time_s": time_s}
    if judged:
        if finding is not None and finding.failing:
            kwargs.update(outcome="failure", type_=str(finding.kind), message=finding.describe(), body=_body(cell))
    elif cell.reach is Reach.BLOCKED:
        kwargs.update(outcome="failure", type_="blocked", message=describe_cell(cell), body=_body(cell))
    elif cell.reach is Reach.UNKNOWN:
        kwargs.update(outcome="error", type_="unknown", message=describe_cell(cell), body=_body(cell))
    suite.case(f"{cell.src} -> {cell.dst}", _classname(cell.check, cell.family), **kwargs)


def render_junit(result: Result, mismatches: Iterable[object] | None = None, *,
                 judgement: Judgement | None = None) -> str:
    """The result as JUnit XML text (UTF-8 declaration, indented).

    Judged (``mismatches`` of an expectation, or the ``judgement`` of verify/diff), the failures
    are exactly the failing findings: a cell blocked on purpose, or a fix, passes."""
    if judgement is None and mismatches is not None:
        judgement = from_mismatches(mismatches)
    judged = judgement is not None
    pending = {f.key: f for f in judgement.findings} if judgement is not None else {}
    suites: dict[str, _Suite] = {}

    def suite(name: str) -> _Suite:
        if name not in suites:
            suites[name] = _Suite(name, result.started)
        return suites[name]

    for matrix in matrices(result):
        for cell in matrix.flows():
            _cell_case(suite(matrix.label), cell, pending.pop(cell.key, None), judged)
    # A finding about a cell the result lacks (gone since the baseline, or never probed) still counts.
    for (check, src, dst, family), f in pending.items():
        if f.failing:
            suite(f.label).case(f"{src} -> {dst}", _classname(check, family), outcome="failure", type_=str(f.kind),
                                message=f.describe())
        else:
            suite(f.label).case(f"{src} -> {dst}", _classname(check, family))
    for s in result.skipped:
        check = str(s.get("check", "?"))
        suite(check).case("(check skipped)", f"netprobe.{check}", outcome="skipped",
                          message=str(s.get("reason", "")))
    for e in result.errors:
        host = str(e.get("host") or "run")
        suite("agents").case(host, "netprobe.agents", outcome="error", type_="agent",
                             message=str(e.get("message", "")))

    root = ET.Element("testsuites", name="netprobe")
    totals = dict.fromkeys(_COUNTS, 0)
    for s in suites.values():
        root.append(s.finish())
        for key in _COUNTS:
            totals[key] += s.counts[key]
    for key in _COUNTS:
        root.set(key, str(totals[key]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


__all__ = ["render_junit"]
