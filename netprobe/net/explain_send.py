"""The sender's half of the explain round (docs/design.md "The explain round"): re-send blocked
probes exactly (their probe ids, so their flows, chosen by the caller), with a trace on this
host's own egress for those that ask, and TTL-limited copies (TTL 1..N) for those blocked in the
network. The agent runs it for ``POST /v1/explain/resend``; ``netprobe probe`` runs it itself.

Every copy is sent at once, TTL by TTL (each router on the path meets its copies together), with
no retry: a router answers one sender at most 6 ICMP errors at once (``explain_round.HOPS_PER_SOURCE``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from netprobe.core.cookies import ID_MASK
from netprobe.core.events import ProbeTarget
from netprobe.core.explain_round import MAX_TTL, Resent, last_hop, probe_flow
from netprobe.net.prober import random_probe_id_base
from netprobe.net.rulefinder import RuleFinder

TRACE_WAIT = 0.5  # seconds the egress trace may take to name its flows once the probes went out


@dataclass(frozen=True)
class ResendItem:
    """One probe to re-send: ``probe_id`` fixes its flow; ``trace`` its egress rule; ``hops`` its copies."""

    target: ProbeTarget
    probe_id: int
    trace: bool = False
    hops: bool = False


async def resend(items: Sequence[ResendItem], *, key: bytes, window: float, vni: int = 1, max_ttl: int = MAX_TTL,
                 route_to: Callable | None = None, probe: Callable | None = None,
                 finder: Callable = RuleFinder) -> list[Resent]:
    """Re-send ``items`` from the source the kernel picks for each (all sources at once)."""
    from netprobe.net.prober import probe_targets
    from netprobe.net.route import route_to as kernel_route

    route_to = route_to or kernel_route
    by_source: dict[str, list[ResendItem]] = {}
    for item in items:
        by_source.setdefault(route_to(item.target.address).source, []).append(item)
    results: list[Resent] = []

    async def one(source: str, group: list[ResendItem]) -> None:
        results.extend(await _from_source(source, group, key=key, window=window, vni=vni, max_ttl=max_ttl,
                                          probe=probe or probe_targets, finder=finder))

    async with trio.open_nursery() as nursery:
        for source, group in by_source.items():
            nursery.start_soon(one, source, group)
    order = {item.probe_id: i for i, item in enumerate(items)}
    return sorted(results, key=lambda r: order[r.probe_id])


def _copy_ids(exact: set[int], count: int) -> list[int]:
    """Ids for the TTL-limited copies: consecutive from a random start, none an exact probe's."""
    while True:
        base = random_probe_id_base()
        ids = [(base + j) & ID_MASK for j in range(count)]
        if exact.isdisjoint(ids):
            return ids


async def _from_source(source: str, group: list[ResendItem], *, key, window, vni, max_ttl, probe,
                       finder) -> list[Resent]:
    hop_items = [i for i in group if i.hops]
    copies = [(item, ttl) for ttl in range(1, max_ttl + 1) for item in hop_items]  # TTL by TTL
    copy_ids = _copy_ids({i.probe_id for i in group}, len(copies))
    targets = [i.target for i in group] + [dataclasses.replace(item.target, ttl=ttl) for item, ttl in copies]
    ids = [i.probe_id for i in group] + copy_ids
    egress = {i.probe_id: probe_flow(i.target.check, source, i.target.address, i.probe_id) for i in group if i.trace}
    rules: dict = {}
    async with (finder([(flow, "egress") for flow in egress.values()]) if egress
                else contextlib.nullcontext()) as tracing:
        outcomes, _stats = await probe(source, targets, key=key, window=window, retries=0, vni=vni, ids=ids)
        by_id = {o.probe_id: o for o in outcomes}
        if tracing is not None:
            expected = {flow: by_id[pid].evidence.attempts for pid, flow in egress.items() if pid in by_id}
            rules = await tracing.results(expected_packets=expected, timeout=TRACE_WAIT)
    answers: dict[int, list] = {}
    for (item, ttl), pid in zip(copies, copy_ids):
        outcome = by_id.get(pid)
        answers.setdefault(item.probe_id, []).append((ttl, outcome.evidence.icmp if outcome else None))
    out = []
    for item in group:
        outcome = by_id.get(item.probe_id)
        hop, note = last_hop(answers[item.probe_id], item.target.address) if item.hops else (None, None)
        out.append(Resent(item.probe_id, source, int(bool(outcome and outcome.evidence.sent)),
                          rules.get(egress[item.probe_id]) if item.trace else None, hop, note))
    return out


__all__ = ["ResendItem", "resend", "TRACE_WAIT"]
