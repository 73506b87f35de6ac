"""Expectations (docs/design.md "Expectations"): which cells must be ``allowed`` or ``blocked``, and where.

An expectation is a default plus ordered rules. A rule selects cells by ``check`` (an id or
``*``), ``from`` and ``to`` (a host name, ``role:NAME``, ``*``, or a list of those), optionally
``family`` (4 or 6: only the cells probed over IPv4 or IPv6; absent: both) and says
``reach: allowed|blocked`` and optionally ``where``. The first matching rule wins, like an ACL;
the default (itself ``allowed`` unless said otherwise) covers every cell no rule selects.

Pure: callers hand in parsed YAML (or text) and a ``Result``; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from netprobe.core.checks import CHECKS, ROLES, lane_label
from netprobe.core.result import Cell, Reach, Result, Where
from netprobe.core.untrusted import load_yaml
from netprobe.errors import ConfigError

ANY = "*"
ROLE_PREFIX = "role:"
RULE_KEYS = frozenset({"check", "from", "to", "family", "reach", "where"})
EXPECTED_REACH = (Reach.ALLOWED, Reach.BLOCKED)


def _at(field: str, sub: Any) -> str:
    """Join a field path: ``expect`` + ``rules[0]`` -> ``expect.rules[0]``; a top level has no prefix.
    ``sub`` may be any YAML key (a number, a boolean): it is named by its text."""
    sub = str(sub)
    if not field:
        return sub
    return f"{field}{sub}" if sub.startswith("[") else f"{field}.{sub}"


@dataclass(frozen=True)
class Selector:
    """One ``from``/``to`` term: every host (``*``), one host by name, or every host of a role."""

    kind: str  # "any", "host" or "role"
    value: str = ""

    def matches(self, host: str, roles: Mapping[str, frozenset[str]]) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "host":
            return host == self.value
        return self.value in roles.get(host, frozenset())

    def __str__(self) -> str:
        return {"any": ANY, "host": self.value, "role": ROLE_PREFIX + self.value}[self.kind]


@dataclass(frozen=True)
class Rule:
    """``checks``/``sources``/``targets`` are alternatives: the rule selects a cell when one of each matches."""

    checks: tuple[str, ...]  # check ids, or ("*",)
    sources: tuple[Selector, ...]
    targets: tuple[Selector, ...]
    reach: Reach
    where: Where | None = None
    index: int = 0  # position in the rules list, for messages
    family: int | None = None  # 4 or 6: only cells of that family; None: both

    def matches(self, check: str, src: str, dst: str, roles: Mapping[str, frozenset[str]], family: int = 4) -> bool:
        return (
            (self.family is None or self.family == family)
            and (ANY in self.checks or check in self.checks)
            and any(s.matches(src, roles) for s in self.sources)
            and any(t.matches(dst, roles) for t in self.targets)
        )

    def to_dict(self) -> dict[str, Any]:
        def one(items: tuple) -> Any:
            texts = [str(i) for i in items]
            return texts[0] if len(texts) == 1 else texts

        data: dict[str, Any] = {
            "check": one(self.checks), "from": one(self.sources), "to": one(self.targets), "reach": str(self.reach),
        }
        if self.family is not None:
            data["family"] = self.family
        if self.where is not None:
            data["where"] = str(self.where)
        return data


@dataclass(frozen=True)
class Expectation:
    default: Reach = Reach.ALLOWED
    rules: tuple[Rule, ...] = ()
    source: str = "expect"

    def rule_for(self, check: str, src: str, dst: str, roles: Mapping[str, frozenset[str]],
                 family: int = 4) -> Rule | None:
        """The first rule selecting this cell, or None when the default applies."""
        for rule in self.rules:
            if rule.matches(check, src, dst, roles, family):
                return rule
        return None

    def expected(
        self, check: str, src: str, dst: str, roles: Mapping[str, frozenset[str]], family: int = 4
    ) -> tuple[Reach, Where | None]:
        """What this cell must show: (reach, where); where None means any place will do."""
        rule = self.rule_for(check, src, dst, roles, family)
        if rule is None:
            return self.default, None
        return rule.reach, rule.where

    def to_dict(self) -> dict[str, Any]:
        return {"default": str(self.default), "rules": [r.to_dict() for r in self.rules]}


@dataclass(frozen=True)
class Mismatch:
    """One cell that is not what the expectation says. ``rule`` is the rule's index (None: the default)."""

    check: str
    src: str
    dst: str
    expected: Reach
    expected_where: Where | None
    actual: Cell
    rule: int | None = None

    @property
    def family(self) -> int:
        return self.actual.family

    def describe(self) -> str:
        want = str(self.expected) + (f" at {self.expected_where}" if self.expected_where else "")
        got = str(self.actual.reach) + (f" at {self.actual.where}" if self.actual.where else "")
        return (f"{lane_label(self.check, self.family)} {self.src} -> {self.dst}: expected {want}, got {got} "
                f"({self.actual.verdict})")


def compare(expectation: Expectation, result: Result) -> list[Mismatch]:
    """Every cell of ``result`` that breaks ``expectation``, in the result's order.

    A cell whose reach is ``unknown`` always mismatches: nothing was proven about it. When the
    rule names a ``where``, a blocked cell that died somewhere else mismatches too.
    """
    roles = {h.name: frozenset(h.roles) for h in result.hosts}
    mismatches = []
    for cell in result.cells:
        rule = expectation.rule_for(cell.check, cell.src, cell.dst, roles, cell.family)
        reach, where = (expectation.default, None) if rule is None else (rule.reach, rule.where)
        ok = cell.reach == reach and not (
            reach is Reach.BLOCKED and where is not None and cell.where != where
        )
        if cell.reach is Reach.UNKNOWN or not ok:
            mismatches.append(
                Mismatch(cell.check, cell.src, cell.dst, reach, where, cell, None if rule is None else rule.index)
            )
    return mismatches


