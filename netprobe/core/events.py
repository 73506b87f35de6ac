"""What goes in and out of the state machines: where a packet was seen (``Via``), what to probe
(``ProbeTarget``), what to send (``Send``, ``Echo``) and what was learnt (``Outcome`` from the
sender, ``Observation`` from the responder: their dicts are the control API's wire format)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from netprobe.core.checks import Check
from netprobe.core.parse import ip_str
from netprobe.core.result import Evidence
from netprobe.core.wire import DEFAULT_TTL


class Via(Enum):
    """Where a packet was seen."""

    TAP = "tap"  # AF_PACKET, ETH_P_ALL: it arrived at this host's interface (before netdev/tc ingress)
    IP = "ip"    # AF_PACKET, ETH_P_IP/ETH_P_IPV6: it got past the netdev/tc ingress hooks (before netfilter)
    RAW = "raw"  # raw IP socket: this host's INPUT accepted it


@dataclass(frozen=True)
class ProbeTarget:
    """One probe to run: a check towards an address (``name`` is for the caller's bookkeeping);
    ``mtu``: the full outer size an ``mtu`` check (``Check.pmtu``) requires; ``ttl`` below the
    default makes a TTL-limited copy that finds the hop (the explain round)."""

    check: Check
    address: str
    name: str = ""
    mtu: int | None = None
    ttl: int = DEFAULT_TTL


@dataclass(frozen=True)
class Send:
    """The prober asks for a built probe to be sent to ``address``."""

    probe_id: int
    address: str
    data: bytes


@dataclass(frozen=True)
class Outcome:
    """What the sender learnt about one probe (its half of the evidence)."""

    probe_id: int
    target: ProbeTarget
    source: str
    evidence: Evidence
    rtt_ms: float | None

    def to_dict(self) -> dict:
        return {
            "probe_id": self.probe_id,
            "check": self.target.check.id,
            "name": self.target.name,
            "address": self.target.address,
            "source": self.source,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 3),
            "evidence": self.evidence.to_dict(),
        }


@dataclass(slots=True)  # a responder keeps tens of thousands: no __dict__ each
class Observation:
    """What the responder saw of one probe: arrived (ETH_P_ALL tap), reached IP (ETH_P_IP tap, or
    accepted: past the netdev/tc ingress hooks either way), accepted (raw socket), answered."""

    src: bytes
    probe_id: int
    proto: str
    first_seen: float
    arrived: bool = False
    accepted: bool = False
    answered: bool = False
    reached_ip: bool = False

    def to_dict(self) -> dict:
        return {"src": ip_str(self.src), "probe_id": self.probe_id, "proto": self.proto,
                "arrived": self.arrived, "reached_ip": self.reached_ip, "accepted": self.accepted,
                "answered": self.answered, "t": round(self.first_seen, 6)}


@dataclass(frozen=True)
class Echo:
    """The responder asks for its answer to a payload probe to be sent to ``address``."""

    address: str
    data: bytes
