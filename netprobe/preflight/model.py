"""The preflight report: one line per requirement, each with a status and the evidence read.

Pure and JSON-safe, so an agent can send its report over the control API and ``netprobe
preflight --inventory`` can rebuild it on the other side (``Report.from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from netprobe.errors import ConfigError

SCHEMA = "netprobe.preflight/v1"


class Status(StrEnum):
    OK = "ok"
    FAIL = "fail"        # Calico cannot run as the host is
    WARN = "warn"        # look at it; not a failure
    UNKNOWN = "unknown"  # nothing readable to decide on: never a guess


@dataclass(frozen=True)
class Item:
    """One requirement. ``id`` is stable (a column of the hosts table); ``evidence`` says what
    was read and where, so a user can check it by hand."""

    id: str
    group: str
    title: str
    status: Status
    evidence: str
    requirements: str = ""  # the requirement set(s) the line comes from (preflight.requirements)

    def to_dict(self) -> dict:
        return {"id": self.id, "group": self.group, "title": self.title,
                "status": str(self.status), "evidence": self.evidence, "requirements": self.requirements}

    @classmethod
    def from_dict(cls, data: dict) -> Item:
        try:
            return cls(id=str(data["id"]), group=str(data.get("group", "")), title=str(data.get("title", data["id"])),
                       status=Status(data["status"]), evidence=str(data.get("evidence", "")),
                       requirements=str(data.get("requirements", "")))
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad preflight item: {exc}", field="items") from None


@dataclass(frozen=True)
class Report:
    items: tuple[Item, ...]
    host: str | None = None
    profile: str = "calico"
    pool_cidrs: tuple[str, ...] = ()
    service_cidr: str | None = None
    root: str = "/"
    requirements: str = ""       # the set asked for: legacy or current ("" from an older agent)
    dataplane: str = "iptables"
    wireguard: bool = False

    @property
    def exit_code(self) -> int:
        """0 when nothing fails (warn and unknown do not fail), 1 otherwise."""
        return 1 if any(i.status is Status.FAIL for i in self.items) else 0

    def counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in Status}
        for item in self.items:
            out[str(item.status)] += 1
        return out

    def item(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "host": self.host,
            "profile": self.profile,
            "pool_cidrs": list(self.pool_cidrs),
            "service_cidr": self.service_cidr,
            "root": self.root,
            "requirements": self.requirements,
            "dataplane": self.dataplane,
            "wireguard": self.wireguard,
            "status": "fail" if self.exit_code else "ok",
            "counts": self.counts(),
            "items": [i.to_dict() for i in self.items],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Report:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            got = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"expected schema {SCHEMA!r}, got {got!r}", field="schema")
        items = data.get("items")
        if not isinstance(items, list):
            raise ConfigError("must be a list", field="items")
        return cls(
            items=tuple(Item.from_dict(i) for i in items),
            host=data.get("host"),
            profile=str(data.get("profile", "calico")),
            pool_cidrs=tuple(data.get("pool_cidrs") or ()),
            service_cidr=data.get("service_cidr"),
            root=str(data.get("root", "/")),
            requirements=str(data.get("requirements", "")),
            dataplane=str(data.get("dataplane", "iptables")),
            wireguard=bool(data.get("wireguard", False)),
        )
