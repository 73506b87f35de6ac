"""The atoms of a result: a cell's state (reach, where, verdict), the evidence behind it, the
cell itself and a host's identity. ``core/result.py`` re-exports them; they live here so the
compact store (``core/matrix_store.py``) and the result file's encodings can use them without
importing the result model (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from netprobe.core.checks import FAMILIES
from netprobe.core.explain import Explain
from netprobe.core.fields import InvalidReport, choice, flag, integer, number, obj, text


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
MAX_PACKET = 65535  # an IPv4 packet's largest size (an mtu cell's figures)


class Overlay(StrEnum):
    """The encapsulation an ``mtu`` cell measured."""

    IPIP = "ipip"
    VXLAN = "vxlan"


@dataclass(frozen=True)
class Evidence:
    """Everything both ends saw of one probe (with its retries).

    Sender side: ``sent`` (False when this host's own firewall refused the send: EPERM),
    ``left`` (its tap saw the probe leave, after tc/netdev egress; False: sent, yet never left;
    None: not known), ``reply`` kind and ``icmp`` details, whether the reply ``reply_arrived`` at
    the sender's tap and was ``reply_accepted`` by its INPUT. Responder side (None = no responder
    evidence): ``arrived`` (ETH_P_ALL tap, before netdev/tc ingress), ``reached_ip`` (ETH_P_IP
    tap, past netdev/tc ingress; None: an agent that does not say), ``accepted`` (raw socket,
    after INPUT), ``answered`` (the tap saw the destination's SYN-ACK/RST/ICMP/echo leave). An
    ``mtu`` cell adds ``path_mtu`` (the largest outer packet that reached the destination, None
    when none did), ``mtu`` (the full size the check required) and ``overlay`` (``ipip`` or ``vxlan``).
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
    left: bool | None = None
    reached_ip: bool | None = None
    path_mtu: int | None = None
    mtu: int | None = None
    overlay: str | None = None

    @property
    def has_responder(self) -> bool:
        return self.arrived is not None

    def to_dict(self) -> dict:
        return {
            "sent": self.sent,
            "left": self.left,
            "arrived": self.arrived,
            "reached_ip": self.reached_ip,
            "accepted": self.accepted,
            "answered": self.answered,
            "reply": None if self.reply is None else str(self.reply),
            "icmp": None if self.icmp is None else self.icmp.to_dict(),
            "reply_arrived": self.reply_arrived,
            "reply_accepted": self.reply_accepted,
            "attempts": self.attempts,
            "send_error": self.send_error,
            # an mtu cell's figures (absent elsewhere: every other cell reads as it did)
            **({"path_mtu": self.path_mtu, "mtu": self.mtu, "overlay": self.overlay} if self.mtu is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Any, field: str = "evidence") -> Evidence:
        """Strict: wrong types and out-of-range numbers raise ``InvalidReport``; unknown keys are
        ignored (a newer netprobe may add some), ``left`` and ``reached_ip`` may be absent (an
        older one's: null)."""
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
            left=flag(d.get("left"), at + "left", optional=True),
            reached_ip=flag(d.get("reached_ip"), at + "reached_ip", optional=True),
            path_mtu=None if d.get("path_mtu") is None else integer(d["path_mtu"], at + "path_mtu", MAX_PACKET),
            mtu=None if d.get("mtu") is None else integer(d["mtu"], at + "mtu", MAX_PACKET),
            overlay=None if d.get("overlay") is None else choice(Overlay, d["overlay"], at + "overlay"),
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
    family: int = 4  # the address family the flow was probed over
    explain: Explain | None = None  # why a blocked cell is blocked (the explain round), else None

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What identifies a cell: the check, both ends and the family (a dual-stack pair has two)."""
        return (self.check, self.src, self.dst, self.family)

    def to_dict(self) -> dict:
        data = {
            "check": self.check,
            "src": self.src,
            "dst": self.dst,
            "reach": str(self.reach),
            "where": None if self.where is None else str(self.where),
            "verdict": str(self.verdict),
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "evidence": self.evidence.to_dict(),
            **({"explain": self.explain.to_dict()} if self.explain is not None else {}),  # additive: absent = none
        }
        if self.family != 4:  # absent = IPv4: what every cell was before IPv6
            data["family"] = self.family
        return data

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
            family=family(d.get("family", 4), at + "family"),
            explain=None if d.get("explain") is None else Explain.from_dict(d["explain"], at + "explain"),
        )


def family(raw: Any, field: str) -> int:
    """An address family field: 4 or 6."""
    if raw not in FAMILIES or isinstance(raw, bool):
        raise InvalidReport(field, f"must be 4 or 6, got {raw!r:.40}")
    return raw


@dataclass(frozen=True)
class HostInfo:
    name: str
    address: str
    roles: tuple[str, ...]
    address6: str | None = None  # its IPv6 address, if any (an IPv6-only host's is ``address`` too)


__all__ = ["Reach", "Where", "Verdict", "ReplyKind", "Icmp", "Evidence", "Cell", "HostInfo", "MAX_CELLS", "Overlay",
           "family"]
