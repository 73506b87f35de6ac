"""Renderers: pure builders of strings (and rich renderables) from a Result; the CLI writes them.

``render(result, fmt, ...)`` is the one entry point the commands need; each format's module is
imported only when used, so JSON output never pays for rich.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netprobe.core.result import Change, Result

FORMATS = ("table", "json", "junit", "markdown", "html")


def render(result: Result, fmt: str, *, mismatches: Iterable[object] | None = None,
           color: bool = False, width: int = 100, wrap: bool = True) -> str:
    """The result in ``fmt`` (table|json|junit|markdown) as text ready to write.

    ``mismatches`` (from an expectation) adds a mismatch section, and for junit makes only
    mismatching cells fail. ``color`` and ``width`` apply to the table only.
    """
    if fmt == "table":
        from netprobe.report.table import render_table_text
        return render_table_text(result, width=width, color=color, mismatches=mismatches, wrap=wrap)
    if fmt == "json":
        from netprobe.report.jsonout import render_json
        return render_json(result)
    if fmt == "junit":
        from netprobe.report.junit import render_junit
        return render_junit(result, mismatches)
    if fmt == "html":
        from netprobe.report.heatmap_page import render_page
        return render_page(result)
    if fmt == "markdown":
        from netprobe.report.markdown import render_markdown
        return render_markdown(result, mismatches)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def render_changes(changes: Sequence[Change]) -> str:
    """For ``netprobe diff``: check, flow, old and new state of each changed cell."""
    from netprobe.report.changes import render_changes as _render
    return _render(changes)


def render_mismatches(mismatches: Iterable[object]) -> str:
    """For ``netprobe verify``: one line per expectation mismatch."""
    from netprobe.report.changes import render_mismatches as _render
    return _render(mismatches)


__all__ = ["FORMATS", "render", "render_changes", "render_mismatches"]
