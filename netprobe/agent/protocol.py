"""The control API's contract: the service an agent exposes, the requests it accepts and the
replies it sends, each a frozen type with ``to_dict()`` and a strict ``from_dict_untrusted``.

Pure (no I/O). Both edges parse: the API server turns every request body into a typed request
before the service sees it (``InvalidRequest``, answered 400), and the client turns every reply
into a typed reply before the mesh joins it (``InvalidReport``, an ``AgentError`` there).
Errors name the field path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from netprobe.core import fields
from netprobe.core.checks import CHECKS, PROFILES, ROLES, Check, Direction, Proto
from netprobe.core.compact_wire import PlainObservations, PlainOutcomes, parse_plain_observations, parse_plain_outcomes
from netprobe.core.explain_round import (HOPS_PER_SOURCE, MAX_EXPLAIN_FLOWS, MAX_TTL, Resent, rule_from_wire,
                                         rule_to_dict)
from netprobe.core.inventory import MAX_CUSTOM_CHECKS, MAX_FULL_MESH, NAME_RE
from netprobe.core.mesh_logic import Peer
from netprobe.core.mtu import MTU_RANGE
from netprobe.core.fields import InvalidReport
from netprobe.core.reports import ObservationReport, OutcomeReport
from netprobe.core.trace import Flow, NotNamed, RuleFound
from netprobe.errors import AgentError
from netprobe.preflight.model import SCHEMA as PREFLIGHT_SCHEMA
from netprobe.preflight.model import Item, Report, Status

RUN_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Sized from the largest full mesh netprobe supports, MAX_FULL_MESH hosts (a bigger inventory runs
# with --sample): an agent probes at most every other host, with every check of a profile plus custom ones (docs/design.md, "Caps").
MAX_TARGETS = MAX_FULL_MESH - 1
MAX_CHECKS = len(CHECKS) + MAX_CUSTOM_CHECKS  # 16
MAX_PROBES = MAX_TARGETS * MAX_CHECKS  # (target, check) pairs in one request: 16,368
TIMEOUT_RANGE = (0.05, 30.0)
RETRIES_RANGE = (0, 5)
VNI_RANGE = (0, (1 << 24) - 1)
RATE_RANGE = (10, 1_000_000)  # probes/s
DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 1
DEFAULT_VNI = 1
MAX_CIDRS = 64
MAX_SHORT_TEXT = 256
MAX_HOSTNAME = 253
MAX_EVIDENCE = 16384  # a preflight item lists what it read; generous, but bounded
MAX_COUNTERS = 64
MAX_COUNT = 1 << 53
MAX_REPORTS = 1 << 20  # outcomes or observations in one reply: beyond any real mesh
# the explain round (docs/design.md "The explain round")
HOLD_RANGE = (1.0, 120.0)  # seconds an armed trace stays when nobody collects it
DEFAULT_HOLD = 30.0
TRACE_TIMEOUT_RANGE = (0.05, 5.0)  # seconds a destination's rule finder may take to name its flows
DEFAULT_TRACE_TIMEOUT = 0.5
TTL_RANGE = (1, 32)
FLOW_PROTOS = ("tcp", "udp", "ipip")


# A request body that breaks the contract; ``field`` names where (``targets[3].address``): the same
# error the reply parsers and result files raise, from the same field readers (core/fields.py).
InvalidRequest = InvalidReport


class UnknownRun(AgentError):
    """The service knows no run of that id (the API answers 404)."""


class Refused(AgentError):
    """The agent will not do it: over a cap (429, retry after ``retry_after`` seconds) or a target
    outside its allow-list (403)."""

    def __init__(self, message: str, *, status: int = 429, retry_after: int | None = None):
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


def check_run_id(value: Any, field: str = "run_id") -> str:
    if not isinstance(value, str) or not RUN_ID_RE.fullmatch(value):
        raise InvalidRequest(field, f"must be 1-64 characters of A-Z a-z 0-9 _ -, got {value!r}")
    return value


def _check_keys(data: dict, allowed: set[str], required: set[str], field: str) -> None:
    prefix = f"{field}." if field else ""
    for key in data:
        if key not in allowed:  # a hostile key is named by a short repr, never raw (newlines, 1 MB)
            shown = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else repr(key)[:40]
            raise InvalidRequest(f"{prefix}{shown}", "unknown field")
    for key in sorted(required):
        if key not in data:
            raise InvalidRequest(f"{prefix}{key}", "is required")


def _number(value: Any, lo: float, hi: float, field: str) -> float:
    number = fields.number(value, field, signed=lo < 0)
    if not lo <= number <= hi:
        raise InvalidRequest(field, f"must be in {lo}-{hi}, got {value!r}")
    return number


def _integer(value: Any, lo: int, hi: int, field: str) -> int:
    return fields.integer(value, field, hi, lo)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(field, f"must be true or false, got {value!r:.40}")
    return value


def _list(value: Any, limit: int, field: str) -> list:
    return fields.items(value, field, limit)


def _short_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_SHORT_TEXT:
        raise InvalidRequest(field, f"must be a string of at most {MAX_SHORT_TEXT} characters, got {value!r:.40}")
    return value


_CHECK_KEYS = {"id", "description", "proto", "port", "direction", "to_role", "from_role", "pmtu"}  # no family:
# which address a check goes to is the target's (address or address6), decided by the coordinator


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
        if role is not None and (not isinstance(role, str) or role not in ROLES):
            raise InvalidRequest(f"{field}.{key}", f"unknown role {role!r}")
    if raw.get("direction") == Direction.TO_ROLE and raw.get("to_role") is None:
        raise InvalidRequest(f"{field}.to_role", "is required for direction to-role")
    if "pmtu" in raw:
        _flag(raw["pmtu"], f"{field}.pmtu")
        if raw["pmtu"] and proto not in (Proto.IPIP, Proto.VXLAN):
            raise InvalidRequest(f"{field}.pmtu", "an mtu search needs an ipip or vxlan check")
    try:
        return Check.from_dict(raw)
    except (ValueError, TypeError, KeyError) as exc:  # a combination the fields alone don't show
        raise InvalidRequest(field, f"not a valid check: {exc}") from None


def _target_address(raw: dict, key: str, kind: type, field: str) -> str:
    try:
        if not isinstance(raw[key], str):
            raise ValueError
        address = kind(raw[key])
    except ValueError:
        what = "an IPv4" if kind is ipaddress.IPv4Address else "an IPv6"
        raise InvalidRequest(f"{field}.{key}", f"must be {what} address, got {raw[key]!r:.40}") from None
    return str(address)


def _target_checks(raw: dict, key: str, field: str) -> tuple[str, ...]:
    checks = _list(raw[key], MAX_CHECKS, f"{field}.{key}")
    if not checks:
        raise InvalidRequest(f"{field}.{key}", "must name at least one check")
    for i, cid in enumerate(checks):
        if not isinstance(cid, str):
            raise InvalidRequest(f"{field}.{key}[{i}]", f"must be a check id, got {cid!r}")
    if len(set(checks)) != len(checks):
        raise InvalidRequest(f"{field}.{key}", "names a check twice")
    return tuple(checks)


def parse_target(raw: Any, field: str) -> Peer:
    """One peer to probe: a host name and, per family, its address and the check ids wanted towards
    it (``address``/``checks``: IPv4, ``address6``/``checks6``: IPv6; at least one pair)."""
    if not isinstance(raw, dict):
        raise InvalidRequest(field, "must be an object")
    _check_keys(raw, {"name", "address", "checks", "address6", "checks6"}, {"name"}, field)
    name = raw["name"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(f"{field}.name", f"must be a host name, got {name!r}")
    found: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for key, checks_key, kind in (("address", "checks", ipaddress.IPv4Address),
                                  ("address6", "checks6", ipaddress.IPv6Address)):
        if key not in raw and checks_key not in raw:
            found[key] = (None, ())
            continue
        for k in (key, checks_key):
            if k not in raw:
                raise InvalidRequest(f"{field}.{k}", f"is required with {checks_key if k == key else key}")
        found[key] = (_target_address(raw, key, kind, field), _target_checks(raw, checks_key, field))
    if found["address"][0] is None and found["address6"][0] is None:
        raise InvalidRequest(f"{field}.address", "is required (or address6 and checks6)")
    return Peer(name, *found["address"], *found["address6"])


@dataclass(frozen=True)
class ProbeRequest:
    """Ask an agent to probe ``targets`` for a run; the checks are defined once, as ``Check``s."""

    run_id: str
    targets: tuple[Peer, ...]
    checks: tuple[Check, ...]
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    vni: int = DEFAULT_VNI
    rate: int | None = None  # probes/s per source (None: the agent's default, net/prober.py DEFAULT_RATE)
    compact: bool = False  # reply plain outcomes (and this run's plain observations) as rows: core/compact_wire.py
    mtu: int | None = None  # the full size mtu checks require (None: each source's interface MTU towards the target)

    def check_map(self) -> dict[str, Check]:
        return {c.id: c for c in self.checks}

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "targets": [t.to_dict() for t in self.targets],
            "checks": [c.wire_dict() for c in self.checks],
            "timeout": self.timeout,
            "retries": self.retries,
            "vni": self.vni,
            **({"compact": True} if self.compact else {}),
            **({"rate": self.rate} if self.rate is not None else {}),  # absent = the full form an older agent knows
            **({"mtu": self.mtu} if self.mtu is not None else {}),
        }

    @classmethod
    def from_dict_untrusted(cls, data: Any) -> ProbeRequest:
        """Validate a decoded JSON body strictly; raises ``InvalidRequest`` (a ValueError)."""
        if not isinstance(data, dict):
            raise InvalidRequest("request", "must be a JSON object")
        _check_keys(data, {"run_id", "targets", "checks", "timeout", "retries", "vni", "compact", "rate", "mtu"},
                    {"run_id", "targets", "checks"}, "")
        run_id = check_run_id(data["run_id"])
        checks: dict[str, Check] = {}
        for i, raw in enumerate(_list(data["checks"], MAX_CHECKS, "checks")):
            check = parse_check(raw, f"checks[{i}]")
            if check.id in checks:
                raise InvalidRequest(f"checks[{i}].id", f"duplicate check id {check.id!r}")
            checks[check.id] = check
        targets: list[Peer] = []
        names: set[str] = set()
        addresses: set[str] = set()
        probes = 0
        for i, raw in enumerate(_list(data["targets"], MAX_TARGETS, "targets")):
            target = parse_target(raw, f"targets[{i}]")
            if target.name in names:
                raise InvalidRequest(f"targets[{i}].name", f"duplicate target {target.name!r}")
            for key, address in (("address", target.address), ("address6", target.address6)):
                if address in addresses:
                    raise InvalidRequest(f"targets[{i}].{key}", f"duplicate address {address}")
            for key, ids in (("checks", target.checks), ("checks6", target.checks6)):
                for cid in ids:
                    if cid not in checks:
                        raise InvalidRequest(f"targets[{i}].{key}", f"unknown check {cid!r} (not in checks)")
                    if key == "checks6" and checks[cid].proto is Proto.IPIP:
                        raise InvalidRequest(f"targets[{i}].checks6", f"{cid!r} is IP-in-IP: IPv4 only")
                    if key == "checks6" and checks[cid].pmtu:
                        raise InvalidRequest(f"targets[{i}].checks6", f"{cid!r} searches an IPv4 path MTU only")
            probes += target.probes
            if probes > MAX_PROBES:
                raise InvalidRequest("targets", f"at most {MAX_PROBES} probes (target x check) in one request")
            names.add(target.name)
            addresses.update(a for a in (target.address, target.address6) if a is not None)
            targets.append(target)
        return cls(
            run_id=run_id,
            targets=tuple(targets),
            checks=tuple(checks.values()),
            timeout=_number(data.get("timeout", DEFAULT_TIMEOUT), *TIMEOUT_RANGE, "timeout"),
            retries=_integer(data.get("retries", DEFAULT_RETRIES), *RETRIES_RANGE, "retries"),
            vni=_integer(data.get("vni", DEFAULT_VNI), *VNI_RANGE, "vni"),
            compact=_flag(data.get("compact", False), "compact"),
            rate=None if data.get("rate") is None else _integer(data["rate"], *RATE_RANGE, "rate"),
            mtu=None if data.get("mtu") is None else _integer(data["mtu"], *MTU_RANGE, "mtu"),
        )


def flow_to_dict(flow: Flow) -> dict:
    return {"proto": flow.proto, "src": flow.src, "dst": flow.dst, "sport": flow.sport, "dport": flow.dport}


def parse_flow(raw: Any, field: str, *, exact: bool = True) -> Flow:
    """One probe's flow (outer header): tcp/udp with a destination port (source port optional),
    ipip with neither. ``exact``: unknown keys are refused (a request), else ignored (a reply)."""
    d = fields.obj(raw, field, ("proto", "src", "dst"))
    if exact:
        _check_keys(d, {"proto", "src", "dst", "sport", "dport"}, {"proto", "src", "dst"}, field)
    proto = d["proto"]
    if proto not in FLOW_PROTOS:
        raise InvalidRequest(f"{field}.proto", f"must be one of {', '.join(FLOW_PROTOS)}, got {proto!r:.40}")
    ports = {}
    for key in ("sport", "dport"):
        raw_port = d.get(key)
        if proto == "ipip" and raw_port is not None:
            raise InvalidRequest(f"{field}.{key}", "must be null for ipip")
        if raw_port is None and proto != "ipip" and key == "dport":
            raise InvalidRequest(f"{field}.dport", f"is required for {proto}")
        ports[key] = None if raw_port is None else _integer(raw_port, 1, 65535, f"{field}.{key}")
    src, dst = fields.ip(d["src"], f"{field}.src"), fields.ip(d["dst"], f"{field}.dst")
    if (":" in src) != (":" in dst):
        raise InvalidRequest(f"{field}.dst", "must be of the source's address family")
    return Flow(proto, src, dst, **ports)


def _flows(raw: Any, field: str) -> tuple[Flow, ...]:
    flows = tuple(parse_flow(f, f"{field}[{i}]") for i, f in enumerate(_list(raw, MAX_EXPLAIN_FLOWS, field)))
    if len(set(flows)) != len(flows):
        raise InvalidRequest(field, "names a flow twice")
    return flows


@dataclass(frozen=True)
class ArmRequest:
    """Trace these flows on this host's ingress until collected (or ``hold`` seconds pass)."""

    run_id: str
    flows: tuple[Flow, ...]
    hold: float = DEFAULT_HOLD

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "flows": [flow_to_dict(f) for f in self.flows], "hold": self.hold}

    @classmethod
    def from_dict_untrusted(cls, data: Any) -> ArmRequest:
        d = fields.obj(data, "request")
        _check_keys(d, {"run_id", "flows", "hold"}, {"run_id", "flows"}, "")
        return cls(check_run_id(d["run_id"]), _flows(d["flows"], "flows"),
                   _number(d.get("hold", DEFAULT_HOLD), *HOLD_RANGE, "hold"))


