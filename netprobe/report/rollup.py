"""The view that reads at any size: when a check's matrix does not fit the width, one line per
host whose flows fail ("node-33: bgp inbound blocked at ingress from 1 of 999 peers (node-7)")
instead of a matrix, built from the compact store's byte tables (no Cell per allowed cell).
Plain strings: never wrapped, never cut with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Iterator

from netprobe.core.checks import lane_label
from netprobe.core.matrix_store import DECODED, MatrixStore
from netprobe.core.result import Reach, Result
from netprobe.report.matrix import check_title

NAMES_SHOWN = 5
MAX_FLOWS = 1000  # failing flows named one per line; past that the per-host rollup says it
GAP = 1  # columns between matrix cells


def matrix_width(store: MatrixStore, k: int, max_width: int = 1 << 30) -> int:
    """Columns a check's matrix needs with numbered columns (the narrowest form the table draws);
    anything above ``max_width`` when it needs more than that."""
    n = store.n
    if -(-store.cell_count(k) // max(n, 1)) * (3 + 2 + GAP) > max_width:
        return max_width + 1  # more columns hold a cell than fit: no need to find which
    codes = store.codes[k]
    rows = [i for i in range(n) if codes[i * n:(i + 1) * n].count(0) != n]
    cols = [j for j in range(n) if codes[j::n].count(0) != n]
    label = max((len(store.hosts[i]) for i in rows), default=0) + len(str(len(rows))) + 1
    cell = max(len(str(len(cols))), 3)  # "✗D!" is the widest glyph
    return max(label, len("from \\ to")) + len(cols) * (cell + 2 + GAP)


def fits(result: Result, width: int) -> bool:
    store = result.store
    return all(matrix_width(store, k, width) <= width for k in range(len(store.checks)) if store.has_cells(k))


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


SHORT_WHERE = {"source-egress": "at egress", "network": "in the network", "destination-ingress": "at ingress",
               "return-path": "on the way back"}


def _state(code: int) -> str:
    reach, where, _verdict = DECODED[code]
    return f"blocked {SHORT_WHERE[str(where)]}" if reach is Reach.BLOCKED and where is not None else str(reach)


def rollup_lines(result: Result) -> Iterator[str]:
    """Per check: a count line, then one line per (host, direction, state) that failing flows
    share, each failing flow counted once, under the end that has more of them."""
    store = result.store
    n = store.n
    declared = {c.get("id"): c for c in result.checks}
    for k, check in enumerate(store.checks):
        if not store.has_cells(k):
            continue
        family = store.families[k]
        label = lane_label(check, family)
        counts = store.counts(k)
        total = sum(counts.values())
        yield (f"{check_title(declared.get(check, {'id': check}), family)}: {total} cells, "
               + ", ".join(f"{v} {r}" for r, v in counts.items() if v or r is Reach.ALLOWED))
        codes = store.codes[k]
        problems = [(pos, codes[pos]) for pos in store.problem_positions(k)]
        if not problems:
            continue
        inbound: dict[tuple[int, int], list[int]] = {}
        outbound: dict[tuple[int, int], list[int]] = {}
        for pos, code in problems:
            i, j = divmod(pos, n)
            inbound.setdefault((j, code), []).append(i)
            outbound.setdefault((i, code), []).append(j)
        groups: list[tuple[int, str, int, list[int]]] = []  # (host, direction, code, peers)
        done: set[int] = set()
        ordered = sorted([("in", j, code, srcs) for (j, code), srcs in inbound.items()]
                         + [("out", i, code, dsts) for (i, code), dsts in outbound.items()],
                         key=lambda g: (-len(g[3]), g[0], g[1]))
        for direction, host, code, peers in ordered:
            fresh = [p for p in peers if ((p * n + host) if direction == "in" else (host * n + p)) not in done]
            if not fresh:
                continue
            for p in fresh:
                done.add((p * n + host) if direction == "in" else (host * n + p))
            groups.append((host, direction, code, fresh))
        for host, direction, code, peers in sorted(groups, key=lambda g: (g[0], g[1], g[2])):
            if direction == "in":
                of = n - codes[host::n].count(0)
                words = f"inbound {_state(code)} from {len(peers)} of {of} peers"
            else:
                of = n - codes[host * n:(host + 1) * n].count(0)
                words = f"outbound {_state(code)} to {len(peers)} of {of} peers"
            yield f"  {store.hosts[host]}: {label} {words} ({_names([store.hosts[p] for p in peers])})"


def render_rollup_text(result: Result, *, mismatches=None, color: bool = False) -> str:
    """The whole report for a mesh too wide for a matrix: rollups, then the same sections as the table."""
    from netprobe.report.words import describe_cell, error_line, fix_lines, skipped_line, total_line

    red, end = ("\x1b[31m", "\x1b[0m") if color else ("", "")
    lines = ["Too many hosts for a matrix at this width: failing flows per host.", ""]
    lines += rollup_lines(result)

    def section(title: str, items) -> None:
        items = list(items)
        if items:
            lines.extend(["", title, *(f"  {item}" for item in items)])

    section("Skipped checks:", (skipped_line(s) for s in result.skipped))
    flows = []
    for count, c in enumerate(result.store.problems()):
        if count == MAX_FLOWS:
            more = sum(v for k in range(len(result.store.checks))
                       for r, v in result.store.counts(k).items() if r is not Reach.ALLOWED) - MAX_FLOWS
            flows.append(f"and {more} more failing flows (the rollup above counts them; the result file, -o, "
                         "holds each one)")
            break
        flows.append(f"{red}{describe_cell(c)}{end}")
        flows += [f"  {line}" for line in fix_lines(c)]
    section("Blocked and unknown flows:", flows)
    if mismatches is not None:
        mismatches = list(mismatches)
        if mismatches:
            section("Expectation mismatches:", (m.describe() for m in mismatches))
        else:
            lines.extend(["", "Every cell as expected."])
    section("Errors:", (error_line(e) for e in result.errors))
    lines.extend(["", total_line(result)])
    return "\n".join(lines) + "\n"


__all__ = ["rollup_lines", "fits", "matrix_width", "render_rollup_text"]