# -- parsing -------------------------------------------------------------------------------

def _reach(value: Any, *, source: str, field: str) -> Reach:
    if value not in ("allowed", "blocked"):
        raise ConfigError(f"must be 'allowed' or 'blocked', got {value!r}", file=source, field=field)
    return Reach(value)


def _where(value: Any, *, source: str, field: str) -> Where | None:
    if value is None:
        return None
    known = [str(w) for w in Where]
    if value not in known:
        raise ConfigError(f"must be one of {', '.join(known)}, got {value!r}", file=source, field=field)
    return Where(value)


def _terms(value: Any, *, source: str, field: str) -> list[str]:
    """A selector field is one string or a non-empty list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(f"must be a name, 'role:NAME', '*', or a list of those; got {value!r}",
                          file=source, field=field)
    return items


def _selector(
    text: str, *, source: str, field: str, hosts: Mapping[str, frozenset[str]] | None
) -> Selector:
    if text == ANY:
        return Selector("any")
    if text.startswith(ROLE_PREFIX):
        role = text[len(ROLE_PREFIX):]
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r} (known: {', '.join(sorted(ROLES))})", file=source, field=field)
        if hosts is not None and not any(role in r for r in hosts.values()):
            raise ConfigError(f"no host has role {role!r}", file=source, field=field)
        return Selector("role", role)
    if hosts is not None and text not in hosts:
        raise ConfigError(f"no host named {text!r} (hosts: {', '.join(hosts)})", file=source, field=field)
    return Selector("host", text)


def _rule(
    raw: Any, index: int, *, source: str, field: str,
    hosts: Mapping[str, frozenset[str]] | None, checks: Collection[str],
) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping with check, from, to and reach", file=source, field=field)
    extra = sorted(set(raw) - RULE_KEYS, key=str)  # YAML keys may be numbers: they don't sort with text
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r} (known: {', '.join(sorted(RULE_KEYS))})",
                          file=source, field=_at(field, extra[0]))
    if "reach" not in raw:
        raise ConfigError("missing 'reach' (allowed or blocked)", file=source, field=_at(field, "reach"))
    reach = _reach(raw["reach"], source=source, field=_at(field, "reach"))
    where = _where(raw.get("where"), source=source, field=_at(field, "where"))
    if where is not None and reach is not Reach.BLOCKED:
        raise ConfigError("'where' only applies to reach: blocked", file=source, field=_at(field, "where"))
    family = raw.get("family")
    if family is not None and (family not in (4, 6) or isinstance(family, bool)):
        raise ConfigError(f"must be 4 or 6, got {family!r}", file=source, field=_at(field, "family"))
    check_ids = _terms(raw.get("check", ANY), source=source, field=_at(field, "check"))
    for cid in check_ids:
        if cid != ANY and cid not in checks:
            raise ConfigError(f"unknown check {cid!r} (known: {', '.join(checks)})",
                              file=source, field=_at(field, "check"))
    sel = {}
    for key in ("from", "to"):
        sub = _at(field, key)
        terms = _terms(raw.get(key, ANY), source=source, field=sub)
        sel[key] = tuple(_selector(t, source=source, field=sub, hosts=hosts) for t in terms)
    return Rule(tuple(check_ids), sel["from"], sel["to"], reach, where, index, family)


def parse_expectation(
    data: Any,
    *,
    source: str,
    field: str = "expect",
    hosts: Mapping[str, frozenset[str]] | None = None,
    checks: Collection[str] | None = None,
) -> Expectation:
    """Validate an ``expect`` block (already parsed YAML) into an ``Expectation``.

    With ``hosts`` (name -> roles), a selector naming a missing host, or a role no host has,
    is an error. ``checks`` lists the check ids a rule may name (default: the six built-in
    ones; pass custom ids from an inventory too). Errors name ``source`` and the field.
    """
    known_checks = tuple(CHECKS) if checks is None else tuple(checks)
    if data is None:
        return Expectation(source=source)
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with 'default' and 'rules'", file=source, field=field or None)
    extra = sorted(set(data) - {"default", "rules"}, key=str)
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r} (known: default, rules)", file=source, field=_at(field, extra[0]))
    default = _reach(data.get("default", "allowed"), source=source, field=_at(field, "default"))
    raw_rules = data.get("rules", [])
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, list):
        raise ConfigError("must be a list of rules", file=source, field=_at(field, "rules"))
    rules = tuple(
        _rule(raw, i, source=source, field=_at(field, f"rules[{i}]"), hosts=hosts, checks=known_checks)
        for i, raw in enumerate(raw_rules)
    )
    return Expectation(default, rules, source)


def load_expectation_text(
    text: str,
    *,
    source: str,
    hosts: Mapping[str, frozenset[str]] | None = None,
    checks: Collection[str] | None = None,
) -> Expectation:
    """Parse a standalone expectation file: the block itself, or any mapping with an ``expect:`` key
    (so a scenario file works as an expectation file too)."""
    data = load_yaml(text, source=source)
    if isinstance(data, dict) and "expect" in data:
        return parse_expectation(data["expect"], source=source, field="expect", hosts=hosts, checks=checks)
    if data is None:
        raise ConfigError("is empty; expected 'default' and 'rules'", file=source)
    return parse_expectation(data, source=source, field="", hosts=hosts, checks=checks)


__all__ = [
    "Selector", "Rule", "Expectation", "Mismatch", "compare", "parse_expectation", "load_expectation_text",
]
