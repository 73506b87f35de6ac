"""The result model and its JSON form (``netprobe.result/v2``, docs/design.md "Result JSON"; v1
is still read), plus diff. A result's cells are a list or a compact ``MatrixStore``; ``store``
gives the store either way.

Pure: ``Result.to_json``/``from_json`` work on strings; reading and writing files is the caller's.
Reading is strict (a result file may come from anywhere): every field is checked, and a bad one
is one ``ConfigError`` naming the file and the field path; unknown keys are ignored, so an older
netprobe reads a newer one's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from netprobe.core.cells import MAX_CELLS, Cell, Evidence, HostInfo, Icmp, Reach, ReplyKind, Verdict, Where
from netprobe.core.fields import InvalidReport, integer, items, obj, text
from netprobe.core.matrix_store import MatrixStore, same_state
from netprobe.core.result_v2 import SCHEMA, cells_from_v2, cells_to_v2, dumps_v2
from netprobe.core.untrusted import load_json
from netprobe.errors import ConfigError

SCHEMA_V1 = "netprobe.result/v1"
SCHEMAS = (SCHEMA, SCHEMA_V1)


@dataclass
class Result:
    cells: Sequence[Cell]  # a list, or a compact ``MatrixStore`` (core/matrix_store.py)
    hosts: list[HostInfo] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)  # Check.to_dict() of each check run
    profile: str | None = None
    started: str | None = None   # ISO 8601, set by the caller (the core reads no clock)
    finished: str | None = None
    errors: list[dict] = field(default_factory=list)  # {"host": ..., "message": ...}
    skipped: list[dict] = field(default_factory=list)  # {"check": ..., "reason": ...}
    netprobe_version: str = ""
    sample: dict | None = None  # {"k": peers per host, "run": counter} when only a sample was probed

    @property
    def store(self):
        """The cells as a ``MatrixStore`` (built once from a list, and again if the list changes)."""
        if isinstance(self.cells, MatrixStore):
            return self.cells
        cached = self.__dict__.get("_store")
        if cached is None or cached[0] is not self.cells or cached[1] != len(self.cells):
            store = MatrixStore.from_cells(self.cells, [h.name for h in self.hosts],
                                           [c["id"] for c in self.checks if isinstance(c.get("id"), str)])
            cached = (self.cells, len(self.cells), store)
            self.__dict__["_store"] = cached
        return cached[2]

    def cell(self, check: str, src: str, dst: str, family: int = 4) -> Cell | None:
        return self.store.get(check, src, dst, family)

    def counts(self) -> dict[str, int]:
        """Cells by reach, plus skipped checks and errors: the summary a machine reads first (from
        the store's per-check counts: no cell is materialised)."""
        store = self.store
        out = {str(r): 0 for r in Reach}
        for k in range(len(store.checks)):
            for reach, n in store.counts(k).items():
                out[str(reach)] += n
        return {"cells": sum(out.values()), **out, "skipped": len(self.skipped), "errors": len(self.errors)}

    @property
    def status(self) -> str:
        """By the one exit rule: partial (errors), else fail (a blocked or unknown cell), else ok."""
        if self.errors:
            return "partial"
        counts = self.counts()
        return "fail" if counts["blocked"] or counts["unknown"] else "ok"

    def to_dict(self) -> dict[str, Any]:
        """The ``netprobe.result/v2`` form (docs/design.md "Result JSON")."""
        hosts = {h.name: h for h in self.hosts}
        store = self.store
        return {
            "schema": SCHEMA,
            "status": self.status,
            "counts": self.counts(),
            "netprobe_version": self.netprobe_version,
            "started": self.started,
            "finished": self.finished,
            "profile": self.profile,
            "sample": self.sample,
            "hosts": [_host_dict(hosts[name]) if name in hosts else {"name": name, "address": "", "roles": []}
                      for name in store.hosts],
            "checks": self.checks,
            "skipped": self.skipped,
            "errors": self.errors,
            **cells_to_v2(store),
        }

    def to_dict_v1(self) -> dict[str, Any]:
        """The ``netprobe.result/v1`` form: every cell with its evidence (small meshes, old readers)."""
        return {
            "schema": SCHEMA_V1,
            "netprobe_version": self.netprobe_version,
            "started": self.started,
            "finished": self.finished,
            "profile": self.profile,
            "hosts": [_host_dict(h) for h in self.hosts],
            "checks": self.checks,
            "cells": [c.to_dict() for c in self.cells],
            "skipped": self.skipped,
            "errors": self.errors,
            **({"sample": self.sample} if self.sample else {}),
        }

    def to_json(self) -> str:
        return dumps_v2(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "result") -> Result:
        """Strict: any malformed field is one ConfigError naming the file and the field path."""
        if not isinstance(d, dict):
            raise ConfigError("not a JSON object", file=source)
        if d.get("schema") not in SCHEMAS:
            raise ConfigError(f"expected {SCHEMA!r} (or {SCHEMA_V1!r}), got {d.get('schema')!r}", file=source,
                              field="schema")
        try:
            if d["schema"] == SCHEMA:
                header = _header(d)
                checks = [c["id"] for c in header["checks"] if isinstance(c.get("id"), str)]
                return cls(cells=cells_from_v2(d, [h.name for h in header["hosts"]], checks), **header)
            return cls._from_checked_dict(d)
        except InvalidReport as exc:
            raise ConfigError(exc.message, file=source, field=exc.field) from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "result") -> Result:
        return cls.from_dict(load_json(text, source=source), source=source)

    @classmethod
    def _from_checked_dict(cls, d: dict) -> Result:
        # status and counts are derived from the cells: checked for shape, then recomputed
        text(d.get("status"), "status", optional=True, limit=16)
        if d.get("counts") is not None:
            obj(d["counts"], "counts")
        cells = [Cell.from_dict(c, f"cells[{i}]") for i, c in enumerate(items(d.get("cells", []), "cells", MAX_CELLS))]
        return cls(cells=cells, **_header(d))


