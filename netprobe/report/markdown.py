"""GitHub-flavoured Markdown: a table per check, then the same summary as the terminal report,
for pull-request comments and job summaries."""

from __future__ import annotations

import re
from collections.abc import Iterable

from netprobe.core.result import Cell, Reach, Result
from netprobe.report.matrix import Matrix, matrices, mismatch_keys, problem_cells
from netprobe.report.words import describe_cell, error_line, fix_lines, skipped_line, total_line, where_letter

GLYPH = {Reach.ALLOWED: "✅", Reach.BLOCKED: "❌", Reach.UNKNOWN: "❓"}
NONE_GLYPH = "·"
MISMATCH_MARK = "❗"
LEGEND = (
    "✅ allowed · ❓ unknown · ❌ blocked at **S** source egress, **N** network, "
    "**D** destination ingress, **R** return path · `·` self / not probed"
)

_SPECIAL = re.compile(r"([\\`*_\[\]<|])")


def md_escape(text: str) -> str:
    """Escape what Markdown would read as formatting, table pipes or HTML."""
    return _SPECIAL.sub(r"\\\1", text)


def cell_markdown(cell: Cell | None, mismatch: bool = False) -> str:
    if cell is None:
        return NONE_GLYPH
    glyph = GLYPH[cell.reach] + (where_letter(cell.where) if cell.reach is Reach.BLOCKED else "")
    return glyph + (f" {MISMATCH_MARK}" if mismatch else "")


def _matrix(m: Matrix, mismatches: set[tuple[str, str, str, int]]) -> list[str]:
    lines = [f"### {md_escape(m.title)}", ""]
    lines.append("| from \\\\ to | " + " | ".join(md_escape(d) for d in m.cols) + " |")
    lines.append("|---|" + ":-:|" * len(m.cols))
    for src in m.rows:
        row = [cell_markdown(m.get(src, dst), m.key(src, dst) in mismatches) for dst in m.cols]
        lines.append(f"| **{md_escape(src)}** | " + " | ".join(row) + " |")
    return lines + [""]


def _section(title: str, items: Iterable[str]) -> list[str]:
    items = list(items)
    if not items:
        return []
    return [f"**{title}**", "", *(f"- {md_escape(i)}" for i in items), ""]


def _flows(cells: Iterable[Cell]) -> list[str]:
    """The failing flows, each fix (if any) as nested items in code spans (copied as they are)."""
    lines = []
    for c in cells:
        lines.append(f"- {md_escape(describe_cell(c))}")
        lines += [f"  - {md_escape(head)}: `{code}`" for head, code in
                  (line.split(": ", 1) for line in fix_lines(c))]
    return ["**Blocked and unknown flows**", "", *lines, ""] if lines else []


def render_markdown(result: Result, mismatches: Iterable[object] | None = None, *,
                    marks: Iterable[object] | None = None, mark_label: str = "") -> str:
    """``marks`` (and ``mark_label``) mark cells without listing them, as for ``render_table``."""
    mismatches = None if mismatches is None else list(mismatches)
    marked = mismatches if marks is None else list(marks)
    keys = mismatch_keys(marked)
    lines: list[str] = []
    for m in matrices(result):
        lines += _matrix(m, keys)
    if lines:
        label = mark_label or "differs from the expectation"
        legend = LEGEND + (f" · {MISMATCH_MARK} {label}" if marked is not None else "")
        lines += [legend, ""]
    lines += _section("Skipped checks", (skipped_line(s) for s in result.skipped))
    lines += _flows(problem_cells(result))
    if mismatches:
        lines += _section("Expectation mismatches", (m.describe() for m in mismatches))  # type: ignore[attr-defined]
    elif mismatches is not None:
        lines += ["Every cell as expected.", ""]
    lines += _section("Errors", (error_line(e) for e in result.errors))
    lines.append(f"**{total_line(result)}**")
    return "\n".join(lines) + "\n"


__all__ = ["render_markdown", "md_escape", "cell_markdown"]
