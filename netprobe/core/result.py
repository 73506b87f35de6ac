"""The result model and its JSON form (``netprobe.result/v1``, DESIGN section 7), plus diff.

Pure: ``Result.to_json``/``from_json`` work on strings; reading and writing files is the caller's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netprobe.errors import ConfigError

SCHEMA = "netprobe.result/v1"


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
    def from_dict(cls, d: dict) -> Icmp:
        return cls(type=int(d["type"]), code=int(d["code"]), sender=str(d["from"]))


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
    def from_dict(cls, d: dict) -> Evidence:
        return cls(
            sent=bool(d.get("sent", True)),
            reply=None if d.get("reply") is None else ReplyKind(d["reply"]),
            icmp=None if d.get("icmp") is None else Icmp.from_dict(d["icmp"]),
            reply_arrived=bool(d.get("reply_arrived", False)),
            reply_accepted=bool(d.get("reply_accepted", False)),
            arrived=d.get("arrived"),
            accepted=d.get("accepted"),
            answered=d.get("answered"),
            attempts=int(d.get("attempts", 1)),
            send_error=d.get("send_error"),
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
    def from_dict(cls, d: dict) -> Cell:
        return cls(
            check=str(d["check"]),
            src=str(d["src"]),
            dst=str(d["dst"]),
            reach=Reach(d["reach"]),
            where=None if d.get("where") is None else Where(d["where"]),
            verdict=Verdict(d["verdict"]),
            rtt_ms=None if d.get("rtt_ms") is None else float(d["rtt_ms"]),
            evidence=Evidence.from_dict(d.get("evidence") or {}),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
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
        if not isinstance(d, dict):
            raise ConfigError("not a JSON object", file=source)
        if d.get("schema") != SCHEMA:
            raise ConfigError(f"expected {SCHEMA!r}, got {d.get('schema')!r}", file=source, field="schema")
        try:
            cells = [Cell.from_dict(c) for c in _list(d, "cells", source)]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # AttributeError: a non-object evidence
            raise ConfigError(f"malformed cell: {exc}", file=source, field="cells") from None
        try:
            hosts = [HostInfo(h["name"], h.get("address", ""), tuple(h.get("roles", ())))
                     for h in _list(d, "hosts", source)]
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"malformed host: {exc}", file=source, field="hosts") from None
        return cls(
            cells=cells,
            hosts=hosts,
            checks=list(_list(d, "checks", source)),
            profile=d.get("profile"),
            started=d.get("started"),
            finished=d.get("finished"),
            errors=list(_list(d, "errors", source)),
            skipped=list(_list(d, "skipped", source)),
            netprobe_version=d.get("netprobe_version", ""),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "result") -> Result:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=source) from None
        return cls.from_dict(data, source=source)


def _list(d: dict, key: str, source: str) -> list:
    """``d[key]`` (default empty), which must be a JSON array."""
    value = d.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"must be a list, got {type(value).__name__}", file=source, field=key)
    return value


@dataclass(frozen=True)
class Change:
    """One cell whose reach (or where) differs between two results; None = absent there."""

    check: str
    src: str
    dst: str
    old: Cell | None
    new: Cell | None

    def describe(self) -> str:
        def side(c: Cell | None) -> str:
            if c is None:
                return "absent"
            return f"{c.reach}" + (f" at {c.where}" if c.where else "") + f" ({c.verdict})"

        return f"{self.check} {self.src} -> {self.dst}: {side(self.old)} -> {side(self.new)}"


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
    "SCHEMA", "Reach", "Where", "Verdict", "ReplyKind", "Icmp", "Evidence", "Cell", "HostInfo",
    "Result", "Change", "diff",
]