@dataclass(frozen=True)
class ResendProbe:
    """One blocked probe to send again, exactly: ``probe_id`` fixes its flow (the destination
    traces it); ``trace`` asks for this host's egress rule, ``hops`` for TTL-limited copies."""

    name: str
    address: str
    check: str
    probe_id: int
    trace: bool = False
    hops: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "address": self.address, "check": self.check, "probe_id": self.probe_id,
                "trace": self.trace, "hops": self.hops}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str) -> ResendProbe:
        d = fields.obj(raw, field)
        _check_keys(d, {"name", "address", "check", "probe_id", "trace", "hops"},
                    {"name", "address", "check", "probe_id"}, field)
        return cls(fields.name(d["name"], f"{field}.name"), fields.ip(d["address"], f"{field}.address"),
                   fields.name(d["check"], f"{field}.check"),
                   fields.integer(d["probe_id"], f"{field}.probe_id", fields.MAX_PROBE_ID),
                   _flag(d.get("trace", False), f"{field}.trace"), _flag(d.get("hops", False), f"{field}.hops"))


@dataclass(frozen=True)
class ResendRequest:
    """Send these blocked probes again from this host (one attempt each, one window)."""

    run_id: str
    checks: tuple[Check, ...]
    probes: tuple[ResendProbe, ...]
    timeout: float = DEFAULT_TIMEOUT
    vni: int = DEFAULT_VNI
    max_ttl: int = MAX_TTL

    def check_map(self) -> dict[str, Check]:
        return {c.id: c for c in self.checks}

    def packets(self) -> int:
        """What the budget is charged: each probe once, each TTL-limited copy once more."""
        return len(self.probes) + sum(self.max_ttl for p in self.probes if p.hops)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "checks": [c.to_dict() for c in self.checks],
                "probes": [p.to_dict() for p in self.probes], "timeout": self.timeout, "vni": self.vni,
                "max_ttl": self.max_ttl}

    @classmethod
    def from_dict_untrusted(cls, data: Any) -> ResendRequest:
        d = fields.obj(data, "request")
        _check_keys(d, {"run_id", "checks", "probes", "timeout", "vni", "max_ttl"}, {"run_id", "checks", "probes"}, "")
        checks = {}
        for i, raw in enumerate(_list(d["checks"], MAX_CHECKS, "checks")):
            check = parse_check(raw, f"checks[{i}]")
            if check.id in checks:
                raise InvalidRequest(f"checks[{i}].id", f"duplicate check id {check.id!r}")
            checks[check.id] = check
        probes = tuple(ResendProbe.from_dict_untrusted(p, f"probes[{i}]")
                       for i, p in enumerate(_list(d["probes"], MAX_EXPLAIN_FLOWS, "probes")))
        for i, p in enumerate(probes):
            if p.check not in checks:
                raise InvalidRequest(f"probes[{i}].check", f"unknown check {p.check!r} (not in checks)")
        if len({p.probe_id for p in probes}) != len(probes):
            raise InvalidRequest("probes", "names a probe id twice")
        if sum(p.hops for p in probes) > HOPS_PER_SOURCE:
            raise InvalidRequest("probes", f"at most {HOPS_PER_SOURCE} probes with hops (a router's ICMP burst)")
        return cls(check_run_id(d["run_id"]), tuple(checks.values()), probes,
                   _number(d.get("timeout", DEFAULT_TIMEOUT), *TIMEOUT_RANGE, "timeout"),
                   _integer(d.get("vni", DEFAULT_VNI), *VNI_RANGE, "vni"),
                   _integer(d.get("max_ttl", MAX_TTL), *TTL_RANGE, "max_ttl"))


