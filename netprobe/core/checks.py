"""The requirements table (docs/design.md "What is probed"), profiles, and role-based planning of cells.

A *cell* is one (check, source host, destination host, address family) flow that must be probed:
a check runs over every family both ends have an address of (IPv4 and IPv6 for a dual-stack pair),
unless it is bound to one (IPIP and ``wireguard``: IPv4; ``wireguard6``: IPv6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Proto(StrEnum):
    """How a check's probe is built."""

    TCP = "tcp"      # SYN to a port
    UDP = "udp"      # authenticated UDP payload to a port
    IPIP = "ipip"    # IPv4 protocol 4 carrying an inner IPv4/UDP probe
    VXLAN = "vxlan"  # UDP to a port, VXLAN header + inner Ethernet/IPv4/UDP


class Direction(StrEnum):
    BOTH = "both"        # every source host <-> every other source host
    TO_ROLE = "to-role"  # every source host -> hosts holding the check's role


@dataclass(frozen=True)
class Check:
    id: str
    description: str
    proto: Proto
    port: int | None           # None for IPIP
    direction: Direction
    to_role: str | None = None  # destination role for TO_ROLE checks
    from_role: str | None = "node"  # None: every host of the inventory is a source
    family: int | None = None   # 4 or 6: probed over that family only; None: over each family both ends have

    @property
    def families(self) -> tuple[int, ...]:
        """The address families this check is probed over (IPIP carries IPv4 in IPv4: never IPv6)."""
        if self.proto is Proto.IPIP:
            return (4,)
        return FAMILIES if self.family is None else (self.family,)

    def to_dict(self) -> dict:
        data = {
            "id": self.id,
            "description": self.description,
            "proto": str(self.proto),
            "port": self.port,
            "direction": str(self.direction),
            "to_role": self.to_role,
            "from_role": self.from_role,
        }
        if self.family is not None:  # only a check bound to one family says it
            data["family"] = self.family
        return data

    def wire_dict(self) -> dict:
        """``to_dict`` without ``family``, for a probe request: the coordinator decides which
        address a check goes to, and an agent older than IPv6 refuses the key."""
        data = self.to_dict()
        data.pop("family", None)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Check:
        return cls(
            id=data["id"],
            description=data.get("description", data["id"]),
            proto=Proto(data["proto"]),
            port=data.get("port"),
            direction=Direction(data.get("direction", "both")),
            to_role=data.get("to_role"),
            from_role=data.get("from_role", "node"),
            family=data.get("family"),
        )


VXLAN_PORT = 4789           # IANA's VXLAN port: Calico's own VXLAN mode (vxlan.calico)
FLANNEL_VXLAN_PORT = 8472   # the Linux kernel's default, which flannel (and so canal) keeps on Linux
WIREGUARD_PORT = 51820      # Calico's WireGuard, IPv4 (wireguard.cali)
WIREGUARD6_PORT = 51821     # Calico's WireGuard, IPv6 (wg-v6.cali)
DEFAULT_VNI = 1
DEFAULT_APISERVER_PORT = 6443

CHECKS: dict[str, Check] = {
    c.id: c
    for c in (
        Check("bgp", "Calico networking (BGP)", Proto.TCP, 179, Direction.BOTH),
        Check("ipip", "Calico IP-in-IP (default)", Proto.IPIP, None, Direction.BOTH),
        Check("typha", "Typha", Proto.TCP, 5473, Direction.TO_ROLE, to_role="typha"),
        Check("vxlan", "VXLAN overlay (Calico 4789, flannel/canal 8472)", Proto.VXLAN, VXLAN_PORT, Direction.BOTH),
        Check("wireguard", "Calico WireGuard (IPv4)", Proto.UDP, WIREGUARD_PORT, Direction.BOTH, family=4),
        Check("wireguard6", "Calico WireGuard (IPv6)", Proto.UDP, WIREGUARD6_PORT, Direction.BOTH, family=6),
        Check("apiserver", "kube-apiserver", Proto.TCP, DEFAULT_APISERVER_PORT, Direction.TO_ROLE,
              to_role="apiserver", from_role=None),
        Check("etcd", "etcd datastore", Proto.TCP, 2379, Direction.TO_ROLE, to_role="etcd", from_role=None),
    )
}

PROFILES: dict[str, tuple[str, ...]] = {
    "calico": ("bgp", "ipip", "typha", "apiserver", "etcd"),
    "calico-noipip": ("bgp", "typha", "apiserver", "etcd"),
    "calico-vxlan": ("vxlan", "typha", "apiserver", "etcd"),
    "calico-wireguard": ("bgp", "ipip", "wireguard", "wireguard6", "typha", "apiserver", "etcd"),
    "canal": ("vxlan", "typha", "apiserver", "etcd"),
}
# The UDP port the profile's VXLAN runs on, unless the inventory names one (``vxlan_port``):
# flannel keeps the kernel's default 8472 on Linux (4789 only when configured, e.g. on Windows),
# although Calico's old requirements page says 4789 for canal too.
PROFILE_VXLAN_PORT: dict[str, int] = {"canal": FLANNEL_VXLAN_PORT}
FAMILIES = (4, 6)
DEFAULT_PROFILE = "calico"
ROLES = frozenset({"node", "apiserver", "etcd", "typha"})


