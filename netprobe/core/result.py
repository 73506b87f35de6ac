"""The result model and its JSON form (``netprobe.result/v1``, docs/design.md "Result JSON"),
plus diff.

Pure: ``Result.to_json``/``from_json`` work on strings; reading and writing files is the caller's.
Reading is strict (a result file may come from anywhere): every field is checked, and a bad one
is one ``ConfigError`` naming the file and the field path; unknown keys are ignored, so an older
netprobe reads a newer one's results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netprobe.core.fields import InvalidReport, choice, flag, integer, items, number, obj, text
from netprobe.core.untrusted import load_json
from netprobe.errors import ConfigError

SCHEMA = "netprobe.result/v2"
# v2 added the derived summary (``status``, ``counts``, as preflight JSON has); v1 files still read.
READ_SCHEMAS = ("netprobe.result/v1", SCHEMA)


class Reach(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"


class Where(StrEnum):
    SOURCE_EGRESS = "source-egress"
    NETWORK = "network"
    DESTINATION_INGRESS = "destination-ingress"
    RETURN_PATH = "return-path"


class Verdict(StrEnum):
    """What the sender saw, in nmap's words (``answered``: the responder echoed our probe)."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    REJECTED = "rejected"
    ANSWERED = "answered"
    ERROR = "error"


class ReplyKind(StrEnum):
    SYN_ACK = "syn-ack"
    RST = "rst"
    ICMP = "icmp"
    ECHO = "echo"


@dataclass(frozen=True)
class Icmp:
    type: int
    code: int
    sender: str  # who sent the ICMP error (the target, or a router/firewall on the way)

    def to_dict(self) -> dict:
        return {"type": self.type, "code": self.code, "from": self.sender}

    @classmethod
    def from_dict(cls, d: Any, field: str = "icmp") -> Icmp:
        obj(d, field, ("type", "code", "from"))
        return cls(type=integer(d["type"], f"{field}.type", 255), code=integer(d["code"], f"{field}.code", 255),
                   sender=text(d["from"], f"{field}.from", limit=64))


MAX_CELLS = 100_000_000  # any list of a result file


@dataclass(frozen=True)
class Evidence:
    """Everything both ends saw of one probe (with its retries).

    Sender side: ``sent`` (False when this host's own firewall refused the send: EPERM),
    ``reply`` kind and ``icmp`` details, whether the reply ``reply_arrived`` at the sender's tap
    and was ``reply_accepted`` by its INPUT. Responder side (None = no responder evidence):
    ``arrived`` (tap, before netfilter), ``accepted`` (raw socket, after INPUT), ``answered``
    (the tap saw the destination's SYN-ACK/RST/ICMP/echo leave).
    """

    sent: bool = True
    reply: ReplyKind | None = None
    icmp: Icmp | None = None
    reply_arrived: bool = False
    reply_accepted: bool = False
    arrived: bool | None = None
    accepted: bool | None = None
    answered: bool | None = None
    attempts: int = 1
    send_error: str | None = None

    @property
    def has_responder(self) -> bool:
        return self.arrived is not None

    def to_dict(self) -> dict:
        return {
            "sent": self.sent,
            "arrived": self.arrived,
            "accepted": self.accepted,
            "answered": self.answered,
            "reply": None if self.reply is None else str(self.reply),
            "icmp": None if self.icmp is None else self.icmp.to_dict(),
            "reply_arrived": self.reply_arrived,
            "reply_accepted": self.reply_accepted,
            "attempts": self.attempts,
            "send_error": self.send_error,
        }

    @classmethod
    def from_dict(cls, d: Any, field: str = "evidence") -> Evidence:
        """Strict: wrong types and out-of-range numbers raise ``InvalidReport``; unknown keys are
        ignored (a newer netprobe may add some)."""
        obj(d, field)
        at = f"{field}."
        icmp = d.get("icmp")
        return cls(
            sent=flag(d.get("sent", True), at + "sent"),
            reply=None if d.get("reply") is None else choice(ReplyKind, d["reply"], at + "reply"),
            icmp=None if icmp is None else Icmp.from_dict(icmp, at + "icmp"),
            reply_arrived=flag(d.get("reply_arrived", False), at + "reply_arrived"),
            reply_accepted=flag(d.get("reply_accepted", False), at + "reply_accepted"),
            arrived=flag(d.get("arrived"), at + "arrived", optional=True),
            accepted=flag(d.get("accepted"), at + "accepted", optional=True),
            answered=flag(d.get("answered"), at + "answered", optional=True),
            attempts=integer(d.get("attempts", 1), at + "attempts", 1000),
            send_error=text(d.get("send_error"), at + "send_error", optional=True),
        )


