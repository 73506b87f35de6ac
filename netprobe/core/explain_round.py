"""The explain round's decisions, pure (docs/design.md "The explain round"): which blocked cells
need which agent to do what, the hop a probe's TTL-limited copies found, and the ``Explain`` of
every blocked cell once the agents answered.

After the mesh joined its cells, for the blocked cells only:

- ``source-egress``: the source re-sends the probe with a trace on its own egress (the rule);
- ``destination-ingress``: the destination arms a trace on its ingress, the source re-sends the
  probe exactly (same flow), the destination names the rule and removes its trace;
- ``network``: the source sends TTL-limited copies (TTL 1..``max_ttl``); the highest TTL whose
  copy drew an ICMP time-exceeded names the last hop. A router's ICMP error in the evidence
  names that router at once (no copies).

What needs nobody (a below-IP drop, a path MTU from the evidence, a return path) is settled here.
The orchestrator carries requests and replies (orchestration/explain_run.py); this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netprobe.core.cells import Cell, Icmp, Reach, Where
from netprobe.core.checks import Check, Proto, family_of
from netprobe.core.cookies import slot_of
from netprobe.core.explain import Explain, Fix, Hop, rule_from_dict
from netprobe.core.fields import MAX_ATTEMPTS, MAX_PROBE_ID, integer, ip, obj, text
from netprobe.core.trace import Flow, NotNamed, RuleFound, fix_lines
from netprobe.core.verdict import ICMP_CODES

CellKey = tuple[str, str, str, int]  # (check, src, dst, family): Cell.key
HostFamily = tuple[str, int]  # (host, address family)

MAX_TTL = 16  # TTL-limited copies per network cell: 1..16 hops covers any cluster's path
# A Linux router answers one sender at most 6 ICMP errors at once, then one a second
# (net.ipv4.icmp_ratelimit 1000 ms x burst 6; measured in namespaces): each network cell's copy
# at a given TTL costs that hop's router one, so a source traces at most 6 network cells a run.
HOPS_PER_SOURCE = 6
MAX_EXPLAIN_FLOWS = 1024  # flows one host traces (or re-sends) in one explain round

BELOW_IP_OUT = "dropped below IP on the way out (netdev/tc egress): not traced"
BELOW_IP_IN = "a netdev/tc drop: not traced"
RETURN_PATH = "the rule that dropped the reply is not traced"
NOT_RESENT = "the re-sent probe did not leave {src}: nothing to trace at {dst}"
NO_HOP = ("no router answered a TTL-limited copy: it died before the first router (on its own segment), "
          "the routers send no ICMP, or their rate limit was spent (a Linux router answers one sender 6 "
          "errors at once, then 1 a second)")
REACHED = "a TTL-limited copy reached {dst}: it is not blocked in the network now"
SILENT_HOPS = "hops {hops} did not answer (a router that sends no ICMP, or its rate limit)"
HOPS_LIMITED = ("hop not traced: a router answers one sender at most {n} ICMP errors at once (Linux "
                "icmp_ratelimit), and {n} other network cells of {src} were traced this run")
OVER_CAP = "not explained: over {n} blocked flows of {host} in one run"
FAILED = "not explained: {error}"
NO_ANSWER = "the rule finder gave no answer for this flow"
HOOK = {Where.SOURCE_EGRESS: "output", Where.DESTINATION_INGRESS: "input"}


def probe_flow(check: Check, src: str, dst: str, probe_id: int | None) -> Flow:
    """A probe's flow as the kernel sees it (outer header). ``probe_id`` None: any source port
    (what a fix allows: real traffic's source ports are not the probe's slot)."""
    if check.proto is Proto.IPIP:
        return Flow("ipip", src, dst, None, None)
    proto = "tcp" if check.proto is Proto.TCP else "udp"  # VXLAN and WireGuard are UDP outside
    return Flow(proto, src, dst, None if probe_id is None else slot_of(probe_id), check.port)


# ------------------------------------------------------------------ what a source reports


@dataclass(frozen=True)
class Resent:
    """What a re-sent probe showed its sender: copies that left (0: this host refused it), the
    rule on its own egress when it was asked to trace, the last hop its TTL-limited copies
    reached (or why none)."""

    probe_id: int
    source: str
    sent: int
    rule: RuleFound | NotNamed | None = None
    hop: Hop | None = None
    hop_note: str | None = None

    def to_dict(self) -> dict:
        return {"probe_id": self.probe_id, "source": self.source, "sent": self.sent, **rule_to_dict(self.rule),
                "hop": None if self.hop is None else self.hop.to_dict(), "hop_note": self.hop_note}

    @classmethod
    def from_dict_untrusted(cls, raw: Any, field: str) -> Resent:
        d = obj(raw, field, ("probe_id", "source", "sent"))
        return cls(integer(d["probe_id"], f"{field}.probe_id", MAX_PROBE_ID), ip(d["source"], f"{field}.source"),
                   integer(d["sent"], f"{field}.sent", MAX_ATTEMPTS), rule_from_wire(d, field),
                   None if d.get("hop") is None else Hop.from_dict(d["hop"], f"{field}.hop"),
                   text(d.get("hop_note"), f"{field}.hop_note", optional=True))


def rule_to_dict(found: RuleFound | NotNamed | None) -> dict:
    """A rule finder's answer on the wire: ``rule`` (the rule) or ``not_named`` (why not)."""
    return {"rule": found.to_dict() if isinstance(found, RuleFound) else None,
            "not_named": found.reason if isinstance(found, NotNamed) else None}


