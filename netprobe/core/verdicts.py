"""The verdict of ``verify`` and ``diff``: which cells differ, how, and whether that fails.

One ``Judgement`` per run, rendered by every format (table, JSON, Markdown, JUnit) so each says
the same thing: the findings (check, src, dst, kind, expected, got), regressions apart from
fixes, and the exit code by the one rule (3 partial, else 1 if anything failing, else 0).

- ``--expect``: every mismatch is a finding of kind ``mismatch`` and fails.
- ``--baseline`` and ``diff``: every changed cell is a finding, classified by ``classify``:
  ``regression`` (something proven before is worse or gone now), ``fix`` (blocked or unknown
  before, allowed now) or ``change`` (neither: blocked elsewhere, unknown -> blocked, a new
  allowed cell). ``fail_on="regressions"`` (the default) fails on regressions only,
  ``"changes"`` on every finding.

Pure: findings in, findings out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netprobe.core.checks import lane_label
from netprobe.core.exitcode import exit_code
from netprobe.core.explain import Explain
from netprobe.core.result import Cell, Change, Reach, Verdict, Where

SCHEMA = "netprobe.verdict/v1"
FAIL_ON = ("regressions", "changes")
MODES = ("expect", "baseline", "diff")


class Kind(StrEnum):
    MISMATCH = "mismatch"
    REGRESSION = "regression"
    FIX = "fix"
    CHANGE = "change"


@dataclass(frozen=True)
class State:
    """What a cell showed (or must show): reach, where, verdict (None: any / not said)."""

    reach: Reach
    where: Where | None = None
    verdict: Verdict | None = None

    @classmethod
    def of(cls, cell: Cell | None) -> State | None:
        return None if cell is None else cls(cell.reach, cell.where, cell.verdict)

    def words(self) -> str:
        text = str(self.reach) + (f" at {self.where}" if self.where is not None else "")
        return text + (f" ({self.verdict})" if self.verdict is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"reach": str(self.reach), "where": None if self.where is None else str(self.where),
                "verdict": None if self.verdict is None else str(self.verdict)}


def _words(state: State | None) -> str:
    return "absent" if state is None else state.words()


@dataclass(frozen=True)
class Finding:
    """One cell that differs. For ``--baseline``/``diff``, ``expected`` is the earlier run's cell."""

    check: str
    src: str
    dst: str
    kind: Kind
    expected: State | None
    got: State | None
    failing: bool
    rule: int | None = None  # the expectation rule that decided (None: its default); expect only
    family: int = 4
    explain: Explain | None = None  # the explanation of the cell as got now (a blocked cell's)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.check, self.src, self.dst, self.family)

    @property
    def label(self) -> str:
        return lane_label(self.check, self.family)

    def describe(self) -> str:
        why = self.explain.words() if self.explain is not None else ""
        why = f": {why}" if why else ""
        if self.kind is Kind.MISMATCH:
            return (f"{self.label} {self.src} -> {self.dst}: expected {_words(self.expected)}, "
                    f"got {_words(self.got)}{why}")
        return f"{self.label} {self.src} -> {self.dst}: was {_words(self.expected)}, now {_words(self.got)}{why}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "check": self.check, "src": self.src, "dst": self.dst, "kind": str(self.kind), "failing": self.failing,
            "expected": None if self.expected is None else self.expected.to_dict(),
            "got": None if self.got is None else self.got.to_dict(),
        }
        if self.family != 4:  # absent = IPv4, as in result files
            d["family"] = self.family
        if self.kind is Kind.MISMATCH:
            d["rule"] = self.rule
        if self.explain is not None:
            d["explain"] = self.explain.to_dict()
        return d


@dataclass(frozen=True)
class Judgement:
    mode: str  # expect | baseline | diff
    fail_on: str  # mismatches (expect) | regressions | changes
    findings: tuple[Finding, ...]
    partial: bool = False  # a run had errors: an unknown cell may hide the answer

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.failing]

    def of_kind(self, kind: Kind) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]

    def counts(self) -> dict[str, int]:
        n = {str(k): 0 for k in Kind}
        for f in self.findings:
            n[str(f.kind)] += 1
        return {"mismatches": n["mismatch"], "regressions": n["regression"], "fixes": n["fix"],
                "other_changes": n["change"], "findings": len(self.findings), "failing": len(self.failing)}

    @property
    def exit_code(self) -> int:
        """The one rule (core/exitcode.py): 3 partial, else 1 when a finding fails, else 0."""
        return exit_code(partial=self.partial, failed=bool(self.failing))

    @property
    def status(self) -> str:
        return {3: "partial", 1: "fail", 0: "ok"}[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "fail_on": self.fail_on, "status": self.status, "exit_code": self.exit_code,
                "counts": self.counts(), "findings": [f.to_dict() for f in self.findings]}


def classify(old: Cell | None, new: Cell | None) -> Kind:
    """Regression, fix or other change for a cell that differs between two runs."""
    if new is None:
        return Kind.REGRESSION  # a cell proven before is not proven now
    if old is None:
        return Kind.CHANGE if new.reach is Reach.ALLOWED else Kind.REGRESSION
    if new.reach is Reach.ALLOWED:
        return Kind.FIX if old.reach is not Reach.ALLOWED else Kind.CHANGE
    if old.reach is Reach.ALLOWED:
        return Kind.REGRESSION  # allowed -> blocked or unknown
    if new.reach is Reach.UNKNOWN and old.reach is Reach.BLOCKED:
        return Kind.REGRESSION  # proven blocked -> nothing proven
    return Kind.CHANGE  # blocked elsewhere, unknown -> blocked


def from_mismatches(mismatches: Iterable[Any], *, partial: bool = False) -> Judgement:
    """``--expect``: every ``core.expect.Mismatch`` fails."""
    findings = tuple(
        Finding(m.check, m.src, m.dst, Kind.MISMATCH, State(m.expected, m.expected_where),
                State.of(m.actual), True, m.rule, m.family, m.actual.explain)
        for m in mismatches
    )
    return Judgement("expect", "mismatches", findings, partial)


def from_changes(changes: Iterable[Change], *, mode: str = "diff", fail_on: str = "regressions",
                 partial: bool = False) -> Judgement:
    """``--baseline`` and ``diff``: ``core.result.diff``'s changes, classified."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, got {fail_on!r}")
    findings = []
    for c in changes:
        kind = classify(c.old, c.new)
        failing = kind is Kind.REGRESSION or fail_on == "changes"
        findings.append(Finding(c.check, c.src, c.dst, kind, State.of(c.old), State.of(c.new), failing,
                                family=c.family, explain=c.new.explain if c.new is not None else None))
    return Judgement(mode, fail_on, tuple(findings), partial)


__all__ = ["SCHEMA", "FAIL_ON", "MODES", "Kind", "State", "Finding", "Judgement", "classify",
           "from_mismatches", "from_changes"]