@dataclass(frozen=True)
class Cell:
    check: str
    src: str
    dst: str
    reach: Reach
    where: Where | None
    verdict: Verdict
    rtt_ms: float | None = None
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.check, self.src, self.dst)

    def to_dict(self) -> dict:
        return {
            "check": self.check,
            "src": self.src,
            "dst": self.dst,
            "reach": str(self.reach),
            "where": None if self.where is None else str(self.where),
            "verdict": str(self.verdict),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "evidence": self.evidence.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Any, field: str = "cell") -> Cell:
        """Strict, like ``Evidence.from_dict``; ``field`` prefixes the path in errors."""
        obj(d, field, ("check", "src", "dst", "reach", "verdict"))
        at = f"{field}."
        evidence = d.get("evidence")
        return cls(
            check=text(d["check"], at + "check", limit=64),
            src=text(d["src"], at + "src", limit=255),
            dst=text(d["dst"], at + "dst", limit=255),
            reach=choice(Reach, d["reach"], at + "reach"),
            where=None if d.get("where") is None else choice(Where, d["where"], at + "where"),
            verdict=choice(Verdict, d["verdict"], at + "verdict"),
            rtt_ms=number(d.get("rtt_ms"), at + "rtt_ms", optional=True),
            evidence=Evidence() if evidence is None else Evidence.from_dict(evidence, at + "evidence"),
        )


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str
    roles: tuple[str, ...]


@dataclass
class Result:
    cells: list[Cell]
    hosts: list[HostInfo] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)  # Check.to_dict() of each check run
    profile: str | None = None
    started: str | None = None   # ISO 8601, set by the caller (the core reads no clock)
    finished: str | None = None
    errors: list[dict] = field(default_factory=list)  # {"host": ..., "message": ...}
    skipped: list[dict] = field(default_factory=list)  # {"check": ..., "reason": ...}
    netprobe_version: str = ""

    def cell(self, check: str, src: str, dst: str) -> Cell | None:
        for c in self.cells:
            if c.key == (check, src, dst):
                return c
        return None

    def counts(self) -> dict[str, int]:
        """Cells by reach, plus skipped checks and errors: the summary a machine reads first."""
        out = {str(r): 0 for r in Reach}
        for c in self.cells:
            out[str(c.reach)] += 1
        return {"cells": len(self.cells), **out, "skipped": len(self.skipped), "errors": len(self.errors)}

    @property
    def status(self) -> str:
        """By the one exit rule: partial (errors), else fail (a blocked or unknown cell), else ok."""
        if self.errors:
            return "partial"
        return "fail" if any(c.reach is not Reach.ALLOWED for c in self.cells) else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "status": self.status,
            "counts": self.counts(),
            "netprobe_version": self.netprobe_version,
            "started": self.started,
            "finished": self.finished,
            "profile": self.profile,
            "hosts": [{"name": h.name, "address": h.address, "roles": list(h.roles)} for h in self.hosts],
            "checks": self.checks,
            "cells": [c.to_dict() for c in self.cells],
            "skipped": self.skipped,
            "errors": self.errors,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "result") -> Result:
        """Strict: any malformed field is one ConfigError naming the file and the field path."""
        if not isinstance(d, dict):
            raise ConfigError("not a JSON object", file=source)
        if d.get("schema") not in READ_SCHEMAS:
            raise ConfigError(f"expected {SCHEMA!r} (or v1), got {d.get('schema')!r}", file=source, field="schema")
        try:
            return cls._from_checked_dict(d)
        except InvalidReport as exc:
            raise ConfigError(exc.message, file=source, field=exc.field) from None

    @classmethod
    def _from_checked_dict(cls, d: dict) -> Result:
        # status and counts are derived from the cells: checked for shape, then recomputed
        text(d.get("status"), "status", optional=True, limit=16)
        if d.get("counts") is not None:
            obj(d["counts"], "counts")
        cells = [Cell.from_dict(c, f"cells[{i}]") for i, c in enumerate(items(d.get("cells", []), "cells", MAX_CELLS))]
        hosts = []
        for i, h in enumerate(items(d.get("hosts", []), "hosts", MAX_CELLS)):
            at = f"hosts[{i}]"
            obj(h, at, ("name",))
            roles = [text(r, f"{at}.roles[{j}]", limit=64) for j, r in enumerate(items(h.get("roles", []), f"{at}.roles", 64))]
            hosts.append(HostInfo(text(h["name"], f"{at}.name", limit=255),
                                  text(h.get("address", ""), f"{at}.address", limit=64), tuple(roles)))
        return cls(
            cells=cells,
            hosts=hosts,
            checks=_objects(d.get("checks", []), "checks"),
            profile=text(d.get("profile"), "profile", optional=True, limit=64),
            started=text(d.get("started"), "started", optional=True, limit=64),
            finished=text(d.get("finished"), "finished", optional=True, limit=64),
            errors=_string_objects(d.get("errors", []), "errors"),
            skipped=_string_objects(d.get("skipped", []), "skipped"),
            netprobe_version=text(d.get("netprobe_version", ""), "netprobe_version", limit=64),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "result") -> Result:
        return cls.from_dict(load_json(text, source=source), source=source)


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



def diff(old: Result, new: Result) -> list[Change]:
    """Cells whose reach or where changed, appeared or disappeared, in a stable order."""
    old_cells = {c.key: c for c in old.cells}
    new_cells = {c.key: c for c in new.cells}
    changes = []
    for key in sorted(old_cells.keys() | new_cells.keys()):
        a, b = old_cells.get(key), new_cells.get(key)
        if a is not None and b is not None and (a.reach, a.where) == (b.reach, b.where):
            continue
        changes.append(Change(*key, old=a, new=b))
    return changes


__all__ = [
    "SCHEMA", "READ_SCHEMAS", "Reach", "Where", "Verdict", "ReplyKind", "Icmp", "Evidence", "Cell", "HostInfo",
    "Result", "Change", "diff",
]
