"""What an agent reports about one probe, as typed values parsed once from untrusted JSON.

An agent's reply is input from another machine: like h11 parsing a peer's bytes, every field
is checked here (type, finite number, bounded string, enum) before anything joins or
classifies it, and every rejection is one ``InvalidReport`` naming the field path
(``outcomes[3].evidence.reply``). Unknown keys are ignored, so a newer agent may add fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netprobe.core.fields import MAX_PROBE_ID, flag, integer, ip, name, number, obj
from netprobe.core.result import Evidence

_EVIDENCE_KEYS = ("sent", "arrived", "accepted", "answered", "reply", "icmp", "reply_arrived", "reply_accepted",
                  "attempts", "send_error")


def evidence_from_dict_untrusted(raw: Any, field: str) -> Evidence:
    """``Evidence.to_dict()`` from an agent: every key present, each value checked."""
    return Evidence.from_dict(obj(raw, field, _EVIDENCE_KEYS), field)


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
            address=ip(d["address"], f"{field}.address"),
            source=ip(d["source"], f"{field}.source"),
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
            src=ip(d["src"], f"{field}.src"),
            probe_id=integer(d["probe_id"], f"{field}.probe_id", MAX_PROBE_ID),
            proto=name(d["proto"], f"{field}.proto"),
            arrived=flag(d["arrived"], f"{field}.arrived"),
            accepted=flag(d["accepted"], f"{field}.accepted"),
            answered=flag(d["answered"], f"{field}.answered"),
            t=number(d["t"], f"{field}.t", signed=True),
        )