def _host_dict(h: HostInfo) -> dict:
    """A host of the result file: ``address6`` only for a dual-stack host (older readers skip it)."""
    out = {"name": h.name, "address": h.address, "roles": list(h.roles)}
    if h.address6 is not None and h.address6 != h.address:
        out["address6"] = h.address6
    return out


def _hosts(d: dict) -> list[HostInfo]:
    hosts = []
    for i, h in enumerate(items(d.get("hosts", []), "hosts", MAX_CELLS)):
        at = f"hosts[{i}]"
        obj(h, at, ("name",))
        roles = [text(r, f"{at}.roles[{j}]", limit=64) for j, r in enumerate(items(h.get("roles", []), f"{at}.roles", 64))]
        address = text(h.get("address", ""), f"{at}.address", limit=64)
        address6 = text(h.get("address6"), f"{at}.address6", limit=64, optional=True)
        hosts.append(HostInfo(text(h["name"], f"{at}.name", limit=255), address, tuple(roles),
                              address6 if address6 is not None else (address if ":" in address else None)))
    return hosts


def _header(d: dict) -> dict:
    """Every field of a result but its cells, checked (v1 and v2 share them)."""
    return dict(
            hosts=_hosts(d),
            checks=_objects(d.get("checks", []), "checks"),
            profile=text(d.get("profile"), "profile", optional=True, limit=64),
            started=text(d.get("started"), "started", optional=True, limit=64),
            finished=text(d.get("finished"), "finished", optional=True, limit=64),
            errors=_string_objects(d.get("errors", []), "errors"),
            skipped=_string_objects(d.get("skipped", []), "skipped"),
            netprobe_version=text(d.get("netprobe_version", ""), "netprobe_version", limit=64),
            sample=None if d.get("sample") is None else _sample(d["sample"]),
        )


def _sample(raw: Any) -> dict:
    obj(raw, "sample", ("k", "run"))
    return {"k": integer(raw["k"], "sample.k", 1 << 20), "run": integer(raw["run"], "sample.run", 1 << 62)}


def _objects(value: Any, field: str) -> list[dict]:
    return [obj(item, f"{field}[{i}]") for i, item in enumerate(items(value, field, MAX_CELLS))]


def _string_objects(value: Any, field: str) -> list[dict]:
    """A list of objects whose values are strings (errors, skipped checks)."""
    items = _objects(value, field)
    for i, item in enumerate(items):
        for key, v in item.items():
            text(v, f"{field}[{i}].{key}", limit=4096)
    return items


@dataclass(frozen=True)
class Change:
    """One cell whose reach (or where) differs between two results; None = absent there."""

    check: str
    src: str
    dst: str
    old: Cell | None
    new: Cell | None
    family: int = 4



def diff(old: Result, new: Result) -> list[Change]:
    """Cells whose reach or where changed, appeared or disappeared, in a stable order."""
    a_store, b_store = old.store, new.store
    if (a_store.hosts == b_store.hosts and a_store.checks == b_store.checks
            and a_store.families == b_store.families):
        changes = []
        for k in range(len(a_store.checks)):
            for pos in same_state(a_store.codes[k], b_store.codes[k]):
                a, b = a_store.cell_at(k, pos), b_store.cell_at(k, pos)
                changes.append(_change((a or b).key, a, b))  # type: ignore[union-attr]
        return sorted(changes, key=lambda c: (c.check, c.family, c.src, c.dst))
    old_cells = {c.key: c for c in old.cells}
    new_cells = {c.key: c for c in new.cells}
    changes = []
    for key in sorted(old_cells.keys() | new_cells.keys(), key=lambda k: (k[0], k[3], k[1], k[2])):
        a, b = old_cells.get(key), new_cells.get(key)
        if a is not None and b is not None and (a.reach, a.where) == (b.reach, b.where):
            continue
        changes.append(_change(key, a, b))
    return changes


def _change(key: tuple[str, str, str, int], old: Cell | None, new: Cell | None) -> Change:
    check, src, dst, family = key
    return Change(check, src, dst, old, new, family)


__all__ = [
    "SCHEMA", "SCHEMAS", "Reach", "Where", "Verdict", "ReplyKind", "Icmp", "Evidence", "Cell", "HostInfo",
    "Result", "Change", "diff",
]
