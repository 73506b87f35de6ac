"""`iptables-save` text, for naming a rule nftables cannot trace (docs/design.md, "Naming the
rule"). Pure.

iptables-legacy rules run outside nftables: a trace never shows them. Their packet counters do
(`iptables-legacy-save -c` before and after the probes): the drop rule whose counter moved by
exactly the packets of the flows it can match is the one that dropped them. iptables-nft rules
are traced like any nft rule, but nft shows neither their iptables form nor their comment (an
xtables match): rule N of a chain in nft is rule N of that chain in `iptables-nft-save`.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from netprobe.core.trace import Flow, RuleFound

BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
_NOT_HERE = {"ingress": {"FORWARD", "OUTPUT", "POSTROUTING"}, "egress": {"PREROUTING", "INPUT", "FORWARD"}}
_PROTO_NAMES = {"tcp": {"tcp", "6"}, "udp": {"udp", "17"}, "ipip": {"ipencap", "4"}}
SEARCH_BUDGET = 20_000  # steps of the counter assignment search before giving up as ambiguous


@dataclass(frozen=True)
class SavedRule:
    table: str
    chain: str
    position: int  # 1-based, within its chain
    spec: str  # "-A INPUT -p tcp ... -j DROP", without its counters
    packets: int

    @property
    def target(self) -> str | None:
        words = self.spec.split()
        return words[words.index("-j") + 1] if "-j" in words[:-1] else None


@dataclass(frozen=True)
class SavedPolicy:
    table: str
    chain: str
    policy: str
    packets: int


@dataclass(frozen=True)
class Saved:
    rules: tuple[SavedRule, ...]
    policies: tuple[SavedPolicy, ...]

    def chain(self, table: str, chain: str) -> list[SavedRule]:
        return [r for r in self.rules if (r.table, r.chain) == (table, chain)]


def _counters(word: str) -> int:
    try:
        return int(word.strip("[]").split(":")[0])
    except ValueError:
        return 0


def parse_save(text: str) -> Saved:
    """The rules and built-in chain policies of `iptables-save [-c]` output (counters 0 without -c)."""
    rules, policies, table, count = [], [], "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            words = line[1:].split()
            if len(words) >= 2 and words[1] != "-":
                policies.append(SavedPolicy(table, words[0], words[1], _counters(words[2]) if len(words) > 2 else 0))
        elif line.startswith(("[", "-A ")):
            packets = 0
            if line.startswith("["):
                counters, _, line = line.partition(" ")
                packets = _counters(counters)
            words = line.split(maxsplit=2)
            if len(words) >= 2 and words[0] == "-A":
                count[table, words[1]] = count.get((table, words[1]), 0) + 1
                rules.append(SavedRule(table, words[1], count[table, words[1]], line, packets))
    return Saved(tuple(rules), tuple(policies))


def comment_of(spec: str) -> str | None:
    words = _words(spec)
    return words[words.index("--comment") + 1] if "--comment" in words[:-1] else None


def _words(spec: str) -> list[str]:
    try:
        return shlex.split(spec)
    except ValueError:
        return spec.split()


def iptables_form(save: str, table: str, chain: str, handle: int | None,
                  nft_rules: list[tuple[int, str]]) -> tuple[str, str | None, int | None] | None:
    """(iptables form, comment, position) of the rule ``handle`` (None: the chain's policy) of an
    nft chain whose rules are ``nft_rules``, when `iptables-nft-save` text ``save`` holds that
    chain with as many rules: iptables-nft keeps both in the same order."""
    saved = parse_save(save)
    if handle is None:
        policy = next((p for p in saved.policies if (p.table, p.chain) == (table, chain)), None)
        return None if policy is None else (f"-P {chain} {policy.policy}", None, None)
    rules = saved.chain(table, chain)
    handles = [h for h, _ in nft_rules]
    if handle not in handles or len(rules) != len(handles):
        return None
    rule = rules[handles.index(handle)]
    return rule.spec, comment_of(rule.spec), rule.position


# ---------------------------------------------------------------- legacy counters

def _compatible(spec: str, flow: Flow) -> bool:
    """Whether a rule could match the flow, judged on the matches that say so (protocol,
    addresses, ports); any other match might, and a negated one is not judged."""
    words = _words(spec)
    for i, word in enumerate(words[:-1]):
        value = words[i + 1]
        if i and words[i - 1] == "!":
            continue
        if word in ("-p", "--protocol") and value not in {"all", "0"} | _PROTO_NAMES[flow.proto]:
            return False
        if word in ("-s", "--source", "-d", "--destination"):
            address = flow.src if word in ("-s", "--source") else flow.dst
            if not _in_networks(address, value):
                return False
        port = flow.sport if word in ("--sport", "--source-port", "--sports", "--source-ports") else \
            flow.dport if word in ("--dport", "--destination-port", "--dports", "--destination-ports") else None
        if port is not None and not _in_ports(port, value):
            return False
        known = [p for p in (flow.sport, flow.dport) if p is not None]
        if word == "--ports" and known and not any(_in_ports(p, value) for p in known):
            return False
    return True


def _in_networks(address: str, value: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(v, strict=False) for v in value.split(","))
    except (ValueError, TypeError):
        return True


def _in_ports(port: int, value: str) -> bool:
    try:
        for part in value.split(","):
            lo, colon, hi = part.partition(":")  # "N", "N:M", ":M", "N:"
            low = int(lo) if lo else 0
            if low <= port <= ((int(hi) if hi else 65535) if colon else low):
                return True
        return False
    except ValueError:
        return True


def legacy_rules(before: str, after: str, wanted: Mapping[Flow, tuple[str, int]]) -> dict[Flow, RuleFound | str]:
    """For each flow (direction "ingress"/"egress", packets sent): the iptables-legacy drop rule or
    built-in chain policy DROP whose packet counter moved by exactly the packets of the flows
    given to it, when the counters allow one answer only; else why not (a string)."""
    old, new = parse_save(before), parse_save(after)
    was = {(r.table, r.chain, r.position, r.spec): r.packets for r in old.rules}
    moved: list[SavedRule | SavedPolicy] = [
        r for r in new.rules if r.target in ("DROP", "REJECT")
        and r.packets > was.get((r.table, r.chain, r.position, r.spec), r.packets)]
    was_p = {(p.table, p.chain): p.packets for p in old.policies}
    moved += [p for p in new.policies if p.policy == "DROP" and p.packets > was_p.get((p.table, p.chain), p.packets)]
    delta = [c.packets - (was[c.table, c.chain, c.position, c.spec] if isinstance(c, SavedRule)
                          else was_p[c.table, c.chain]) for c in moved]
    options = {f: [i for i, c in enumerate(moved)
                   if c.chain not in _NOT_HERE[direction] and (isinstance(c, SavedPolicy) or _compatible(c.spec, f))]
               for f, (direction, _n) in wanted.items()}
    need = {f: n for f, (_d, n) in wanted.items()}
    chosen = _assign([f for f in wanted if options[f] and need[f] > 0], need, options, delta)
    found: dict[Flow, RuleFound | str] = {}
    for flow, (_direction, n) in wanted.items():
        picks = chosen.get(flow, set()) if chosen is not None else set()
        if len(picks) == 1 and None not in picks:
            found[flow] = _legacy_found(moved[picks.pop()])
        elif chosen is None or len(picks) > 1:
            found[flow] = "iptables-legacy counters fit more than one rule (other traffic, or flows alike)"
        elif not options[flow]:
            found[flow] = f"no iptables-legacy drop rule that could match it counted a packet (sent {n})"
        else:
            found[flow] = f"no iptables-legacy drop rule counted exactly the {n} packet(s) sent"
    return found


def _legacy_found(c: SavedRule | SavedPolicy) -> RuleFound:
    if isinstance(c, SavedPolicy):
        return RuleFound("iptables-legacy", c.table, c.chain, None, "policy drop", None, "policy drop",
                         f"-P {c.chain} DROP", None)
    return RuleFound("iptables-legacy", c.table, c.chain, None, c.spec, comment_of(c.spec),
                     "reject" if c.target == "REJECT" else "drop", c.spec, c.position)


class _TooMany(Exception):
    pass


def _assign(flows: list[Flow], need: Mapping[Flow, int], options: Mapping[Flow, list[int]],
            delta: list[int]) -> dict[Flow, set[int | None]] | None:
    """Every way to give flows to moved counters so that each counter used moved by exactly the
    packets given to it (a flow may also go to none), keeping the ways that place the most flows:
    per flow, the set of counters (None: none) it gets in those. None when the search is too big."""
    used = [0] * len(delta)
    current: dict[Flow, int | None] = {}
    best: list = [-1, {}]
    steps = 0

    def visit(i: int, placed: int) -> None:
        nonlocal steps
        steps += 1
        if steps > SEARCH_BUDGET:
            raise _TooMany
        if placed + len(flows) - i < best[0]:
            return
        if i == len(flows):
            if all(u in (0, d) for u, d in zip(used, delta)):
                if placed > best[0]:
                    best[:] = [placed, {}]
                for f, c in current.items():
                    best[1].setdefault(f, set()).add(c)
            return
        flow = flows[i]
        for c in options[flow]:
            if used[c] + need[flow] <= delta[c]:
                used[c] += need[flow]
                current[flow] = c
                visit(i + 1, placed + 1)
                used[c] -= need[flow]
        current[flow] = None
        visit(i + 1, placed)
        del current[flow]

    try:
        visit(0, 0)
    except _TooMany:
        return None
    return best[1]