class UnknownCheck(ValueError):
    """A check or profile name that is not in the table (the CLI turns it into exit 2)."""


def select_checks(
    profile: str = DEFAULT_PROFILE,
    names: Sequence[str] | None = None,
    *,
    apiserver_port: int = DEFAULT_APISERVER_PORT,
    vxlan_port: int | None = None,
    custom: Iterable[Check] = (),
) -> list[Check]:
    """The checks a run uses: the profile's, or exactly ``names`` (any known or custom check).

    ``vxlan`` probes ``vxlan_port`` when given, else the profile's VXLAN port (``vxlan_port_for``)."""
    known = dict(CHECKS)
    for check in custom:
        known[check.id] = check
    if names:
        chosen = list(dict.fromkeys(names))
    else:
        if profile not in PROFILES:
            raise UnknownCheck(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        chosen = list(PROFILES[profile]) + [c.id for c in custom]
    missing = [n for n in chosen if n not in known]
    if missing:
        raise UnknownCheck(f"unknown check {missing[0]!r} (known: {', '.join(known)})")
    checks = [known[n] for n in chosen]
    if not 1 <= apiserver_port <= 65535:
        raise UnknownCheck(f"apiserver port {apiserver_port} is not in 1-65535")
    vport = vxlan_port_for(profile, vxlan_port)
    if not 1 <= vport <= 65535:
        raise UnknownCheck(f"vxlan port {vport} is not in 1-65535")
    ports = {"apiserver": apiserver_port, "vxlan": vport}
    return [dataclasses.replace(c, port=ports[c.id]) if c.id in ports else c
            for c in checks]


def vxlan_port_for(profile: str, vxlan_port: int | None = None) -> int:
    """The UDP port ``vxlan`` probes: the inventory's ``vxlan_port``, else the profile's default."""
    return vxlan_port if vxlan_port is not None else PROFILE_VXLAN_PORT.get(profile, VXLAN_PORT)


def family_of(address: str) -> int:
    """4 or 6: the family of an address written as text (an IPv6 address has a colon)."""
    return 6 if ":" in address else 4


def lane_label(check: str, family: int = 4) -> str:
    """How a matrix of one check and family is named: ``bgp``, ``bgp (IPv6)``."""
    return check if family == 4 else f"{check} (IPv6)"


@dataclass(frozen=True)
class HostRef:
    """What planning needs of a host: its name, addresses and roles. ``address`` is its IPv4
    address (its IPv6 one when it has no IPv4); ``address6`` its IPv6 address, if any."""

    name: str
    address: str
    roles: frozenset[str]
    address6: str | None = None

    def address_of(self, family: int) -> str | None:
        if family == 6:
            return self.address6
        return self.address if family_of(self.address) == 4 else None


@dataclass(frozen=True)
class PlannedCell:
    check: Check
    src: HostRef
    dst: HostRef
    family: int = 4

    @property
    def dst_address(self) -> str:
        return self.dst.address_of(self.family)  # type: ignore[return-value]


@dataclass(frozen=True)
class Skipped:
    check: str
    reason: str


def no_pair_reason(check: Check, families_present: set[int]) -> str:
    """Why a check with hosts of its roles still has no cell: no host of the family it is bound
    to, or too few hosts."""
    missing = [f for f in check.families if f not in families_present]
    if len(missing) == len(check.families):
        return f"no host has an IPv{missing[0]} address" if len(missing) == 1 else "no host has an address"
    return "no pair of distinct hosts to probe"


def plan_cells(hosts: Sequence[HostRef], checks: Sequence[Check]) -> tuple[list[PlannedCell], list[Skipped]]:
    """Every cell the checks require among ``hosts``; never a host to itself.

    BOTH: each source-role host to every other source-role host (both directions appear as
    two cells). TO_ROLE: each source to every host holding ``to_role``. Each pair is planned
    once per family of the check that both hosts have an address of. A check with no
    destination (no host of its role, of its family, or fewer than two sources) is skipped with
    a reason.
    """
    cells: list[PlannedCell] = []
    skipped: list[Skipped] = []
    present = {f for h in hosts for f in FAMILIES if h.address_of(f)}
    for check in checks:
        if check.direction is Direction.TO_ROLE and not any(check.to_role in h.roles for h in hosts):
            skipped.append(Skipped(check.id, f"no host has role {check.to_role!r}"))
            continue
        planned = []
        for family in check.families:
            sources = [h for h in hosts if (check.from_role is None or check.from_role in h.roles)
                       and h.address_of(family)]
            if check.direction is Direction.BOTH:
                targets = sources
            else:
                targets = [h for h in hosts if check.to_role in h.roles and h.address_of(family)]
            planned += [PlannedCell(check, s, d, family) for s in sources for d in targets if s.name != d.name]
        if not planned:
            skipped.append(Skipped(check.id, no_pair_reason(check, present)))
        cells.extend(planned)
    return cells, skipped
