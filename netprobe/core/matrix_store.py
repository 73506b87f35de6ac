"""The compact in-memory form of a mesh's cells: one byte per cell per check, full ``Cell``s only
where the evidence is not the plain one its code implies.

A 1,000-host calico mesh has ~2 million cells; as ``Cell`` objects with an ``Evidence`` each
that is gigabytes. Here each *lane* -- a check over one address family, (check id, 4 or 6) -- is
a host x host table:

- ``codes``: a ``bytearray`` of ``n * n`` (row = source index, column = destination index),
  0 = no cell (self, not planned, not sampled), else ``1 + packed(reach, where, verdict)``;
- ``rtt``: an ``array('q')`` of the same size, in whole microseconds (-1 = no RTT; results keep
  RTTs to the microsecond anyway);
- ``detail``: the full ``Cell`` of every cell whose evidence is not the *plain* evidence its
  code implies (plain: allowed, answered at once and seen at both ends; see ``plain_evidence``).

``MatrixStore`` is a ``Sequence[Cell]``: iterating materialises each cell on the fly (nothing
kept), so code written for a list of cells works unchanged; renderers that must scale use the
fast paths (``problems``, ``counts``, ``code_at``, ``rows``). Pure: no I/O.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from itertools import compress
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from netprobe.core.cells import Cell, Evidence, Reach, ReplyKind, Verdict, Where

REACHES = tuple(Reach)
WHERES = (None, *Where)
VERDICTS = tuple(Verdict)
_NW, _NV = len(WHERES), len(VERDICTS)
NO_CELL = 0
NO_RTT = -1

# the reply an allowed cell's sender saw, by verdict, when its evidence is plain
PLAIN_REPLY = {Verdict.OPEN: ReplyKind.SYN_ACK, Verdict.CLOSED: ReplyKind.RST, Verdict.ANSWERED: ReplyKind.ECHO}


def pack(reach: Reach, where: Where | None, verdict: Verdict) -> int:
    return 1 + (REACHES.index(reach) * _NW + WHERES.index(where)) * _NV + VERDICTS.index(verdict)


def unpack(code: int) -> tuple[Reach, Where | None, Verdict]:
    rw, v = divmod(code - 1, _NV)
    r, w = divmod(rw, _NW)
    return REACHES[r], WHERES[w], VERDICTS[v]


ALL_CODES = tuple(range(1, 1 + len(REACHES) * _NW * _NV))
DECODED = {code: unpack(code) for code in ALL_CODES}
ALLOWED_CODES = frozenset(c for c, (r, _w, _v) in DECODED.items() if r is Reach.ALLOWED)
PROBLEM_CODES = frozenset(ALL_CODES) - ALLOWED_CODES
NOT_PROBED_CODE = pack(Reach.UNKNOWN, None, Verdict.ERROR)
# byte tables for scans in C: a table's codes mapped to 1 + their reach's index, or to 1 for a problem
_TO_REACH = bytes([0, *(1 + REACHES.index(DECODED[c][0]) for c in ALL_CODES)]).ljust(256, b"\x00")
_TO_ALLOWED = bytes([0, *(int(c in ALLOWED_CODES) for c in ALL_CODES)]).ljust(256, b"\x00")
_TO_ANY = bytes([0, *(1 for _c in ALL_CODES)]).ljust(256, b"\x00")
_TO_PROBLEM = bytes([0, *(int(c in PROBLEM_CODES) for c in ALL_CODES)]).ljust(256, b"\x00")

_PLAIN_EVIDENCE = {v: Evidence(sent=True, left=True, reply=reply, reply_arrived=True, reply_accepted=True,
                               arrived=True, reached_ip=True, accepted=True, answered=True, attempts=1)
                   for v, reply in PLAIN_REPLY.items()}


def plain_evidence(code: int) -> Evidence | None:
    """The evidence a code implies when no detail is kept, or None when it implies none (only
    allowed cells answered at once and seen at both ends are plain)."""
    reach, where, verdict = DECODED[code]
    if reach is not Reach.ALLOWED or where is not None:
        return None
    return _PLAIN_EVIDENCE.get(verdict)


def is_plain(cell: Cell) -> bool:
    return (cell.reach is Reach.ALLOWED and cell.where is None and cell.explain is None
            and _PLAIN_EVIDENCE.get(cell.verdict) == cell.evidence)


class SparseColumn(dict):
    """RTTs of a sampled run: only the probed positions (a dense column at 5,000 hosts is 200 MB)."""

    def __missing__(self, pos: int) -> int:
        return NO_RTT


Lane = tuple[str, int]  # (check id, address family)


def as_lane(lane: str | Lane) -> Lane:
    """A check id alone is its IPv4 lane."""
    return (lane, 4) if isinstance(lane, str) else (lane[0], lane[1])


class MatrixStore(Sequence[Cell]):
    """Every cell of a run, per lane (check and family), as host x host byte tables (see the module doc).

    ``checks`` lists the lanes: a check id (IPv4) or a (check id, family) pair each; ``checks[k]``
    and ``families[k]`` are lane ``k``'s. ``sparse``: RTTs in dicts (a sampled run probes a few
    peers per host); codes stay dense.
    """

    def __init__(self, hosts: Sequence[str], checks: Sequence[str | Lane], *, sparse: bool = False):
        self.hosts: list[str] = list(hosts)
        lanes = [as_lane(c) for c in checks]
        self.checks: list[str] = [c for c, _f in lanes]
        self.families: list[int] = [f for _c, f in lanes]
        self.index = {h: i for i, h in enumerate(self.hosts)}
        self.check_index: dict[Lane, int] = {lane: i for i, lane in enumerate(lanes)}
        n = len(self.hosts)
        self.n = n
        self.codes: list[bytearray] = [bytearray(n * n) for _ in self.checks]
        self.sparse = sparse
        self.rtt: list = [SparseColumn() if sparse else array("q", [NO_RTT]) * (n * n) for _ in self.checks]
        self.detail: dict[tuple[int, int], Cell] = {}  # (check index, i * n + j) -> Cell
        # source host index -> why its cells were not probed (its agent failed): those cells are
        # unknown/error with Evidence(sent=False, attempts=0, send_error="not probed: REASON")
        self.not_probed: dict[int, str] = {}
        self._count = 0
        self._counts: dict[int, dict[Reach, int]] = {}  # per check, until a write changes it

    # ------------------------------------------------------------ building

    def lane(self, k: int) -> Lane:
        return self.checks[k], self.families[k]

    @classmethod
    def from_cells(cls, cells: Iterable[Cell], hosts: Sequence[str] = (),
                   checks: Sequence[str | Lane] = ()) -> MatrixStore:
        """A store holding ``cells``; hosts and lanes named by cells but not declared are appended
        (each check's lanes next to each other, IPv4 first)."""
        cells = list(cells)
        host_names = dict.fromkeys(hosts)
        lanes = dict.fromkeys(as_lane(c) for c in checks)
        for c in cells:
            host_names.setdefault(c.src)
            host_names.setdefault(c.dst)
            lanes.setdefault((c.check, c.family))
        order = list(dict.fromkeys(c for c, _f in lanes))
        store = cls(list(host_names), sorted(lanes, key=lambda lane: (order.index(lane[0]), lane[1])))
        for c in cells:
            store.put(c)
        return store

    def put(self, cell: Cell) -> None:
        """Keep one cell (its detail only when its evidence is not plain); a later put of the
        same (check, src, dst, family) replaces the earlier one."""
        k = self.check_index[(cell.check, cell.family)]
        pos = self.index[cell.src] * self.n + self.index[cell.dst]
        if self.codes[k][pos] == NO_CELL:
            self._count += 1
        self._counts.pop(k, None)
        self.codes[k][pos] = pack(cell.reach, cell.where, cell.verdict)
        self.rtt[k][pos] = NO_RTT if cell.rtt_ms is None else round(cell.rtt_ms * 1000)
        if is_plain(cell):
            self.detail.pop((k, pos), None)
        else:
            self.detail[(k, pos)] = cell

    def recount(self) -> None:
        """Count the cells again: required after writing codes straight into the tables."""
        self._counts = {}
        self._count = sum(self.cell_count(k) for k in range(len(self.checks)))

    def set_table(self, k: int, codes: bytearray) -> None:
        """Replace check ``k``'s whole code table (a reader building a store from tables; call
        ``recount`` after the last)."""
        self.codes[k] = codes
        self._counts.pop(k, None)

    def put_not_probed(self, k: int, pos: int, reason: str) -> None:
        """A cell its sender never probed (its agent failed): one reason per source, no Cell kept."""
        src = pos // self.n
        known = self.not_probed.setdefault(src, reason)
        if known != reason:  # a second reason for the same source: keep this cell whole
            ev = Evidence(sent=False, attempts=0, send_error=f"not probed: {reason}")
            self.put(Cell(self.checks[k], self.hosts[src], self.hosts[pos % self.n], Reach.UNKNOWN, None,
                          Verdict.ERROR, None, ev, self.families[k]))
            return
        self.put_plain(k, pos, NOT_PROBED_CODE, None)

    def put_plain(self, k: int, pos: int, code: int, rtt_ms: float | None) -> None:
        """The fast path: a cell whose evidence is the plain one ``code`` implies."""
        codes = self.codes[k]
        if codes[pos] == NO_CELL:
            self._count += 1
        self._counts.pop(k, None)
        codes[pos] = code
        self.rtt[k][pos] = NO_RTT if rtt_ms is None else round(rtt_ms * 1000)

    # ------------------------------------------------------------ reading

    def cell_at(self, k: int, pos: int) -> Cell | None:
        code = self.codes[k][pos]
        if code == NO_CELL:
            return None
        full = self.detail.get((k, pos))
        if full is not None:
            return full
        reach, where, verdict = DECODED[code]
        rtt = self.rtt[k][pos]
        src, dst = divmod(pos, self.n)
        ev = plain_evidence(code)
        if ev is None:
            reason = self.not_probed.get(src) if code == NOT_PROBED_CODE else None
            ev = Evidence() if reason is None else Evidence(sent=False, attempts=0, send_error=f"not probed: {reason}")
        return Cell(self.checks[k], self.hosts[src], self.hosts[dst], reach, where, verdict,
                    None if rtt < 0 else rtt / 1000, ev, self.families[k])

    def get(self, check: str, src: str, dst: str, family: int = 4) -> Cell | None:
        k, i, j = self.check_index.get((check, family)), self.index.get(src), self.index.get(dst)
        if k is None or i is None or j is None:
            return None
        return self.cell_at(k, i * self.n + j)

    def code(self, check: str, src: str, dst: str, family: int = 4) -> int:
        k, i, j = self.check_index.get((check, family)), self.index.get(src), self.index.get(dst)
        return NO_CELL if k is None or i is None or j is None else self.codes[k][i * self.n + j]

    def positions(self, k: int) -> Iterator[int]:
        """Positions holding a cell in check ``k``, in reading order."""
        flags = self.codes[k].translate(_TO_ANY)  # runs of cells found by memchr, dense or sparse
        start = flags.find(1)
        while start >= 0:
            end = flags.find(0, start)
            if end < 0:
                end = len(flags)
            yield from range(start, end)
            start = flags.find(1, end)

    def problem_positions(self, k: int) -> Iterator[int]:
        """Positions of the blocked and unknown cells of check ``k``, in reading order (scans in C:
        one translate, then memchr from problem to problem)."""
        flags = self.codes[k].translate(_TO_PROBLEM)
        pos = flags.find(1)
        while pos >= 0:
            yield pos
            pos = flags.find(1, pos + 1)

    def problems(self) -> Iterator[Cell]:
        """The blocked and unknown cells, check by check, in reading order."""
        for k in range(len(self.checks)):
            for pos in self.problem_positions(k):
                yield self.cell_at(k, pos)  # type: ignore[misc]

    def max_rtt_ms(self) -> float | None:
        """The slowest RTT of any cell (None: no cell was timed)."""
        most = max((max(col.values() if isinstance(col, dict) else col, default=NO_RTT) for col in self.rtt),
                   default=NO_RTT)
        return None if most < 0 else most / 1000

    def counts(self, k: int) -> dict[Reach, int]:
        return dict(self._reach_counts(k))

    def _reach_counts(self, k: int) -> dict[Reach, int]:
        """Cells of check ``k`` by reach, counted in C passes (empty positions dropped, then one
        translate and a count per reach) once until a write changes the table."""
        counted = self._counts.get(k)
        if counted is None:
            reaches = self.codes[k].translate(None, b"\x00").translate(_TO_REACH)
            counted = self._counts[k] = {r: reaches.count(1 + i) for i, r in enumerate(REACHES)}
        return counted

    def allowed_rtts(self, k: int) -> list[int]:
        """The RTTs (microseconds) of check ``k``'s allowed cells that have one, sorted (the
        allowed cells picked in C: a translate and ``itertools.compress``)."""
        column = self.rtt[k]
        if isinstance(column, array):
            values = list(compress(column, self.codes[k].translate(_TO_ALLOWED)))
        else:
            codes = self.codes[k]
            values = [column[pos] for pos in self.positions(k) if codes[pos] in ALLOWED_CODES]
        values.sort()
        return values[bisect_left(values, 0):]  # NO_RTT (-1) sorts first

    def used_codes(self, k: int) -> set[int]:
        """The distinct codes check ``k`` holds (its empty positions dropped in C first)."""
        return set(self.codes[k].translate(None, b"\x00"))

    def cell_count(self, k: int) -> int:
        return sum(self._reach_counts(k).values())

    def has_cells(self, k: int) -> bool:
        return self.cell_count(k) > 0

    # ------------------------------------------------------------ Sequence[Cell]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Cell]:
        for k in range(len(self.checks)):
            for pos in self.positions(k):
                yield self.cell_at(k, pos)  # type: ignore[misc]

    @overload
    def __getitem__(self, index: int) -> Cell: ...
    @overload
    def __getitem__(self, index: slice) -> list[Cell]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("cell index out of range")
        for i, cell in enumerate(self):
            if i == index:
                return cell
        raise IndexError("cell index out of range")  # pragma: no cover

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            # the same cells, whatever the order (a store keeps reading order, a list its own)
            return len(self) == len(other) and {c.key: c for c in self} == {c.key: c for c in other}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MatrixStore({len(self.hosts)} hosts, {len(self.checks)} lanes, {len(self)} cells)"


__all__ = ["MatrixStore", "Lane", "as_lane", "NOT_PROBED_CODE", "pack", "unpack", "plain_evidence", "is_plain", "DECODED", "ALLOWED_CODES",
           "PROBLEM_CODES", "NO_CELL", "PLAIN_REPLY"]


def _state_key(code: int) -> tuple | None:
    return None if code == NO_CELL else DECODED[code][:2]


_SAME_STATE = {(a, b): _state_key(a) == _state_key(b) for a in (NO_CELL, *ALL_CODES) for b in (NO_CELL, *ALL_CODES)}


def same_state(a: bytearray, b: bytearray) -> Iterator[int]:
    """Positions where two tables differ in reach or where (or a cell appeared/disappeared)."""
    if a == b:
        return
    n = len(a)
    step = 4096
    for start in range(0, n, step):
        if a[start:start + step] == b[start:start + step]:
            continue
        for pos in range(start, min(n, start + step)):
            if not _SAME_STATE[(a[pos], b[pos])]:
                yield pos
