"""The verdict of ``verify``/``diff`` (a ``core.verdicts.Judgement``) in words, JSON and Markdown.

Every format lists the same findings with what was expected (or was) and what was got, and
says which of them fail; JUnit (``report.junit``) makes exactly those its failures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from netprobe.core.result import Result
from netprobe.core.verdicts import SCHEMA, Finding, Judgement, Kind

_AGAINST = {"expect": "the expectation", "baseline": "the baseline", "diff": ""}
_TITLES = {
    Kind.MISMATCH: "Expectation mismatches",
    Kind.REGRESSION: "Regressions",
    Kind.FIX: "Fixes",
    Kind.CHANGE: "Other changes",
}


def sections(j: Judgement) -> list[tuple[str, list[Finding]]]:
    """(title, findings) per kind that has any, in the order a reader needs them."""
    out = []
    for kind in (Kind.MISMATCH, Kind.REGRESSION, Kind.FIX, Kind.CHANGE):
        found = j.of_kind(kind)
        if found:
            since = _AGAINST[j.mode] if kind is not Kind.MISMATCH else ""
            title = f"{_TITLES[kind]} since {since}" if since else _TITLES[kind]
            out.append((title, found))
    return out


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def verdict_line(j: Judgement) -> str:
    """E.g. ``1 regression, 1 fix, 0 other changes; fails on regressions: 1 failing``."""
    n = j.counts()
    if j.mode == "expect":
        head = "Every cell as expected." if not j.findings else f"{_plural(n['mismatches'], 'expectation mismatch', 'expectation mismatches')}."
    elif not j.findings:
        head = f"No changes since {_AGAINST[j.mode]}." if _AGAINST[j.mode] else "No changes."
    else:
        head = (f"{_plural(n['regressions'], 'regression')}, {_plural(n['fixes'], 'fix', 'fixes')}, "
                f"{_plural(n['other_changes'], 'other change')} (fail on {j.fail_on}: {n['failing']} failing).")
    return head + (" Partial run: an agent failed, so an unknown cell may hide the answer." if j.partial else "")


def render_findings_text(j: Judgement) -> str:
    """Plain text: a section per kind, then the verdict line."""
    lines: list[str] = []
    for title, found in sections(j):
        lines.append(f"{title}:")
        for f in found:
            lines.append(f"  {f.describe()}")
            lines += [f"    {line}" for line in (f.explain.fix_words() if f.explain is not None else [])]
        lines.append("")
    lines.append(verdict_line(j))
    return "\n".join(lines) + "\n"


def render_findings_markdown(j: Judgement) -> str:
    from netprobe.report.markdown import md_escape

    lines: list[str] = []
    for title, found in sections(j):
        head = "expected | got" if j.mode == "expect" else "before | now"
        lines += [f"**{title}**", "", f"| check | from | to | {head} | fails |", "|---|---|---|---|---|:-:|"]
        for f in found:
            exp = "absent" if f.expected is None else f.expected.words()
            got = "absent" if f.got is None else f.got.words()
            lines.append(f"| {md_escape(f.label)} | {md_escape(f.src)} | {md_escape(f.dst)} | {md_escape(exp)} | "
                         f"{md_escape(got)} | {'❗' if f.failing else ''} |")
        lines.append("")
    lines.append(f"**{md_escape(verdict_line(j))}**")
    return "\n".join(lines) + "\n"


def _run(result: Result) -> dict:
    return {"started": result.started, "finished": result.finished, "errors": result.errors}


def render_verdict_json(j: Judgement, *, result: Result | None = None, old: Result | None = None) -> str:
    """``netprobe.verdict/v1``: the verdict, its findings, and the result judged (``verify``) or
    the two runs' times and errors (``diff``)."""
    doc: dict = {"schema": SCHEMA, **j.to_dict()}
    if old is not None:
        doc["old"] = _run(old)
        if result is not None:
            doc["new"] = _run(result)
    elif result is not None:
        doc["result"] = result.to_dict()
    return json.dumps(doc, indent=2) + "\n"


def failing_keys(findings: Sequence[Finding]) -> set[tuple[str, str, str, int]]:
    return {f.key for f in findings if f.failing}


__all__ = ["sections", "verdict_line", "render_findings_text", "render_findings_markdown", "render_verdict_json",
           "failing_keys"]