@dataclass(frozen=True)
class CollectRequest:
    """Name the rule of each traced flow (``expected``: how many copies its source sent), then
    remove the trace."""

    run_id: str
    expected: tuple[tuple[Flow, int], ...]
    timeout: float = DEFAULT_TRACE_TIMEOUT

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "timeout": self.timeout,
                "expected": [{"flow": flow_to_dict(f), "packets": n} for f, n in self.expected]}

    @classmethod
    def from_dict_untrusted(cls, data: Any) -> CollectRequest:
        d = fields.obj(data, "request")
        _check_keys(d, {"run_id", "expected", "timeout"}, {"run_id", "expected"}, "")
        expected = []
        for i, raw in enumerate(_list(d["expected"], MAX_EXPLAIN_FLOWS, "expected")):
            at = f"expected[{i}]"
            e = fields.obj(raw, at)
            _check_keys(e, {"flow", "packets"}, {"flow", "packets"}, at)
            expected.append((parse_flow(e["flow"], f"{at}.flow"), _integer(e["packets"], 0, fields.MAX_ATTEMPTS,
                                                                            f"{at}.packets")))
        return cls(check_run_id(d["run_id"]), tuple(expected),
                   _number(d.get("timeout", DEFAULT_TRACE_TIMEOUT), *TRACE_TIMEOUT_RANGE, "timeout"))


