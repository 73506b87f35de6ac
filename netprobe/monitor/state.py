"""The watch's memory: the last result and a bounded timeline of what changed, run to run.

Pure: the caller passes the time (``when``); nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from netprobe.core.checks import lane_label
from netprobe.core.result import Cell, Reach, Result, diff

TIMELINE_MAX = 500


@dataclass(frozen=True)
class Event:
    """One line of the timeline: ``12:03:07 bgp node1 -> node2 became blocked at destination-ingress``."""

    when: datetime
    text: str               # without the time
    kind: str               # allowed | blocked | unknown | host  (the page colours by it)
    check: str | None = None
    src: str | None = None
    dst: str | None = None
    old: dict | None = None  # {"reach", "where"} before, None = not there
    new: dict | None = None
    family: int = 4

    def line(self) -> str:
        return f"{self.when:%H:%M:%S} {self.text}"

    def to_dict(self) -> dict:
        return {"time": self.when.isoformat(timespec="seconds"), "text": self.text, "line": self.line(),
                "kind": self.kind, "check": self.check, "family": self.family, "src": self.src, "dst": self.dst,
                "old": self.old, "new": self.new}


def _side(cell: Cell | None) -> dict | None:
    if cell is None:
        return None
    return {"reach": str(cell.reach), "where": None if cell.where is None else str(cell.where)}


def _state_words(cell: Cell) -> str:
    if cell.reach is Reach.BLOCKED:
        return "blocked" + (f" at {cell.where}" if cell.where else "")
    if cell.reach is Reach.UNKNOWN:
        return "unknown" + (f" ({cell.evidence.send_error})" if cell.evidence.send_error else "")
    return "allowed"


def changes_between(old: Result | None, new: Result, when: datetime) -> list[Event]:
    """What the timeline says about ``new`` after ``old`` (None: the first run).

    First run: every cell that is not allowed ("is blocked at ..."). Later: hosts that joined or
    left (one line each, not one per cell), and every cell present in both runs whose reach or
    where changed ("became blocked at ...", "became allowed"); a joining host's cells are named
    only when not allowed.
    """
    events: list[Event] = []

    def cell_event(verb: str, c: Cell, before: Cell | None) -> Event:
        return Event(when, f"{lane_label(c.check, c.family)} {c.src} -> {c.dst} {verb} {_state_words(c)}",
                     str(c.reach), c.check, c.src, c.dst, _side(before), _side(c), c.family)

    if old is None:
        return [cell_event("is", c, None) for c in new.cells if c.reach is not Reach.ALLOWED]
    old_hosts = [h.name for h in old.hosts]
    new_hosts = [h.name for h in new.hosts]
    joined = [h for h in new_hosts if h not in set(old_hosts)]
    left = [h for h in old_hosts if h not in set(new_hosts)]
    events += [Event(when, f"{h} joined", "host") for h in joined]
    events += [Event(when, f"{h} left", "host") for h in left]
    for change in diff(old, new):
        a, b = change.old, change.new
        if b is None:
            continue  # a host left, or a check was dropped: said once above (or not a flow any more)
        if a is None:
            if b.reach is not Reach.ALLOWED:
                events.append(cell_event("is", b, None))
            continue
        verb = "now" if a.reach is b.reach else "became"
        events.append(cell_event(verb, b, a))
    return events


@dataclass
class WatchState:
    """Everything the page, the metrics and the JSON endpoint show; updated once per run."""

    interval: float
    source: str = ""
    runs: int = 0
    last: Result | None = None
    last_finished: datetime | None = None
    last_duration: float | None = None
    last_error: str | None = None       # why the last attempt failed (no result), else None
    timeline: deque = field(default_factory=lambda: deque(maxlen=TIMELINE_MAX))
    outcomes: dict = field(default_factory=lambda: {"complete": 0, "partial": 0, "failed": 0})

    def record(self, result: Result, *, when: datetime, duration: float) -> list[Event]:
        """A finished run: returns the new timeline events (also appended, newest last)."""
        events = changes_between(self.last, result, when)
        self.timeline.extend(events)
        self.last = result
        self.runs += 1
        self.last_finished = when
        self.last_duration = duration
        self.last_error = None
        self.outcomes["partial" if result.errors else "complete"] += 1
        return events

    def record_failure(self, message: str, *, when: datetime, duration: float) -> None:
        """An attempt that produced no result (the inventory could not be read, ...). The timeline
        says it once while the same failure repeats (an API down for hours is one line)."""
        if message != self.last_error:
            self.timeline.append(Event(when, f"run failed: {message}", "unknown"))
        self.last_error = message
        self.last_duration = duration
        self.outcomes["failed"] += 1

    def agents_up(self) -> dict[str, bool]:
        """Per host of the last result: False when its agent failed a round."""
        if self.last is None:
            return {}
        failed = {e.get("host") for e in self.last.errors
                  if e.get("stage") in ("probe", "observe") and "kernel dropped" not in str(e.get("message", ""))}
        return {h.name: h.name not in failed for h in self.last.hosts}
