"""A blocked cell's explanation (result JSON ``explain``, docs/design.md "Result JSON"): the rule
that dropped the flow, the last hop it reached, the path MTU, the lines that would allow it, or
why none of these could be named; and the words every format prints for it.

Pure. Reading is strict (a result file may come from anywhere): one ``InvalidReport`` naming the
field; unknown keys are ignored, so an older netprobe reads a newer one's explanations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netprobe.core.fields import integer, ip, obj, text
from netprobe.core.trace import RuleFound

MAX_RULE_TEXT = 2048  # a rule with an inline set is long; beyond this it is garbage
MAX_NAME = 256        # nft's longest table/chain name (NFT_NAME_MAXLEN)
MAX_NOTE = 512
MAX_MTU = 65535


@dataclass(frozen=True)
class Hop:
    """The last router a flow reached: the sender of the highest TTL's time-exceeded error
    (``ttl``), or of an ICMP error the probe itself drew (``ttl`` None)."""

    address: str
    ttl: int | None
    name: str | None = None  # the inventory's (or lab's) name for that address, when it has one

    def to_dict(self) -> dict:
        return {"address": self.address, "ttl": self.ttl, "name": self.name}

    @classmethod
    def from_dict(cls, raw: Any, field: str) -> Hop:
        d = obj(raw, field, ("address",))
        ttl = d.get("ttl")
        return cls(ip(d["address"], f"{field}.address"),
                   None if ttl is None else integer(ttl, f"{field}.ttl", 255, 1),
                   text(d.get("name"), f"{field}.name", limit=MAX_NAME, optional=True))


@dataclass(frozen=True)
class Fix:
    """The lines that would allow exactly the flow (``trace.fix_lines``): printed, never applied."""

    nft: str
    iptables: str

    def to_dict(self) -> dict:
        return {"nft": self.nft, "iptables": self.iptables}

    @classmethod
    def from_dict(cls, raw: Any, field: str) -> Fix:
        d = obj(raw, field, ("nft", "iptables"))
        return cls(text(d["nft"], f"{field}.nft", limit=MAX_RULE_TEXT),
                   text(d["iptables"], f"{field}.iptables", limit=MAX_RULE_TEXT))


def rule_from_dict(raw: Any, field: str) -> RuleFound:
    """``RuleFound.to_dict()`` read back strictly (``iptables`` and ``position``: additive, when
    iptables owns the rule)."""
    d = obj(raw, field, ("family", "table", "chain", "text", "verdict"))
    handle, position = d.get("handle"), d.get("position")
    return RuleFound(
        family=text(d["family"], f"{field}.family", limit=MAX_NAME),
        table=text(d["table"], f"{field}.table", limit=MAX_NAME),
        chain=text(d["chain"], f"{field}.chain", limit=MAX_NAME),
        handle=None if handle is None else integer(handle, f"{field}.handle", (1 << 64) - 1),
        text=text(d["text"], f"{field}.text", limit=MAX_RULE_TEXT),
        comment=text(d.get("comment"), f"{field}.comment", limit=MAX_NAME, optional=True),
        verdict=text(d["verdict"], f"{field}.verdict", limit=MAX_NAME),
        iptables=text(d.get("iptables"), f"{field}.iptables", limit=MAX_RULE_TEXT, optional=True),
        position=None if position is None else integer(position, f"{field}.position", 1 << 32, 1),
    )


@dataclass(frozen=True)
class Explain:
    """Why a blocked cell is blocked, as far as netprobe could tell; ``note`` says why a part
    could not be named (e.g. "a netdev/tc drop: not traced")."""

    rule: RuleFound | None = None
    hop: Hop | None = None
    path_mtu: int | None = None
    fix: Fix | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return {"rule": None if self.rule is None else self.rule.to_dict(),
                "hop": None if self.hop is None else self.hop.to_dict(),
                "path_mtu": self.path_mtu,
                "fix": None if self.fix is None else self.fix.to_dict(),
                "note": self.note}

    @classmethod
    def from_dict(cls, raw: Any, field: str = "explain") -> Explain:
        d = obj(raw, field)
        at = f"{field}."
        mtu = d.get("path_mtu")
        return cls(
            rule=None if d.get("rule") is None else rule_from_dict(d["rule"], at + "rule"),
            hop=None if d.get("hop") is None else Hop.from_dict(d["hop"], at + "hop"),
            path_mtu=None if mtu is None else integer(mtu, at + "path_mtu", MAX_MTU, 1),
            fix=None if d.get("fix") is None else Fix.from_dict(d["fix"], at + "fix"),
            note=text(d.get("note"), at + "note", limit=MAX_NOTE, optional=True),
        )

    def words(self, *, mtu: bool = True) -> str:
        """One clause: the rule, the hop, the path MTU (unless ``mtu`` is false: a sentence that
        says it already) and the note, as far as each is known."""
        parts = []
        if self.rule is not None:
            parts.append(rule_words(self.rule))
        if self.hop is not None:
            parts.append(hop_words(self.hop))
        if self.path_mtu is not None and mtu:
            parts.append(f"path MTU {self.path_mtu}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    def fix_words(self) -> list[str]:
        """The fix as lines to print under the explanation (none when there is no fix). A drop in
        any table is final, so only the tool that owns the named rule can undo it: an nft rule's
        table takes only the nft line, an iptables-legacy rule's only the iptables line, an
        iptables-nft rule's table either (iptables first); with no rule named, both."""
        if self.fix is None:
            return []
        rule = self.rule
        if rule is None:
            return [f"fix (not applied): {self.fix.nft}", f"or with iptables: {self.fix.iptables}"]
        if rule.family == "iptables-legacy":
            return [f"fix (not applied): {self.fix.iptables}"]
        if rule.iptables:
            return [f"fix (not applied): {self.fix.iptables}", f"or with nft: {self.fix.nft}"]
        return [f"fix (not applied): {self.fix.nft}"]


def rule_words(rule: RuleFound) -> str:
    """E.g. ``inet filter input handle 7 `tcp dport 179 drop comment "no bgp"``` or
    ``inet filter input: chain policy drop``."""
    where = f"{rule.family} {rule.table} {rule.chain}"
    if rule.text.startswith("policy "):
        return f"{where}: chain {rule.text}"
    handle = f" handle {rule.handle}" if rule.handle is not None else ""
    comment = f' (comment "{rule.comment}")' if rule.comment and rule.comment not in rule.text else ""
    return f"{where}{handle} `{rule.text}`{comment}"


def hop_words(hop: Hop) -> str:
    """E.g. ``died after 198.18.0.1 (hop 2, core)``; ``stopped at 198.18.0.1 (its ICMP error)``."""
    name = f", {hop.name}" if hop.name else ""
    if hop.ttl is None:
        return f"stopped at {hop.address} (its ICMP error{name})"
    return f"died after {hop.address} (hop {hop.ttl}{name})"


__all__ = ["Explain", "Fix", "Hop", "rule_from_dict", "rule_words", "hop_words"]