@dataclass(frozen=True)
class PreflightRequest:
    """Ask an agent for its host's preflight report; None means the agent's own default."""

    pool_cidrs: tuple[str, ...] | None = None
    service_cidr: str | None = None
    profile: str = "calico"
    # Calico as it runs today (each None: the agent's default; sent only when set)
    requirements: str | None = None   # legacy | current
    dataplane: str | None = None      # iptables | nftables | bpf
    wireguard: bool | None = None
    vxlan_port: int | None = None     # the port the mesh probes for vxlan

    OPTIONS = ("requirements", "dataplane", "wireguard", "vxlan_port")

    def to_dict(self) -> dict:
        data = {"pool_cidrs": None if self.pool_cidrs is None else list(self.pool_cidrs),
                "service_cidr": self.service_cidr, "profile": self.profile}
        data.update({k: getattr(self, k) for k in self.OPTIONS if getattr(self, k) is not None})
        return data

    @classmethod
    def from_dict_untrusted(cls, data: Any) -> PreflightRequest:
        """Types here, and the profile by name; the CIDRs are the preflight rules' to judge (a 400)."""
        if not isinstance(data, dict):
            raise InvalidRequest("request", "must be a JSON object")
        _check_keys(data, {"pool_cidrs", "service_cidr", "profile", *cls.OPTIONS}, set(), "")
        pools = data.get("pool_cidrs")
        if pools is not None:
            for i, cidr in enumerate(_list(pools, MAX_CIDRS, "pool_cidrs")):
                _short_text(cidr, f"pool_cidrs[{i}]")
            pools = tuple(pools)
        service = data.get("service_cidr")
        if service is not None:
            _short_text(service, "service_cidr")
        profile = _short_text(data.get("profile", "calico"), "profile")
        if profile not in PROFILES:
            raise InvalidRequest("profile", f"must be one of {', '.join(PROFILES)}, got {profile!r:.40}")
        options = {}
        for key in ("requirements", "dataplane"):
            if data.get(key) is not None:
                options[key] = _short_text(data[key], key)
        if data.get("wireguard") is not None:
            if not isinstance(data["wireguard"], bool):
                raise InvalidRequest("wireguard", "must be true or false")
            options["wireguard"] = data["wireguard"]
        if data.get("vxlan_port") is not None:
            options["vxlan_port"] = _integer(data["vxlan_port"], 1, 65535, "vxlan_port")
        return cls(pools, service, profile, **options)


