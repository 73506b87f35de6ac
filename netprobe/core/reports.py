"""What an agent reports about one probe, as typed values parsed once from untrusted JSON.

An agent's reply is input from another machine: like h11 parsing a peer's bytes, every field
is checked here (type, finite number, bounded string, enum) before anything joins or
classifies it, and every rejection is one ``InvalidReport`` naming the field path
(``outcomes[3].evidence.reply``). Unknown keys are ignored, so a newer agent may add fields.
``result.py``'s lenient ``from_dict`` stays as it is, for saved result files.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from netprobe.core.inventory import NAME_RE
from netprobe.core.result import Evidence, Icmp, ReplyKind

MAX_TEXT = 512        # longest free-text field (a send error)
MAX_ATTEMPTS = 1000
MAX_PROBE_ID = 0xFFFFFFFF
MAX_NUMBER = 1e12     # a count, time or RTT beyond this is garbage, not data
E = TypeVar("E", bound=StrEnum)


class InvalidReport(ValueError):
    """A reply field that breaks the contract; ``field`` names where."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def obj(raw: Any, field: str, required: tuple[str, ...] = ()) -> dict:
    """``raw`` as a JSON object holding every key of ``required``."""
    if not isinstance(raw, dict):
        raise InvalidReport(field, f"must be an object, got {type(raw).__name__}")
    for key in required:
        if key not in raw:
            raise InvalidReport(f"{field}.{key}", "is missing")
    return raw


def items(raw: Any, field: str, limit: int) -> list:
    if not isinstance(raw, list):
        raise InvalidReport(field, f"must be a list, got {type(raw).__name__}")
    if len(raw) > limit:
        raise InvalidReport(field, f"at most {limit} entries, got {len(raw)}")
    return raw


def flag(raw: Any, field: str, *, optional: bool = False) -> bool | None:
    if raw is None and optional:
        return None
    if not isinstance(raw, bool):
        raise InvalidReport(field, f"must be true or false, got {raw!r:.40}")
    return raw


def integer(raw: Any, field: str, hi: int, lo: int = 0) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise InvalidReport(field, f"must be an integer in {lo}-{hi}, got {raw!r:.40}")
    return raw


def number(raw: Any, field: str, *, optional: bool = False, signed: bool = False) -> float | None:
    """A finite number within ``MAX_NUMBER`` (NaN, inf and 1e308 are garbage), non-negative unless ``signed``."""
    if raw is None and optional:
        return None
    lo = -MAX_NUMBER if signed else 0
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not (
            math.isfinite(raw) and lo <= raw <= MAX_NUMBER):
        raise InvalidReport(field, f"must be a finite number in {lo:g}-{MAX_NUMBER:g}, got {raw!r:.40}")
    return float(raw)


def text(raw: Any, field: str, *, limit: int = MAX_TEXT, optional: bool = False) -> str | None:
    if raw is None and optional:
        return None
    if not isinstance(raw, str) or len(raw) > limit:
        raise InvalidReport(field, f"must be a string of at most {limit} characters, got {raw!r:.40}")
    return raw


def name(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not NAME_RE.match(raw):
        raise InvalidReport(field, f"must be a short name, got {raw!r:.40}")
    return raw


def ipv4(raw: Any, field: str) -> str:
    try:
        if not isinstance(raw, str):
            raise ValueError
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise InvalidReport(field, f"must be an IPv4 address, got {raw!r:.40}") from None


def choice(kind: type[E], raw: Any, field: str) -> E:
    try:
        return kind(raw)
    except (ValueError, TypeError):
        raise InvalidReport(field, f"must be one of {', '.join(kind)}, got {raw!r:.40}") from None


def icmp_from_dict_untrusted(raw: Any, field: str) -> Icmp:
    d = obj(raw, field, ("type", "code", "from"))
    return Icmp(integer(d["type"], f"{field}.type", 255), integer(d["code"], f"{field}.code", 255),
                ipv4(d["from"], f"{field}.from"))


_EVIDENCE_KEYS = ("sent", "arrived", "accepted", "answered", "reply", "icmp", "reply_arrived", "reply_accepted",
                  "attempts", "send_error")


def evidence_from_dict_untrusted(raw: Any, field: str) -> Evidence:
    """Strictly parse ``Evidence.to_dict()``: every key present, every value of its type."""
    d = obj(raw, field, _EVIDENCE_KEYS)
    return Evidence(
        sent=flag(d["sent"], f"{field}.sent"),
        reply=None if d["reply"] is None else choice(ReplyKind, d["reply"], f"{field}.reply"),
        icmp=None if d["icmp"] is None else icmp_from_dict_untrusted(d["icmp"], f"{field}.icmp"),
        reply_arrived=flag(d["reply_arrived"], f"{field}.reply_arrived"),
        reply_accepted=flag(d["reply_accepted"], f"{field}.reply_accepted"),
        arrived=flag(d["arrived"], f"{field}.arrived", optional=True),
        accepted=flag(d["accepted"], f"{field}.accepted", optional=True),
        answered=flag(d["answered"], f"{field}.answered", optional=True),
        attempts=integer(d["attempts"], f"{field}.attempts", MAX_ATTEMPTS),
        send_error=text(d["send_error"], f"{field}.send_error", optional=True),
    )


@dataclass(frozen=True)
class OutcomeReport:
    """The sender's half of one probe: which check towards whom, from where, and what it saw."""

    probe_id: int
    check: str
    name: str      # the destination host
    address: str
    source: str
    rtt_ms: float | None
    evidence: Evidence

    def to_dict(self) -> dict:
        return {"probe_id": self.probe_id, "check": self.check, "name": self.name, "address": self.address,
                "source": self.source, "rtt_ms": self.rtt_ms, "evidence": self.evidence.to_dict()}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str) -> OutcomeReport:
        d = obj(raw, field, ("probe_id", "check", "name", "address", "source", "rtt_ms", "evidence"))
        return cls(
            probe_id=integer(d["probe_id"], f"{field}.probe_id", MAX_PROBE_ID),
            check=name(d["check"], f"{field}.check"),
            name=name(d["name"], f"{field}.name"),
            address=ipv4(d["address"], f"{field}.address"),
            source=ipv4(d["source"], f"{field}.source"),
            rtt_ms=number(d["rtt_ms"], f"{field}.rtt_ms", optional=True),
            evidence=evidence_from_dict_untrusted(d["evidence"], f"{field}.evidence"),
        )


@dataclass(frozen=True)
class ObservationReport:
    """The responder's half: a probe from ``src`` arrived (tap), was accepted (after INPUT), answered."""

    src: str
    probe_id: int
    proto: str
    arrived: bool
    accepted: bool
    answered: bool
    t: float

    def to_dict(self) -> dict:
        return {"src": self.src, "probe_id": self.probe_id, "proto": self.proto, "arrived": self.arrived,
                "accepted": self.accepted, "answered": self.answered, "t": self.t}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str) -> ObservationReport:
        d = obj(raw, field, ("src", "probe_id", "proto", "arrived", "accepted", "answered", "t"))
        return cls(
            src=ipv4(d["src"], f"{field}.src"),
            probe_id=integer(d["probe_id"], f"{field}.probe_id", MAX_PROBE_ID),
            proto=name(d["proto"], f"{field}.proto"),
            arrived=flag(d["arrived"], f"{field}.arrived"),
            accepted=flag(d["accepted"], f"{field}.accepted"),
            answered=flag(d["answered"], f"{field}.answered"),
            t=number(d["t"], f"{field}.t", signed=True),
        )
