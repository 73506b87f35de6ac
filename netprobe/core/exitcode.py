"""The one exit-code rule every command answers by (mesh, verify, diff, lab run, probe, preflight).

    3  the run was partial: any error (an agent failed or answered garbage, the kernel dropped
       captured packets, a compared result was itself partial). Checked first: a partial run
       proves nothing either way, so its failures do not get to say 1.
    1  otherwise, anything failed: a blocked or unknown cell (mesh), a blocked cell (probe), a
       mismatch or change (verify, lab run, diff), a failing requirement (preflight).
    0  otherwise.

Bad input is 2 and comes from ``ConfigError`` before anything runs, never from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from netprobe.core.result import Cell, Reach, Result, Where

OK, FAILED, PARTIAL = 0, 1, 3


def exit_code(*, partial: bool, failed: bool) -> int:
    """The rule itself."""
    if partial:
        return PARTIAL
    return FAILED if failed else OK


def mesh_exit_code(result: Result) -> int:
    """A mesh fails unless every cell is proven allowed."""
    return exit_code(partial=bool(result.errors), failed=(any(c.reach is not Reach.ALLOWED for c in result.cells) if isinstance(result.cells, list)
                                                else next(iter(result.store.problems()), None) is not None))


def compared_exit_code(results: Iterable[Result], differences: int) -> int:
    """lab run (verify and diff judge through core/verdicts.py, by the same rule): the results compared (any partial makes the answer partial),
    and how many cells differ from the expectation or the baseline."""
    return exit_code(partial=any(r.errors for r in results), failed=differences > 0)


def probe_exit_code(cells: Iterable[Cell], kernel_drops: int, queue_drops: int = 0) -> int:
    """One-shot probe: without a responder, unknown is the normal answer; only blocked fails.
    Partial when the kernel dropped captured packets, or when this host's own queues dropped
    packets (core/queues.py) and a probe got no answer (it may be one of them)."""
    cells = list(cells)
    lost = queue_drops > 0 and any(c.evidence.reply is None and c.evidence.sent and c.reach is not Reach.ALLOWED
                                   and c.where not in (Where.SOURCE_EGRESS, Where.DESTINATION_INGRESS) for c in cells)
    return exit_code(partial=kernel_drops > 0 or lost, failed=any(c.reach is Reach.BLOCKED for c in cells))