# ------------------------------------------------------------------ replies
# Parsed once, by the client, from another machine's JSON: every failure is one InvalidReport
# naming the field. Unknown keys are ignored (a newer agent may add some); missing ones are not.


@dataclass(frozen=True)
class Stats:
    """An agent's counters. ``kernel_drops`` (captured packets the kernel lost) is the one the
    mesh acts on; the others are carried as they come, each a finite non-negative number."""

    kernel_drops: int = 0
    counters: Mapping[str, int | float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.counters, "kernel_drops": self.kernel_drops}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str) -> Stats:
        d = fields.obj(raw, field)
        if len(d) > MAX_COUNTERS:
            raise InvalidReport(field, f"at most {MAX_COUNTERS} counters, got {len(d)}")
        counters: dict[str, int | float] = {}
        for key, value in d.items():
            fields.name(key, f"{field}.{str(key):.40}")
            fields.number(value, f"{field}.{key}")
            counters[key] = value
        drops = fields.integer(counters.pop("kernel_drops", 0), f"{field}.kernel_drops", MAX_COUNT)
        return cls(drops, counters)


def _nonempty(raw: Any, field: str, limit: int) -> str:
    value = fields.text(raw, field, limit=limit)
    if not value:
        raise InvalidReport(field, "must not be empty")
    return value


