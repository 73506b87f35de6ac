"""One-shot probing from this host (``netprobe probe``): the sender alone, no responder."""

from __future__ import annotations

import dataclasses
import os
import socket as socket_mod
from collections.abc import Sequence

from netprobe.core.checks import Check, family_of
from netprobe.core.explain_round import finish_explain, plan_explain
from netprobe.core.result import Cell, Where
from netprobe.core.keys import probe_key
from netprobe.core.events import Outcome, ProbeTarget
from netprobe.core.verdict import classify_cell


def outcome_cell(outcome: Outcome, src_name: str, dst_name: str) -> Cell:
    """A cell from the sender's evidence alone (reach unknown where the sender can't know)."""
    t = outcome.target
    return classify_cell(t.check, src_name, dst_name, t.address, outcome.evidence, outcome.rtt_ms)


def run_probe(target: str, checks: Sequence[Check], *, timeout: float, retries: int, vni: int = 1,
              token: str | None = None, address: str | None = None, mtu: int | None = None,
              explain: bool = True) -> tuple[list[Cell], dict]:
    """Resolve ``target`` (unless ``address`` is its address already), pick the source the kernel
    would use, probe every check once (an mtu check at ``mtu`` bytes, else this host's interface
    MTU towards the target); then explain what the sender alone can: its own egress rule, the hop
    a network block died after."""
    import trio

    from netprobe.net.route import resolve_target, route_to

    address = address or resolve_target(target)
    route = route_to(address)
    key = probe_key(token) if token else os.urandom(32)
    targets = [ProbeTarget(c, address, target) for c in checks]
    src_name = socket_mod.gethostname()

    async def run() -> tuple[list[Cell], dict]:
        from netprobe.core import queues
        from netprobe.net.prober import probe_targets
        from netprobe.net.queues import read_counters

        before = read_counters()
        outcomes, stats = await probe_targets(route.source, targets, key=key, window=timeout, retries=retries,
                                              vni=vni, mtu=mtu)
        stats.update(queues.moved(before, read_counters()))  # this host's own drops meanwhile
        cells = [outcome_cell(o, src_name, target) for o in outcomes]
        if explain:
            family = family_of(address)
            cells = await explain_own(cells, {(src_name, family): route.source, (target, family): address}, checks,
                                      key=key, window=timeout, vni=vni)
        return cells, stats

    cells, stats = trio.run(run)
    stats.update(source=route.source, address=address)
    return cells, stats


async def explain_own(cells: list[Cell], addresses: dict[tuple[str, int], str], checks: Sequence[Check], *, key: bytes,
                      window: float, vni: int) -> list[Cell]:
    """The explain round with no agent: what this host can see of its blocked cells (its own
    egress rule, the hop), and how far a probe that met silence got; a cell blocked at the
    destination needs the destination's agent."""
    from netprobe.net.explain_send import ResendItem, resend

    by_id = {c.id: c for c in checks}
    own = [c for c in cells if c.where is not Where.DESTINATION_INGRESS]
    plan = plan_explain(own, addresses=addresses, sources={}, checks=by_id, silent_hops=True,
                        first_ids={c.src: int.from_bytes(os.urandom(4), "big") for c in own})
    items = [ResendItem(ProbeTarget(by_id[r.check], r.address, r.name), r.probe_id, r.trace, r.hops)
             for resends in plan.resends.values() for r in resends]
    resent = {src: {r.probe_id: r for r in await resend(items, key=key, window=window, vni=vni)}
              for src in plan.resends} if items else {}
    explained = finish_explain(plan, resent=resent, rules={}, failed={}, addresses=addresses, checks=by_id)
    return [dataclasses.replace(c, explain=explained[c.key]) if c.key in explained else c for c in cells]
