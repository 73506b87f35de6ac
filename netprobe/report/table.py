"""The terminal report: one reachability matrix per check, then the flows that need attention
in words. Builds rich renderables only; printing them is the caller's (or ``render_table_text``'s).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from netprobe.core.result import Cell, Reach, Result
from netprobe.report.matrix import Matrix, matrices, mismatch_keys, problem_cells
from netprobe.report.words import describe_cell, error_line, fix_lines, skipped_line, total_line, where_letter

STYLE = {Reach.ALLOWED: "green", Reach.BLOCKED: "bold red", Reach.UNKNOWN: "yellow"}
GLYPH = {Reach.ALLOWED: "✓", Reach.BLOCKED: "✗", Reach.UNKNOWN: "?"}
ASCII_GLYPH = {Reach.ALLOWED: "ok", Reach.BLOCKED: "x", Reach.UNKNOWN: "?"}
NONE_GLYPH, ASCII_NONE_GLYPH = "·", "."
MISMATCH_MARK = "!"
ASCII_SIMPLE_HEAD = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


def cell_text(cell: Cell | None, *, mismatch: bool = False, ascii: bool = False) -> Text:
    """The glyph of one matrix cell: ✓, ✗ plus where letter (✗D), ?, or · (self / not probed)."""
    if cell is None:
        return Text(ASCII_NONE_GLYPH if ascii else NONE_GLYPH, style="dim")
    glyph = (ASCII_GLYPH if ascii else GLYPH)[cell.reach]
    if cell.reach is Reach.BLOCKED:
        glyph += where_letter(cell.where)
    text = Text(glyph, style=STYLE[cell.reach])
    if mismatch:
        text.append(MISMATCH_MARK, style="bold magenta")
    return text


class MatrixView:
    """One check's matrix (of one family); falls back to numbered columns when host names do not fit the width."""

    def __init__(self, matrix: Matrix, mismatches: set[tuple[str, str, str, int]], ascii: bool = False,
                 fit_width: int | None = None):
        self.matrix = matrix
        self.mismatches = mismatches
        self.ascii = ascii
        self.fit_width = fit_width  # the width the matrix must fit (piped text is drawn wider, never wrapped)

    def _table(self, numbered: bool) -> Table:
        m = self.matrix
        table = Table(box=ASCII_SIMPLE_HEAD if self.ascii else box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column(Text("from \\ to", style="dim"), no_wrap=True)
        for i, dst in enumerate(m.cols, 1):
            table.add_column(str(i) if numbered else dst, justify="center", no_wrap=True)
        for i, src in enumerate(m.rows, 1):
            label = Text(f"{i:>{len(str(len(m.rows)))}} {src}" if numbered else src, style="bold")
            row = [cell_text(m.get(src, dst), mismatch=m.key(src, dst) in self.mismatches, ascii=self.ascii)
                   for dst in m.cols]
            table.add_row(label, *row)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self._table(numbered=False)
        numbered = (Measurement.get(console, options.update_width(10_000), table).maximum
                    > (self.fit_width or options.max_width))
        yield Text(self.matrix.title, style="bold")
        yield self._table(numbered=True) if numbered else table
        if numbered:
            key = ", ".join(f"{i} {name}" for i, name in enumerate(self.matrix.cols, 1))
            yield Text(f"columns: {key}", style="dim")


def _legend(with_mismatches: bool, ascii: bool, mark_label: str = "differs from the expectation") -> Text:
    g = ASCII_GLYPH if ascii else GLYPH
    text = Text()
    text.append(g[Reach.ALLOWED], style=STYLE[Reach.ALLOWED]).append(" allowed   ")
    text.append(g[Reach.UNKNOWN], style=STYLE[Reach.UNKNOWN]).append(" unknown   ")
    text.append(ASCII_NONE_GLYPH if ascii else NONE_GLYPH, style="dim").append(" self / not probed")
    if with_mismatches:
        text.append("   ").append(MISMATCH_MARK, style="bold magenta").append(f" {mark_label}")
    text.append("\n")
    text.append(g[Reach.BLOCKED], style=STYLE[Reach.BLOCKED])
    text.append(" blocked at: S source egress, N network, D destination ingress, R return path")
    return text


def _section(title: str, lines: Iterable[Text | str], style: str = "") -> Iterator[Text | Padding]:
    """A titled list; long items wrap with a hanging indent so each stays one visual block."""
    lines = list(lines)
    if not lines:
        return
    yield Text("")
    yield Text(title, style="bold")
    for line in lines:
        yield Padding(line if isinstance(line, Text) else Text(line, style=style), (0, 0, 0, 2), expand=False)


def _flow(cell: Cell) -> Text:
    """A failing flow's sentence, its fix (if any) on indented lines under it."""
    text = Text(describe_cell(cell), style=STYLE[cell.reach])
    for line in fix_lines(cell):
        text.append(f"\n  {line}", style="dim")
    return text


def render_table(result: Result, *, mismatches: Iterable[object] | None = None, ascii: bool = False,
                 marks: Iterable[object] | None = None, mark_label: str = "", fit_width: int | None = None) -> Group:
    """The whole terminal report as one rich Group (matrices, legend, skipped, summary, errors, total).

    ``marks`` (with ``mark_label`` for the legend) marks cells without listing them: ``verify
    --baseline`` lists its findings after the table itself."""
    mismatches = None if mismatches is None else list(mismatches)
    marked = mismatches if marks is None else list(marks)
    keys = mismatch_keys(marked)
    parts: list = []
    for matrix in matrices(result):
        parts += [MatrixView(matrix, keys, ascii, fit_width), Text("")]
    if parts:
        parts.append(_legend(marked is not None, ascii, mark_label or "differs from the expectation"))
    parts += _section("Skipped checks:", (skipped_line(s) for s in result.skipped), "dim")
    parts += _section("Blocked and unknown flows:", (_flow(c) for c in problem_cells(result)))
    if mismatches:
        parts += _section("Expectation mismatches:", (m.describe() for m in mismatches), "magenta")  # type: ignore[attr-defined]
    elif mismatches is not None:
        parts += [Text(""), Text("Every cell as expected.", style="bold green")]
    parts += _section("Errors:", (error_line(e) for e in result.errors), "red")
    parts += [Text(""), Text(total_line(result), style="bold")]
    return Group(*parts)


def to_text(renderable, *, width: int = 100, color: bool = False) -> str:
    """Render any rich renderable to a string (ANSI colours only when ``color``)."""
    console = Console(
        file=io.StringIO(), width=width, force_terminal=color, color_system="standard" if color else None,
        no_color=not color, emoji=False, highlight=False, legacy_windows=False, soft_wrap=False,
    )
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    if color:
        return text
    # Tables pad cells to their column width; trailing blanks only make goldens fragile.
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def render_table_text(result: Result, width: int = 100, color: bool = False, *,
                      mismatches: Iterable[object] | None = None, ascii: bool = False,
                      marks: Iterable[object] | None = None, mark_label: str = "", wrap: bool = True) -> str:
    """``render_table`` as text: what the CLI prints, and what the golden tests compare.

    The matrices are drawn only when they fit ``width``; otherwise each check is a per-host
    rollup (``report/rollup.py``). ``wrap=False`` (piped output) never hard-wraps a line.
    """
    from netprobe.report.rollup import fits, render_rollup_text

    marked = mismatches if marks is None else list(marks)
    if not fits(result, width):
        return render_rollup_text(result, mismatches=marked, color=color)
    group = render_table(result, mismatches=mismatches, ascii=ascii, marks=marks, mark_label=mark_label,
                         fit_width=width)
    return to_text(group, width=width if wrap else 100_000, color=color)


__all__ = ["render_table", "render_table_text", "cell_text", "to_text", "MatrixView"]