def _host(raw: Any, field: str) -> str:
    return _nonempty(raw, field, MAX_HOSTNAME)


@dataclass(frozen=True)
class HealthReply:
    """The agent is up: its host name, netprobe version, and how its captures are doing."""

    host: str
    version: str
    uptime_s: float = 0.0
    captures: int = 0
    kernel_drops: int = 0
    stats: Stats = dataclasses.field(default_factory=Stats)

    def to_dict(self) -> dict:
        return {"host": self.host, "version": self.version, "uptime_s": self.uptime_s, "captures": self.captures,
                "kernel_drops": self.kernel_drops, "stats": self.stats.to_dict()}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "health") -> HealthReply:
        d = fields.obj(raw, field, ("host", "version"))
        return cls(
            host=_host(d["host"], f"{field}.host"),
            version=fields.text(d["version"], f"{field}.version", limit=MAX_SHORT_TEXT),
            uptime_s=fields.number(d.get("uptime_s", 0.0), f"{field}.uptime_s"),
            captures=fields.integer(d.get("captures", 0), f"{field}.captures", MAX_COUNT),
            kernel_drops=fields.integer(d.get("kernel_drops", 0), f"{field}.kernel_drops", MAX_COUNT),
            stats=Stats.from_dict_untrusted(d.get("stats", {}), f"{field}.stats"),
        )


