"""`netprobe mesh`: plan -> ask every agent at once -> collect observations -> classify -> Result.

Two rounds over the control API, each to all agents concurrently: ``run_probes`` (every agent
probes its peers; the run id also tells each responder when the run started), then
``observations`` (what each responder saw arrive, be accepted and be answered). A failing agent
costs only its own cells (``unknown``, its error in ``errors``), never the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import trio

from netprobe import __version__
from netprobe.agent.protocol import ProbeRequest, Target
from netprobe.core.checks import Check, HostRef, PlannedCell, plan_cells
from netprobe.core.inventory import Inventory
from netprobe.core.result import Cell, Evidence, HostInfo, Reach, Result, Verdict
from netprobe.core.verdict import classify_cell
from netprobe.errors import AgentError

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def plan(inventory: Inventory, checks: Sequence[Check]):
    hosts = [HostRef(h.name, h.address, h.roles) for h in inventory.hosts]
    return plan_cells(hosts, checks)


def probe_requests(run_id: str, cells: Sequence[PlannedCell], checks: Sequence[Check], inventory: Inventory, *,
                   timeout: float, retries: int) -> dict[str, ProbeRequest]:
    """One request per host (an empty one where the host probes nobody: it still learns the run)."""
    wanted: dict[str, dict[str, list[str]]] = {h.name: {} for h in inventory.hosts}
    for cell in cells:
        wanted[cell.src.name].setdefault(cell.dst.name, []).append(cell.check.id)
    check_dicts = tuple(c.to_dict() for c in checks)
    requests = {}
    for host in inventory.hosts:
        targets = tuple(Target(dst, inventory.host(dst).address, tuple(ids)) for dst, ids in wanted[host.name].items())
        requests[host.name] = ProbeRequest(run_id, targets, check_dicts if targets else (), timeout, retries,
                                           inventory.vni)
    return requests


def classify_cells(cells: Sequence[PlannedCell], sent: dict[str, dict], seen: dict[str, dict],
                   failed: dict[str, str]) -> list[Cell]:
    """Join each planned cell with its sender outcome and its destination's observation."""
    out = []
    outcome_index = {}
    for host, reply in sent.items():
        for o in reply.get("outcomes", []):
            outcome_index[(host, o["check"], o["name"])] = o
    obs_index = {}
    for host, reply in seen.items():
        for o in reply.get("observations", []):
            obs_index[(host, o["src"], o["probe_id"])] = o
    for pc in cells:
        check, src, dst = pc.check, pc.src.name, pc.dst.name
        outcome = outcome_index.get((src, check.id, dst))
        if outcome is None:
            reason = failed.get(src, "the agent returned no outcome for this cell")
            ev = Evidence(sent=False, attempts=0, send_error=f"not probed: {reason}")
            out.append(Cell(check.id, src, dst, Reach.UNKNOWN, None, Verdict.ERROR, None, ev))
            continue
        ev = Evidence.from_dict(outcome["evidence"])
        if dst in seen:
            obs = obs_index.get((dst, outcome["source"], outcome["probe_id"]))
            ev = dataclasses.replace(ev, arrived=bool(obs and obs["arrived"]), accepted=bool(obs and obs["accepted"]),
                                     answered=bool(obs and obs["answered"]))
        out.append(classify_cell(check, src, dst, pc.dst.address, ev, outcome.get("rtt_ms")))
    return out


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
    agent_timeout: float = 10.0,
) -> Result:
    from netprobe.agent.client import AgentClient

    make_client = client_factory or (lambda url: AgentClient(url, token=token, timeout=agent_timeout,
                                                             ca_file=inventory.ca_file))
    started = _now()
    cells, skipped = plan(inventory, checks)
    run_id = os.urandom(8).hex()
    requests = probe_requests(run_id, cells, checks, inventory, timeout=timeout, retries=retries)
    sent: dict[str, dict] = {}
    seen: dict[str, dict] = {}
    failed: dict[str, str] = {}
    errors: list[dict] = []
    total = len(inventory.hosts)

    probed = trio.Event()
    pending = [total]

    def fail(host, stage: str, exc: Exception) -> None:
        failed.setdefault(host.name, str(exc))
        errors.append({"host": host.name, "stage": stage, "message": str(exc)})

    def round_done(stage: str, count: int) -> None:
        if progress:
            progress(stage, count, total)

    async def agent(host) -> None:
        """One client per agent for both rounds; round two starts when every agent finished
        round one (the responders must have seen every probe before they are asked)."""
        stage = "probe"
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    client = await stack.enter_async_context(make_client(host.agent))
                    sent[host.name] = await client.run_probes(requests[host.name])
                finally:  # whatever happened, this agent's round one is over
                    pending[0] -= 1
                    round_done("probe", total - pending[0])
                    if pending[0] == 0:
                        probed.set()
                stage = "observe"
                await probed.wait()
                seen[host.name] = await client.observations(run_id)
                round_done("observe", len(seen))
        except AgentError as exc:
            fail(host, stage, exc)

    async with trio.open_nursery() as nursery:
        for host in inventory.hosts:
            nursery.start_soon(agent, host)

    for stage, replies in (("probe", sent), ("observe", seen)):
        for host, reply in replies.items():
            drops = (reply.get("stats") or {}).get("kernel_drops", 0)
            if drops:
                side = "its probes' replies" if stage == "probe" else "what arrived at it"
                errors.append({"host": host, "stage": stage, "message":
                               f"the kernel dropped {drops} captured packets ({side}): its verdicts may be wrong"})
    result_cells = classify_cells(cells, sent, seen, failed)
    return Result(
        cells=result_cells,
        hosts=[HostInfo(h.name, h.address, tuple(sorted(h.roles))) for h in inventory.hosts],
        checks=[c.to_dict() for c in checks],
        profile=profile,
        started=started,
        finished=_now(),
        errors=errors,
        skipped=[{"check": s.check, "reason": s.reason} for s in skipped],
        netprobe_version=__version__,
    )


def exit_code(result: Result) -> int:
    """3 when the run was partial, 1 when a cell is blocked or unproven, else 0."""
    if result.errors:
        return 3
    if any(c.reach is not Reach.ALLOWED for c in result.cells):
        return 1
    return 0
