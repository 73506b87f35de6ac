"""Renderers: pure builders of strings (and rich renderables) from a Result; the CLI writes them.

``render(result, fmt, ...)`` is the one entry point the commands need; each format's module is
imported only when used, so JSON output never pays for rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netprobe.core.result import Change, Result
    from netprobe.core.verdicts import Judgement

FORMATS = ("table", "json", "junit", "markdown", "html")


def render(result: Result, fmt: str, *, mismatches: Iterable[object] | None = None,
           judgement: Judgement | None = None, color: bool = False, width: int = 100, wrap: bool = True) -> str:
    """The result in ``fmt`` (table|json|junit|markdown) as text ready to write.

    ``mismatches`` (from an expectation) or ``judgement`` (``verify``'s verdict) adds the
    findings: marked cells and a findings section in the table and Markdown, the verdict and its
    findings around the result in JSON (``netprobe.verdict/v1``), and in JUnit exactly the
    failing findings as failures. ``color`` and ``width`` apply to the table only.
    """
    if judgement is None and mismatches is not None:
        from netprobe.core.verdicts import from_mismatches

        judgement = from_mismatches(mismatches, partial=bool(result.errors))
    expect = judgement is not None and judgement.mode == "expect"
    if fmt == "table":
        from netprobe.report.table import render_table_text
        if judgement is None or expect:
            return render_table_text(result, width=width, color=color, wrap=wrap,
                                     mismatches=None if judgement is None else judgement.failing)
        from netprobe.report.verdict import render_findings_text
        return (render_table_text(result, width=width, color=color, wrap=wrap, marks=judgement.failing,
                                  mark_label="fails: changed since the baseline")
                + "\n" + render_findings_text(judgement))
    if fmt == "json":
        if judgement is None:
            from netprobe.report.jsonout import render_json
            return render_json(result)
        from netprobe.report.verdict import render_verdict_json
        return render_verdict_json(judgement, result=result)
    if fmt == "junit":
        from netprobe.report.junit import render_junit
        return render_junit(result, judgement=judgement)
    if fmt == "html":
        from netprobe.report.heatmap_page import render_page
        return render_page(result)
    if fmt == "markdown":
        from netprobe.report.markdown import render_markdown
        if judgement is None or expect:
            return render_markdown(result, None if judgement is None else judgement.failing)
        from netprobe.report.verdict import render_findings_markdown
        return (render_markdown(result, marks=judgement.failing, mark_label="fails: changed since the baseline")
                + "\n" + render_findings_markdown(judgement))
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def render_diff(judgement: Judgement, old: Result, new: Result, fmt: str) -> str:
    """``netprobe diff`` in ``fmt``: the findings alone (table, markdown), the verdict JSON with
    both runs' times and errors, or JUnit over the new run's cells."""
    from netprobe.report import verdict as v

    if fmt == "table":
        return v.render_findings_text(judgement)
    if fmt == "markdown":
        return v.render_findings_markdown(judgement)
    if fmt == "json":
        return v.render_verdict_json(judgement, result=new, old=old)
    if fmt == "junit":
        from netprobe.report.junit import render_junit
        return render_junit(new, judgement=judgement)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def render_changes(changes: Sequence[Change]) -> str:
    """For ``netprobe diff``: check, flow, old and new state of each changed cell."""
    from netprobe.report.changes import render_changes as _render
    return _render(changes)


def render_mismatches(mismatches: Iterable[object]) -> str:
    """For ``netprobe verify``: one line per expectation mismatch."""
    from netprobe.report.changes import render_mismatches as _render
    return _render(mismatches)


__all__ = ["FORMATS", "render", "render_diff", "render_changes", "render_mismatches"]