def rule_from_wire(d: dict, field: str) -> RuleFound | NotNamed | None:
    if d.get("rule") is not None:
        return rule_from_dict(d["rule"], f"{field}.rule")
    reason = text(d.get("not_named"), f"{field}.not_named", optional=True)
    return None if reason is None else NotNamed(reason)


def last_hop(answers: Iterable[tuple[int, Icmp | None]], target: str) -> tuple[Hop | None, str | None]:
    """The hop the TTL-limited copies of one probe found: ``answers`` is (TTL, the ICMP error the
    copy drew) per copy, in ``target``'s family (ICMP or ICMPv6; hop limit for TTL). The highest
    TTL answered with time exceeded is the last hop reached."""
    codes = ICMP_CODES[family_of(target)]
    exceeded: dict[int, str] = {}
    refused = None
    reached = False
    for ttl, icmp in answers:
        if icmp is None:
            continue
        if icmp.sender == target:
            reached = True
        elif icmp.type == codes.time_exceeded:
            exceeded[ttl] = icmp.sender
        elif icmp.type == codes.unreach:
            refused = icmp.sender
    if exceeded:
        ttl = max(exceeded)
        silent = [str(t) for t in range(1, ttl) if t not in exceeded]
        return Hop(exceeded[ttl], ttl), SILENT_HOPS.format(hops=", ".join(silent)) if silent else None
    if refused is not None:
        return Hop(refused, None), None
    if reached:
        return None, REACHED.format(dst=target)
    return None, NO_HOP


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Resend:
    """One probe a source re-sends: exactly the blocked cell's (its own ``probe_id``, so its
    flow is known before it leaves), with a trace on its own egress (``trace``) or TTL-limited
    copies (``hops``)."""

    cell: CellKey
    name: str
    address: str
    check: str
    probe_id: int
    trace: bool = False
    hops: bool = False


@dataclass
class ExplainPlan:
    resends: dict[str, list[Resend]] = field(default_factory=dict)  # source host -> what it re-sends
    arms: dict[str, list[Flow]] = field(default_factory=dict)       # destination host -> flows it traces
    flows: dict[CellKey, Flow] = field(default_factory=dict)        # a destination-ingress cell's exact flow
    settled: dict[CellKey, Explain] = field(default_factory=dict)   # explained without asking an agent
    cells: dict[CellKey, Cell] = field(default_factory=dict)        # the blocked cells asked about

    @property
    def empty(self) -> bool:
        """Nothing to ask an agent: the round costs nothing."""
        return not self.resends


