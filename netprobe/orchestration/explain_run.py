"""The explain round's I/O (docs/design.md "The explain round"): after the mesh joined its cells,
three stages, each to every agent concerned at once, each after the previous one finished
everywhere: ``arm`` (destinations trace their blocked flows' ingress), ``resend`` (sources send
the blocked probes again, with their egress traces and TTL-limited copies: one reply window),
``collect`` (destinations name the rules and remove their traces). What to ask and what the
answers mean is ``core.explain_round``'s; this module only carries.

An agent that fails here costs only the explanations of its cells (their ``note`` says why),
never a cell's reach or the run's exit code; a run with no blocked cell asks nobody.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import trio

from netprobe.agent.protocol import TIMEOUT_RANGE, ArmRequest, CollectRequest, ResendProbe, ResendRequest
from netprobe.core.cells import Reach
from netprobe.core.checks import Check
from netprobe.core.explain_round import Resent, expected_packets, finish_explain, plan_explain
from netprobe.core.matrix_store import MatrixStore
from netprobe.core.prober import adapted_window
from netprobe.core.trace import Flow, NotNamed, RuleFound
from netprobe.errors import AgentError

CLEANUP_TIMEOUT = 2.0  # seconds a cancelled round spends removing the traces it armed


async def explain_blocked(store: MatrixStore, *, clients: Mapping[str, object], failed: Mapping[str, str],
                          addresses: Mapping[tuple[str, int], str], checks: Sequence[Check],
                          sources: Mapping[tuple, str],
                          run_id: str, timeout: float, vni: int, names: Mapping[str, str] | None = None,
                          rtt_ms: float | None = None) -> int:
    """Explain every blocked cell of ``store`` in place; returns how many cells got an explanation.

    ``clients``: an open client per agent that answered the mesh (``failed``: why the others
    did not); ``addresses``: (host, family) -> address; ``sources``: the address each cell's probe
    left from (its outcome's), by the cell's key. A re-send with
    TTL-limited copies waits the window the mesh's own probes adapted to (4x ``rtt_ms``, the
    slowest RTT it saw, within 0.2 s..``timeout``) for the routers' errors; a blocked probe's own
    answer is never awaited."""
    by_id = {c.id: c for c in checks}
    window = adapted_window(timeout, None if rtt_ms is None else rtt_ms / 1000)
    names = {**{a: h for (h, _family), a in addresses.items()}, **(names or {})}
    blocked = [c for c in store.problems() if c.reach is Reach.BLOCKED]
    first_ids = {host: int.from_bytes(os.urandom(4), "big") for host in {c.src for c in blocked}}
    plan = plan_explain(blocked, addresses=addresses, sources=sources, checks=by_id, first_ids=first_ids, names=names)
    errors = dict(failed)
    armed: set[str] = set()
    resent: dict[str, dict[int, Resent]] = {}
    rules: dict[str, dict[Flow, RuleFound | NotNamed]] = {}

    async def ask(host: str, call) -> None:
        client = clients.get(host)
        if client is None:
            errors.setdefault(host, "its agent did not answer the mesh")
            return
        try:
            await call(client)
        except AgentError as exc:
            errors[host] = str(exc)

    async def arm(host: str, flows: list[Flow]) -> None:
        async def call(client) -> None:
            await client.explain_arm(ArmRequest(run_id, tuple(flows)))
            armed.add(host)
        await ask(host, call)

    async def send_again(host: str, resends) -> None:
        probes = tuple(ResendProbe(r.name, r.address, r.check, r.probe_id, r.trace, r.hops) for r in resends)
        wanted = tuple(by_id[c] for c in dict.fromkeys(p.check for p in probes))
        # only TTL-limited copies wait for answers (the routers'); a probe re-sent for a trace needs
        # only to leave: the destination's rule finder waits for it when collected
        wait = window if any(p.hops for p in probes) else TIMEOUT_RANGE[0]

        async def call(client) -> None:
            reply = await client.explain_resend(ResendRequest(run_id, wanted, probes, wait, vni))
            resent[host] = {p.probe_id: p for p in reply.probes}
        await ask(host, call)

    async def collect(host: str, expected: dict[Flow, int]) -> None:
        async def call(client) -> None:
            reply = await client.explain_collect(CollectRequest(run_id, tuple(expected.items())))
            rules[host] = dict(reply.rules)
        await ask(host, call)

    async def collect_all() -> None:
        async with trio.open_nursery() as nursery:
            for host, expected in expected_packets(plan, resent).items():
                if host in armed:  # also when its sources failed: collecting removes the trace
                    nursery.start_soon(collect, host, expected)

    if not plan.empty:
        try:
            async with trio.open_nursery() as nursery:
                for host, flows in plan.arms.items():
                    nursery.start_soon(arm, host, flows)
            async with trio.open_nursery() as nursery:
                for host, resends in plan.resends.items():
                    nursery.start_soon(send_again, host, resends)
        except BaseException:  # Ctrl-C, cancelled: the armed traces go now, not when their hold time passes
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await collect_all()
            raise
        await collect_all()
    explained = finish_explain(plan, resent=resent, rules=rules, failed=errors, addresses=addresses, checks=by_id,
                               names=names)
    for key, explain in explained.items():
        store.put(dataclasses.replace(plan.cells[key], explain=explain))
    return len(explained)


__all__ = ["explain_blocked"]