@dataclass(frozen=True)
class ProbeReply:
    """What the agent's probes met: one sender outcome per (target, check)."""

    run_id: str
    host: str
    outcomes: tuple[OutcomeReport, ...]
    stats: Stats
    plain: tuple[PlainOutcomes, ...] = ()  # the compact rows (core/compact_wire.py), when asked for

    def to_dict(self) -> dict:
        out = {"run_id": self.run_id, "host": self.host, "outcomes": [o.to_dict() for o in self.outcomes],
               "stats": self.stats.to_dict()}
        if self.plain:
            out["plain"] = [p.to_dict() for p in self.plain]
        return out

    def plain_count(self) -> int:
        return sum(len(p) for p in self.plain)

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "reply", targets: int = 0) -> ProbeReply:
        """``targets``: how many the request named (the compact rows index them)."""
        d = fields.obj(raw, field, ("run_id", "host", "outcomes", "stats"))
        outcomes = fields.items(d["outcomes"], f"{field}.outcomes", MAX_REPORTS)
        return cls(
            run_id=_reply_run_id(d["run_id"], f"{field}.run_id"),
            host=_host(d["host"], f"{field}.host"),
            outcomes=tuple(OutcomeReport.from_dict_untrusted(o, f"{field}.outcomes[{i}]")
                           for i, o in enumerate(outcomes)),
            stats=Stats.from_dict_untrusted(d["stats"], f"{field}.stats"),
            plain=parse_plain_outcomes(d.get("plain", []), f"{field}.plain", MAX_REPORTS, targets),
        )


@dataclass(frozen=True)
class ObservationsReply:
    """What arrived at the agent's host since the run began: one observation per probe."""

    run_id: str
    host: str
    observations: tuple[ObservationReport, ...]
    stats: Stats
    plain: PlainObservations = dataclasses.field(default_factory=PlainObservations)  # core/compact_wire.py

    def to_dict(self) -> dict:
        out = {"run_id": self.run_id, "host": self.host,
               "observations": [o.to_dict() for o in self.observations], "stats": self.stats.to_dict()}
        if len(self.plain):
            out["plain"] = self.plain.to_dict()
        return out

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "reply") -> ObservationsReply:
        d = fields.obj(raw, field, ("run_id", "host", "observations", "stats"))
        observations = fields.items(d["observations"], f"{field}.observations", MAX_REPORTS)
        return cls(
            run_id=_reply_run_id(d["run_id"], f"{field}.run_id"),
            host=_host(d["host"], f"{field}.host"),
            observations=tuple(ObservationReport.from_dict_untrusted(o, f"{field}.observations[{i}]")
                               for i, o in enumerate(observations)),
            stats=Stats.from_dict_untrusted(d["stats"], f"{field}.stats"),
            plain=(PlainObservations() if d.get("plain") is None
                   else parse_plain_observations(d["plain"], f"{field}.plain", MAX_REPORTS)),
        )


@dataclass(frozen=True)
class ArmReply:
    """The destination traces ``armed`` flows now."""

    run_id: str
    host: str
    armed: int

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "host": self.host, "armed": self.armed}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "reply") -> ArmReply:
        d = fields.obj(raw, field, ("run_id", "host", "armed"))
        return cls(_reply_run_id(d["run_id"], f"{field}.run_id"), _host(d["host"], f"{field}.host"),
                   fields.integer(d["armed"], f"{field}.armed", MAX_EXPLAIN_FLOWS))


@dataclass(frozen=True)
class ResendReply:
    """What each re-sent probe showed its sender."""

    run_id: str
    host: str
    probes: tuple[Resent, ...]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "host": self.host, "probes": [p.to_dict() for p in self.probes]}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "reply") -> ResendReply:
        d = fields.obj(raw, field, ("run_id", "host", "probes"))
        probes = fields.items(d["probes"], f"{field}.probes", MAX_EXPLAIN_FLOWS)
        return cls(_reply_run_id(d["run_id"], f"{field}.run_id"), _host(d["host"], f"{field}.host"),
                   tuple(Resent.from_dict_untrusted(p, f"{field}.probes[{i}]") for i, p in enumerate(probes)))


@dataclass(frozen=True)
class CollectReply:
    """The rule that dropped each traced flow, or why it is not named; the trace is gone."""

    run_id: str
    host: str
    rules: tuple[tuple[Flow, RuleFound | NotNamed], ...]

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "host": self.host,
                "rules": [{"flow": flow_to_dict(f), **rule_to_dict(r)} for f, r in self.rules]}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str = "reply") -> CollectReply:
        d = fields.obj(raw, field, ("run_id", "host", "rules"))
        rules = []
        for i, entry in enumerate(fields.items(d["rules"], f"{field}.rules", MAX_EXPLAIN_FLOWS)):
            at = f"{field}.rules[{i}]"
            e = fields.obj(entry, at, ("flow",))
            found = rule_from_wire(e, at)
            if found is None:
                raise InvalidReport(at, "must name a rule or say why not (not_named)")
            rules.append((parse_flow(e["flow"], f"{at}.flow", exact=False), found))
        return cls(_reply_run_id(d["run_id"], f"{field}.run_id"), _host(d["host"], f"{field}.host"), tuple(rules))


