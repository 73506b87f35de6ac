"""Plain-text lists for ``netprobe diff`` (what changed between two results) and
``netprobe verify`` (which cells broke the expectation)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from netprobe.core.checks import lane_label
from netprobe.core.result import Change
from netprobe.report.words import change_side


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render_changes(changes: Sequence[Change]) -> str:
    """A table of check, flow, old and new state; ``No changes.`` when there is none."""
    if not changes:
        return "No changes.\n"
    rows = [("check", "flow", "old", "new")]
    rows += [(lane_label(c.check, c.family), f"{c.src} -> {c.dst}", change_side(c.old), change_side(c.new))
             for c in changes]
    noun = "cell" if len(changes) == 1 else "cells"
    return f"{len(changes)} {noun} changed:\n" + "\n".join(_columns(rows)) + "\n"


def render_mismatches(mismatches: Iterable[object]) -> str:
    """One line per mismatch (its ``describe()``); ``Every cell as expected.`` when there is none."""
    lines = [m.describe() for m in mismatches]  # type: ignore[attr-defined]
    if not lines:
        return "Every cell as expected.\n"
    noun = "mismatch" if len(lines) == 1 else "mismatches"
    return f"{len(lines)} expectation {noun}:\n" + "".join(f"  {line}\n" for line in lines)


__all__ = ["render_changes", "render_mismatches"]