def plan_explain(cells: Iterable[Cell], *, addresses: Mapping[HostFamily, str], sources: Mapping[CellKey, str],
                 checks: Mapping[str, Check], first_ids: Mapping[str, int],
                 names: Mapping[str, str] | None = None, silent_hops: bool = False) -> ExplainPlan:
    """What each agent does for the blocked ``cells`` (others are ignored). ``addresses``: (host,
    family) -> its address; ``sources``: the address each cell's probe left from (else its host's
    address of the cell's family); ``first_ids``: per source
    host, the first probe id of its re-sends; ``names``: address -> name, for hops;
    ``silent_hops``: also find the hop of unknown cells that met silence (``netprobe probe``, the
    sender alone, calls a silent drop unknown)."""
    names = names or {}
    plan = ExplainPlan()
    next_id = dict(first_ids)
    hop_cells: dict[str, int] = {}
    for cell in cells:
        if cell.check not in checks:
            continue
        key, ev = cell.key, cell.evidence
        where = cell.where
        if silent_hops and cell.reach is Reach.UNKNOWN and ev.sent and ev.reply is None:
            where = Where.NETWORK  # planned as one: its copies find the hop (the cell stays unknown)
        elif cell.reach is not Reach.BLOCKED or where is None:
            continue
        plan.cells[key] = cell
        if where is Where.RETURN_PATH:
            plan.settled[key] = Explain(note=RETURN_PATH)
            continue
        if where is Where.NETWORK:
            if ev.path_mtu is not None:  # the mtu check: small copies would pass
                plan.settled[key] = Explain(path_mtu=ev.path_mtu)
                continue
            if ev.icmp is not None and ev.icmp.sender != addresses.get((cell.dst, cell.family)):
                plan.settled[key] = Explain(hop=Hop(ev.icmp.sender, None, names.get(ev.icmp.sender)))
                continue
            if hop_cells.get(cell.src, 0) >= HOPS_PER_SOURCE:
                plan.settled[key] = Explain(note=HOPS_LIMITED.format(n=HOPS_PER_SOURCE, src=cell.src))
                continue
        busy = [h for h, n in ((cell.src, len(plan.resends.get(cell.src, ()))),
                               (cell.dst, len(plan.arms.get(cell.dst, ())))) if n >= MAX_EXPLAIN_FLOWS]
        if busy:
            plan.settled[key] = Explain(note=OVER_CAP.format(n=MAX_EXPLAIN_FLOWS, host=busy[0]))
            continue
        pid = next_id[cell.src] & MAX_PROBE_ID
        next_id[cell.src] = pid + 1
        plan.resends.setdefault(cell.src, []).append(Resend(
            key, cell.dst, addresses[(cell.dst, cell.family)], cell.check, pid,
            trace=where is Where.SOURCE_EGRESS, hops=where is Where.NETWORK))
        if where is Where.NETWORK:
            hop_cells[cell.src] = hop_cells.get(cell.src, 0) + 1
        elif where is Where.DESTINATION_INGRESS:
            flow = probe_flow(checks[cell.check], sources.get(key, addresses[(cell.src, cell.family)]),
                              addresses[(cell.dst, cell.family)], pid)
            plan.flows[key] = flow
            plan.arms.setdefault(cell.dst, []).append(flow)
    return plan


# ------------------------------------------------------------------ the answers


def below_ip(cell: Cell) -> str | None:
    """Why a cell's drop is below IP (a netdev/tc hook, an eBPF dataplane), from its evidence
    (``left``, ``reached_ip``), else None."""
    ev = cell.evidence
    if cell.where is Where.SOURCE_EGRESS and ev.left is False:
        return BELOW_IP_OUT
    if cell.where is Where.DESTINATION_INGRESS and ev.arrived and ev.reached_ip is False:
        return BELOW_IP_IN
    return None


