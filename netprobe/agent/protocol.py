"""The control API's contract: the service an agent exposes and the probe request it accepts.

Pure (no I/O): the API server validates every request body with ``ProbeRequest.from_dict``
before the service sees it, so the service can trust its input. Errors name the field.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from netprobe.core.checks import ROLES, Check, Direction, Proto
from netprobe.core.inventory import NAME_RE
from netprobe.errors import AgentError

RUN_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TARGETS = 4096
MAX_CHECKS = 64
TIMEOUT_RANGE = (0.05, 30.0)
RETRIES_RANGE = (0, 5)
VNI_RANGE = (0, (1 << 24) - 1)
DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 1
DEFAULT_VNI = 1


class InvalidRequest(ValueError):
    """A request body that breaks the contract; ``field`` names where (``targets[3].address``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownRun(AgentError):
    """The service knows no run of that id (the API answers 404)."""


def check_run_id(value: Any, field: str = "run_id") -> str:
    if not isinstance(value, str) or not RUN_ID_RE.fullmatch(value):
        raise InvalidRequest(field, f"must be 1-64 characters of A-Z a-z 0-9 _ -, got {value!r}")
    return value


def _check_keys(data: dict, allowed: set[str], required: set[str], field: str) -> None:
    prefix = f"{field}." if field else ""
    for key in data:
        if key not in allowed:
            raise InvalidRequest(f"{prefix}{key}", "unknown field")
    for key in sorted(required):
        if key not in data:
            raise InvalidRequest(f"{prefix}{key}", "is required")


def _number(value: Any, lo: float, hi: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(field, f"must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidRequest(field, f"must be in {lo}-{hi}, got {value!r}")
    return float(value)


def _integer(value: Any, lo: int, hi: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidRequest(field, f"must be in {lo}-{hi}, got {value!r}")
    return value


def _list(value: Any, limit: int, field: str) -> list:
    if not isinstance(value, list):
        raise InvalidRequest(field, f"must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidRequest(field, f"at most {limit} entries, got {len(value)}")
    return value


_CHECK_KEYS = {"id", "description", "proto", "port", "direction", "to_role", "from_role"}


def parse_check(raw: Any, field: str) -> Check:
    """One ``Check.to_dict()`` from the wire, validated beyond what ``Check.from_dict`` checks."""
    if not isinstance(raw, dict):
        raise InvalidRequest(field, "must be an object")
    _check_keys(raw, _CHECK_KEYS, {"id", "proto"}, field)
    cid = raw["id"]
    if not isinstance(cid, str) or not NAME_RE.match(cid):
        raise InvalidRequest(f"{field}.id", f"must be a short name, got {cid!r}")
    if not isinstance(raw.get("description", ""), str):
        raise InvalidRequest(f"{field}.description", "must be a string")
    try:
        proto = Proto(raw["proto"])
    except (ValueError, TypeError):
        raise InvalidRequest(f"{field}.proto", f"must be one of {', '.join(Proto)}, got {raw['proto']!r}") from None
    try:
        Direction(raw.get("direction", "both"))
    except (ValueError, TypeError):
        raise InvalidRequest(
            f"{field}.direction", f"must be one of {', '.join(Direction)}, got {raw.get('direction')!r}"
        ) from None
    port = raw.get("port")
    if proto is Proto.IPIP:
        if port is not None:
            raise InvalidRequest(f"{field}.port", "must be null for ipip")
    else:
        _integer(port, 1, 65535, f"{field}.port")
    for key in ("to_role", "from_role"):
        role = raw.get(key)
        if role is not None and role not in ROLES:
            raise InvalidRequest(f"{field}.{key}", f"unknown role {role!r}")
    if raw.get("direction") == Direction.TO_ROLE and raw.get("to_role") is None:
        raise InvalidRequest(f"{field}.to_role", "is required for direction to-role")
    return Check.from_dict(raw)


@dataclass(frozen=True)
class Target:
    """A peer to probe: its host name, IPv4 address, and the check ids wanted towards it."""

    name: str
    address: str
    checks: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "address": self.address, "checks": list(self.checks)}

    @classmethod
    def from_dict(cls, raw: Any, field: str = "target") -> Target:
        if not isinstance(raw, dict):
            raise InvalidRequest(field, "must be an object")
        _check_keys(raw, {"name", "address", "checks"}, {"name", "address", "checks"}, field)
        name = raw["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidRequest(f"{field}.name", f"must be a host name, got {name!r}")
        try:
            if not isinstance(raw["address"], str):
                raise ValueError
            address = str(ipaddress.IPv4Address(raw["address"]))
        except ValueError:
            raise InvalidRequest(f"{field}.address", f"must be an IPv4 address, got {raw['address']!r}") from None
        checks = _list(raw["checks"], MAX_CHECKS, f"{field}.checks")
        if not checks:
            raise InvalidRequest(f"{field}.checks", "must name at least one check")
        for i, cid in enumerate(checks):
            if not isinstance(cid, str):
                raise InvalidRequest(f"{field}.checks[{i}]", f"must be a check id, got {cid!r}")
        if len(set(checks)) != len(checks):
            raise InvalidRequest(f"{field}.checks", "names a check twice")
        return cls(name, address, tuple(checks))


@dataclass(frozen=True)
class ProbeRequest:
    """Ask an agent to probe ``targets`` for a run; the checks are defined once, by id."""

    run_id: str
    targets: tuple[Target, ...]
    checks: tuple[dict, ...]  # each a Check.to_dict(), normalised
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    vni: int = DEFAULT_VNI

    def check_map(self) -> dict[str, Check]:
        """The checks by id, as ``Check`` objects."""
        return {c["id"]: Check.from_dict(c) for c in self.checks}

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "targets": [t.to_dict() for t in self.targets],
            "checks": [dict(c) for c in self.checks],
            "timeout": self.timeout,
            "retries": self.retries,
            "vni": self.vni,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProbeRequest:
        """Validate a decoded JSON body strictly; raises ``InvalidRequest`` (a ValueError)."""
        if not isinstance(data, dict):
            raise InvalidRequest("request", "must be a JSON object")
        _check_keys(data, {"run_id", "targets", "checks", "timeout", "retries", "vni"},
                    {"run_id", "targets", "checks"}, "")
        run_id = check_run_id(data["run_id"])
        checks: dict[str, Check] = {}
        for i, raw in enumerate(_list(data["checks"], MAX_CHECKS, "checks")):
            check = parse_check(raw, f"checks[{i}]")
            if check.id in checks:
                raise InvalidRequest(f"checks[{i}].id", f"duplicate check id {check.id!r}")
            checks[check.id] = check
        targets: list[Target] = []
        names: set[str] = set()
        addresses: set[str] = set()
        for i, raw in enumerate(_list(data["targets"], MAX_TARGETS, "targets")):
            target = Target.from_dict(raw, f"targets[{i}]")
            if target.name in names:
                raise InvalidRequest(f"targets[{i}].name", f"duplicate target {target.name!r}")
            if target.address in addresses:
                raise InvalidRequest(f"targets[{i}].address", f"duplicate address {target.address}")
            for cid in target.checks:
                if cid not in checks:
                    raise InvalidRequest(f"targets[{i}].checks", f"unknown check {cid!r} (not in checks)")
            names.add(target.name)
            addresses.add(target.address)
            targets.append(target)
        return cls(
            run_id=run_id,
            targets=tuple(targets),
            checks=tuple(c.to_dict() for c in checks.values()),
            timeout=_number(data.get("timeout", DEFAULT_TIMEOUT), *TIMEOUT_RANGE, "timeout"),
            retries=_integer(data.get("retries", DEFAULT_RETRIES), *RETRIES_RANGE, "retries"),
            vni=_integer(data.get("vni", DEFAULT_VNI), *VNI_RANGE, "vni"),
        )


@runtime_checkable
class AgentService(Protocol):
    """What the control API serves; the responder implements it, tests fake it.

    Each method returns a JSON-able dict that the API passes through. Raise ``ValueError``
    for a request the service cannot accept (400), ``UnknownRun`` for an unknown run id (404),
    another ``AgentError`` for a conflict with the agent's state (409); anything else is a
    bug, answered 500 and logged.
    """

    async def health(self) -> dict: ...

    async def run_probes(self, request: ProbeRequest) -> dict: ...

    async def observations(self, run_id: str) -> dict: ...

    async def preflight(self, params: dict) -> dict: ...
