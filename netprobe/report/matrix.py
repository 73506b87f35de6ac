"""The layout every matrix renderer shares: which checks get a matrix, in what order, and which
hosts are its rows (sources) and columns (destinations).

Orders come from the result (``result.checks``, ``result.hosts``) so every format lists flows
the same way; anything a hand-edited result names but does not declare is appended, never lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from netprobe.core.checks import lane_label
from netprobe.core.result import Cell, Result


@dataclass(frozen=True)
class Matrix:
    check: str
    title: str              # e.g. "bgp: Calico networking (BGP), tcp/179", "bgp (IPv6): ..."
    rows: list[str]         # source hosts
    cols: list[str]         # destination hosts
    cells: dict[tuple[str, str], Cell]
    family: int = 4

    @property
    def label(self) -> str:
        return lane_label(self.check, self.family)

    def key(self, src: str, dst: str) -> tuple[str, str, str, int]:
        """The identity of the cell at (src, dst): what mismatch and finding keys hold."""
        return (self.check, src, dst, self.family)

    def get(self, src: str, dst: str) -> Cell | None:
        return self.cells.get((src, dst))

    def flows(self) -> Iterator[Cell]:
        """Cells in reading order: row by row, left to right."""
        for src in self.rows:
            for dst in self.cols:
                cell = self.cells.get((src, dst))
                if cell is not None:
                    yield cell


def _ordered(names: Iterable[str], order: list[str]) -> list[str]:
    present = dict.fromkeys(names)
    known = [n for n in order if n in present]
    return known + [n for n in present if n not in set(known)]


def check_title(check: dict, family: int = 4) -> str:
    """``id: description, proto/port`` from a Check.to_dict(), tolerant of missing keys; the id
    says ``(IPv6)`` for the matrix of a check probed over IPv6."""
    cid = lane_label(check.get("id", "?"), family)
    desc = check.get("description")
    proto = check.get("proto")
    port = check.get("port")
    wire = f"{proto}/{port}" if proto and port is not None else (proto or "")
    detail = ", ".join(p for p in (desc if desc and desc != check.get("id", "?") else None, wire) if p)
    return f"{cid}: {detail}" if detail else cid


def matrices(result: Result) -> list[Matrix]:
    """One matrix per check and family with cells, in ``result.checks`` order (IPv4 first)."""
    declared = {c.get("id"): c for c in result.checks}
    by_lane: dict[tuple[str, int], list[Cell]] = {}
    for cell in result.cells:
        by_lane.setdefault((cell.check, cell.family), []).append(cell)
    host_order = [h.name for h in result.hosts]
    out = []
    for cid in _ordered((c for c, _f in by_lane), list(declared)):
        for family in sorted(f for c, f in by_lane if c == cid):
            cells = by_lane[(cid, family)]
            out.append(Matrix(
                check=cid,
                title=check_title(declared.get(cid, {"id": cid}), family),
                rows=_ordered((c.src for c in cells), host_order),
                cols=_ordered((c.dst for c in cells), host_order),
                cells={(c.src, c.dst): c for c in cells},
                family=family,
            ))
    return out


def ordered_cells(result: Result) -> list[Cell]:
    """Every cell in matrix reading order (check, then source, then destination)."""
    return [cell for m in matrices(result) for cell in m.flows()]


def problem_cells(result: Result) -> list[Cell]:
    """The blocked and unknown cells, in reading order: what a summary names in words."""
    return list(result.store.problems())  # a scan of the byte tables, in the same reading order


def mismatch_key(mismatch: object) -> tuple[str, str, str, int] | None:
    """(check, src, dst, family) of an expectation mismatch or finding, via its fields or its cell
    (``actual``)."""
    try:
        return (mismatch.check, mismatch.src, mismatch.dst, getattr(mismatch, "family", 4))  # type: ignore[attr-defined]
    except AttributeError:
        cell = getattr(mismatch, "actual", None) or getattr(mismatch, "cell", None)
        return None if cell is None else cell.key


def mismatch_keys(mismatches: Iterable[object] | None) -> set[tuple[str, str, str, int]]:
    return {k for k in map(mismatch_key, mismatches or ()) if k is not None}


__all__ = ["Matrix", "check_title", "matrices", "ordered_cells", "problem_cells", "mismatch_key", "mismatch_keys"]