def explain_rule(cell: Cell, flow: Flow, found: RuleFound | NotNamed | None, note: str | None = None) -> Explain:
    """A cell blocked at a host: the rule (or why it is not named) and the fix for exactly its flow.
    A drop below IP the rule finder could not name (tc, eBPF) says so, with no fix: no nft or
    iptables line undoes it (an nft netdev rule is named, and fixed, like any other)."""
    rule = found if isinstance(found, RuleFound) else None
    below = below_ip(cell) if rule is None else None
    if below is not None:
        return Explain(note="; ".join(r for r in (below, note) if r))
    reasons = [r for r in (found.reason if isinstance(found, NotNamed) else None, note) if r]
    if found is None and not reasons:
        reasons = [NO_ANSWER]
    return Explain(rule=rule, fix=Fix(**fix_lines(flow, HOOK[cell.where], rule)),  # type: ignore[index]
                   note="; ".join(reasons) or None)


def explain_hop(resent: Resent | None, names: Mapping[str, str], note: str | None = None) -> Explain:
    """A network cell: the last hop its copies reached, named when the inventory knows it."""
    hop = resent.hop if resent is not None else None
    if hop is not None and hop.name is None and hop.address in names:
        hop = Hop(hop.address, hop.ttl, names[hop.address])
    reasons = [r for r in (resent.hop_note if resent is not None else None, note) if r]
    return Explain(hop=hop, note="; ".join(reasons) or None)


def expected_packets(plan: ExplainPlan, resent: Mapping[str, Mapping[int, Resent]]) -> dict[str, dict[Flow, int]]:
    """Per destination, how many copies of each traced flow its sources sent (0 when the source
    failed): the destination's rule finder matches iptables-legacy counters against them."""
    out: dict[str, dict[Flow, int]] = {dst: {} for dst in plan.arms}
    for src, probes in plan.resends.items():
        for r in probes:
            flow = plan.flows.get(r.cell)
            if flow is not None:
                report = resent.get(src, {}).get(r.probe_id)
                out[r.cell[2]][flow] = report.sent if report is not None else 0
    return out


def finish_explain(plan: ExplainPlan, *, resent: Mapping[str, Mapping[int, Resent]],
                   rules: Mapping[str, Mapping[Flow, RuleFound | NotNamed]], failed: Mapping[str, str],
                   addresses: Mapping[HostFamily, str], checks: Mapping[str, Check],
                   names: Mapping[str, str] | None = None) -> dict[CellKey, Explain]:
    """Every planned cell's ``Explain`` from what the agents answered: ``resent[source][probe
    id]``, ``rules[destination][flow]``, ``failed[host]`` the error of an agent that failed a
    stage (its cells say so in their note). Cells whose path MTU is known keep it."""
    names = names or {}
    out = dict(plan.settled)
    for src, probes in plan.resends.items():
        for r in probes:
            cell = plan.cells[r.cell]
            report = resent.get(src, {}).get(r.probe_id)
            src_failed = FAILED.format(error=failed[src]) if src in failed and report is None else None
            if r.hops:
                out[r.cell] = explain_hop(report, names, src_failed)
                continue
            fix_flow = probe_flow(checks[r.check], report.source if report else addresses[(src, cell.family)],
                                  r.address, None)
            if r.trace:
                out[r.cell] = explain_rule(cell, fix_flow, report.rule if report else None, src_failed)
                continue
            dst = cell.dst
            found = rules.get(dst, {}).get(plan.flows[r.cell])
            if found is None and dst in failed:
                note = FAILED.format(error=failed[dst])
            elif report is not None and report.sent == 0:
                note = NOT_RESENT.format(src=src, dst=dst)
            else:
                note = src_failed
            out[r.cell] = explain_rule(cell, fix_flow, found, note)
    for key, explain in out.items():
        mtu = plan.cells[key].evidence.path_mtu
        if mtu is not None and explain.path_mtu is None:
            out[key] = Explain(explain.rule, explain.hop, mtu, explain.fix, explain.note)
    return out


__all__ = ["MAX_TTL", "HOPS_PER_SOURCE", "MAX_EXPLAIN_FLOWS", "CellKey", "Resent", "Resend", "ExplainPlan",
           "probe_flow", "last_hop", "plan_explain", "explain_rule", "explain_hop", "expected_packets",
           "finish_explain", "rule_to_dict", "rule_from_wire"]
