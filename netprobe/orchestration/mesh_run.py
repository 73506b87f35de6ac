"""`netprobe mesh`'s I/O: ask every agent at once, twice, and hand the typed replies to the core.

Two rounds over the control API, each to all agents concurrently: ``run_probes`` (every agent
probes its peers; the run id also tells each responder when the run started), then
``observations`` (what each responder saw arrive, be accepted and be answered); then, when a
cell is blocked, the explain round (``orchestration/explain_run.py``) over the same clients.
What to ask and what the answers mean is ``core.mesh_logic``'s; this module only carries. A
failing agent, or one answering garbage (the client turns that into an ``AgentError`` too),
costs only its own cells (``unknown``, its error in ``errors``), never the run.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

import trio

from netprobe import __version__
from netprobe.agent.protocol import ObservationsReply, ProbeReply, ProbeRequest
from netprobe.core.checks import Check, family_of
from netprobe.core.inventory import Inventory
from netprobe.core.compact_join import join_store
from netprobe.core import queues
from netprobe.core.mesh_logic import mesh_errors, plan_mesh, unanswered_hosts
from netprobe.core.result import HostInfo, Reach, Result
from netprobe.errors import AgentError
from netprobe.orchestration.explain_run import explain_blocked

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def queue_drops(sent: dict[str, ProbeReply], seen: dict[str, ObservationsReply]) -> dict[str, tuple[str, dict]]:
    """Each agent's own queue drops during the run (core/queues.py): from its observations, which
    span the whole run, else from its probe reply; agents older than these counters report none."""
    out = {h: ("probe", queues.from_stats(r.stats.counters)) for h, r in sent.items()}
    out.update({h: ("observe", d) for h, r in seen.items() if (d := queues.from_stats(r.stats.counters))})
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def run_mesh(
    inventory: Inventory,
    checks: Sequence[Check],
    *,
    token: str,
    timeout: float = 1.0,
    retries: int = 1,
    profile: str | None = None,
    progress: Progress | None = None,
    client_factory=None,
    agent_timeout: float | None = None,
    sample: tuple[int, int] | None = None,
    rate: int | None = None,
    mtu: int | None = None,
    explain: bool = True,
    hop_names: Mapping[str, str] | None = None,
) -> Result:
    """``sample`` = (k, run): each host probes only k of its peers, run ``run``'s share (core/sampling.py);
    ``mtu``: the full size mtu checks require (None: each agent's interface MTU towards each peer).
    ``explain``: explain every blocked cell (at most one more reply window); ``hop_names``: address
    -> name of routers the inventory does not list, for the hops found."""
    from netprobe.agent.client import AgentClient, tls_context

    if agent_timeout is None:
        # the coordinator's own work grows with the fleet: a reply may wait in its socket while the
        # others are parsed (at 1,000 hosts several seconds on 2 loaded cores)
        agent_timeout = max(10.0, 0.03 * len(inventory.hosts))
    if client_factory is None:
        # one TLS context for every https agent (loading the CA is the costly part)
        tls = None
        if any(h.agent.startswith("https://") for h in inventory.hosts):
            with contextlib.suppress(AgentError):  # else each https agent's client fails, with these words
                tls = tls_context("the inventory's agents", inventory.ca_file)
        client_factory = functools.partial(AgentClient, token=token, timeout=agent_timeout, tls=tls)
    make_client = client_factory
    started = _now()
    plan = plan_mesh(inventory, checks, sample=sample)
    run_id = os.urandom(8).hex()
    sent: dict[str, ProbeReply] = {}
    seen: dict[str, ObservationsReply] = {}
    failures: dict[str, tuple[str, str]] = {}  # host -> (stage, message)
    total = len(inventory.hosts)

    probed = trio.Event()
    pending = [total]

    def round_done(stage: str, count: int) -> None:
        if progress:
            progress(stage, count, total)

    clients: dict[str, object] = {}

    async def agent(host, stack: contextlib.AsyncExitStack) -> None:
        """One client per agent for every round (kept open for the explain round); round two
        starts when every agent finished round one (the responders must have seen every probe
        before they are asked)."""
        peers = plan.peers[host.name]
        request = ProbeRequest(run_id, peers, tuple(checks) if peers else (), timeout, retries, inventory.vni,
                               compact=True, rate=rate, mtu=mtu)
        stage = "probe"
        try:
            try:
                client = await stack.enter_async_context(make_client(host.agent))
                sent[host.name] = await client.run_probes(request)
            finally:  # whatever happened, this agent's round one is over
                pending[0] -= 1
                round_done("probe", total - pending[0])
                if pending[0] == 0:
                    probed.set()
            stage = "observe"
            await probed.wait()
            seen[host.name] = await client.observations(run_id)
            clients[host.name] = client
            round_done("observe", len(seen))
        except AgentError as exc:
            failures[host.name] = (stage, str(exc))

    names = [h.name for h in inventory.hosts]
    async with contextlib.AsyncExitStack() as stack:
        async with trio.open_nursery() as nursery:
            for host in inventory.hosts:
                nursery.start_soon(agent, host, stack)
        cells = join_store([(h.name, h.address4, h.address6) for h in inventory.hosts], checks, plan.peers, sent,
                           seen, {h: m for h, (_, m) in failures.items()}, sparse=sample is not None)
        if explain and any(cells.counts(k)[Reach.BLOCKED] for k in range(len(cells.checks))):
            round_done("explain", 0)
            addresses = {(h.name, family): a for h in inventory.hosts
                         for family, a in ((4, h.address4), (6, h.address6)) if a is not None}
            await explain_blocked(cells, clients=clients, failed={h: m for h, (_, m) in failures.items()},
                                  addresses=addresses, checks=checks,
                                  sources={(o.check, h, o.name, family_of(o.address)): o.source
                                           for h, r in sent.items() for o in r.outcomes},
                                  run_id=run_id, timeout=timeout, vni=inventory.vni, names=hop_names,
                                  rtt_ms=cells.max_rtt_ms())
            round_done("explain", total)
    return Result(
        cells=cells,
        hosts=[HostInfo(h.name, h.address, tuple(sorted(h.roles)), h.address6) for h in inventory.hosts],
        checks=[c.to_dict() for c in checks],
        profile=profile,
        started=started,
        finished=_now(),
        errors=mesh_errors(names, failures, {h: r.stats.kernel_drops for h, r in sent.items()},
                           {h: r.stats.kernel_drops for h, r in seen.items()}, queue_drops(sent, seen),
                           unanswered_hosts(cells)),
        skipped=[{"check": s.check, "reason": s.reason} for s in plan.skipped],
        netprobe_version=__version__,
        sample=None if sample is None else {"k": sample[0], "run": sample[1]},
    )