def _reply_run_id(raw: Any, field: str) -> str:
    if not isinstance(raw, str) or not RUN_ID_RE.fullmatch(raw):
        raise InvalidReport(field, f"must be a run id, got {raw!r:.40}")
    return raw


_PREFLIGHT_KEYS = ("schema", "host", "profile", "pool_cidrs", "service_cidr", "root", "items")


def preflight_report_from_dict_untrusted(raw: Any, field: str = "report") -> Report:
    """A preflight ``Report.to_dict()`` checked field by field (``Report.from_dict`` would take a
    number for a host or fail on a number for pool_cidrs with a TypeError)."""
    d = fields.obj(raw, field, _PREFLIGHT_KEYS)
    if d["schema"] != PREFLIGHT_SCHEMA:
        raise InvalidReport(f"{field}.schema", f"must be {PREFLIGHT_SCHEMA!r}, got {d['schema']!r:.40}")
    found = []
    for i, raw_item in enumerate(fields.items(d["items"], f"{field}.items", MAX_REPORTS)):
        where = f"{field}.items[{i}]"
        item = fields.obj(raw_item, where, ("id", "group", "title", "status", "evidence"))
        found.append(Item(
            id=_nonempty(item["id"], f"{where}.id", MAX_SHORT_TEXT),
            group=fields.text(item["group"], f"{where}.group", limit=MAX_SHORT_TEXT),
            title=fields.text(item["title"], f"{where}.title", limit=MAX_SHORT_TEXT),
            status=fields.choice(Status, item["status"], f"{where}.status"),
            evidence=fields.text(item["evidence"], f"{where}.evidence", limit=MAX_EVIDENCE),
            requirements=fields.text(item.get("requirements", ""), f"{where}.requirements", limit=MAX_SHORT_TEXT),
        ))
    pools = fields.items(d["pool_cidrs"], f"{field}.pool_cidrs", MAX_CIDRS)
    return Report(
        items=tuple(found),
        host=None if d["host"] is None else _host(d["host"], f"{field}.host"),
        profile=fields.text(d["profile"], f"{field}.profile", limit=MAX_SHORT_TEXT),
        pool_cidrs=tuple(fields.text(p, f"{field}.pool_cidrs[{i}]", limit=MAX_SHORT_TEXT)
                         for i, p in enumerate(pools)),
        service_cidr=fields.text(d["service_cidr"], f"{field}.service_cidr", limit=MAX_SHORT_TEXT, optional=True),
        root=fields.text(d["root"], f"{field}.root", limit=MAX_SHORT_TEXT),
        requirements=fields.text(d.get("requirements", ""), f"{field}.requirements", limit=MAX_SHORT_TEXT),
        dataplane=fields.text(d.get("dataplane", "iptables"), f"{field}.dataplane", limit=MAX_SHORT_TEXT),
        wireguard=fields.flag(d.get("wireguard", False), f"{field}.wireguard"),
    )


@runtime_checkable
class AgentService(Protocol):
    """What the control API serves; the responder implements it, tests fake it.

    Each method returns the JSON-able ``to_dict()`` of its reply type, which the API passes
    through. Raise ``ValueError`` or ``ConfigError`` for a request the service cannot accept
    (400), ``UnknownRun`` for an unknown run id (404), another ``NetprobeError`` for a conflict
    with the agent's state (409); anything else is a bug, answered 500 and logged.
    """

    async def health(self) -> dict: ...

    async def run_probes(self, request: ProbeRequest) -> dict: ...

    async def observations(self, run_id: str) -> dict: ...

    async def preflight(self, params: dict) -> dict: ...


@runtime_checkable
class ExplainService(Protocol):
    """The explain round (docs/design.md "The explain round"): arm, re-send, collect. The
    responder implements it; a service without it answers 404 there, as an older agent does."""

    async def explain_arm(self, request: ArmRequest) -> dict: ...

    async def explain_resend(self, request: ResendRequest) -> dict: ...

    async def explain_collect(self, request: CollectRequest) -> dict: ...
