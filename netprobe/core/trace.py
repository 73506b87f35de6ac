"""The rule finder's pure types (docs/design.md, "The explain round"): a probe's flow, the rule
that dropped it or why none could be named, and the lines that would allow the flow.

A stand-in with exactly the names and signatures of the rulefinder branch's module (issue #10's
contract), so the explain round builds and runs before that branch lands; its version replaces
this file at merge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

HOOK_CHAINS = {"input": "INPUT", "output": "OUTPUT", "forward": "FORWARD"}


@dataclass(frozen=True)
class Flow:
    """One probe's flow as the kernel sees it (outer header); ports None for ipip (or any port)."""

    proto: str  # "tcp" | "udp" | "ipip"
    src: str
    dst: str
    sport: int | None
    dport: int | None


@dataclass(frozen=True)
class RuleFound:
    """The rule (or chain policy) whose verdict dropped a flow."""

    family: str  # nft family ("ip", "ip6", "inet", "netdev", "bridge") or "iptables-legacy"
    table: str
    chain: str
    handle: int | None
    text: str  # as `nft -a list` / `iptables-save` shows it; "policy drop" for a chain policy
    comment: str | None
    verdict: str  # "drop", "reject", "policy drop", ...

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NotNamed:
    """Why no rule could be named for a flow."""

    reason: str


def fix_lines(flow: Flow, hook: str, rule: RuleFound | None) -> dict:
    """The nft and iptables lines that would allow exactly ``flow`` at ``hook`` (input, output or
    forward), before ``rule`` when it is known; printed, never applied."""
    match = [f"ip saddr {flow.src}", f"ip daddr {flow.dst}"]
    ipt = [f"-s {flow.src}", f"-d {flow.dst}"]
    if flow.proto == "ipip":
        match.append("ip protocol ipencap")
        ipt.append("-p 4")
    else:
        match.append(f"{flow.proto} dport {flow.dport}")
        ipt.append(f"-p {flow.proto} --dport {flow.dport}")
    if rule is not None and rule.family != "iptables-legacy":
        where = f"{rule.family} {rule.table} {rule.chain}" + (f" position {rule.handle}" if rule.handle else "")
    else:
        where = f"inet filter {hook}"
    return {"nft": f"nft insert rule {where} {' '.join(match)} accept",
            "iptables": f"iptables -I {HOOK_CHAINS[hook]} {' '.join(ipt)} -j ACCEPT"}
