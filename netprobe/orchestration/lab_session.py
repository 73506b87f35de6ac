"""`netprobe lab run`: bring a scenario's lab up, a responder in every host, mesh, verify against
the scenario's expectation, tear everything down. The same pieces a user runs on a cluster."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from netprobe.errors import LabError

RESPONDER_READY_TIMEOUT = 30.0


@dataclass
class LabRun:
    scenario: object
    result: object
    mismatches: list

    @property
    def exit_code(self) -> int:
        from netprobe.core.exitcode import compared_exit_code

        return compared_exit_code([self.result], len(self.mismatches))


def start_responders(lab, hosts) -> None:
    """One responder per host namespace on the unix socket the lab's inventory names."""
    for host in hosts:
        lab.spawn(host, [sys.executable, "-m", "netprobe", "responder", "--listen", f"unix:{lab.agent_socket(host)}",
                         "--token-file", str(lab.token_path), "--name", host], f"responder-{lab.scenario.short(host)}")


async def wait_for_agents(inventory, token: str, timeout: float = RESPONDER_READY_TIMEOUT) -> None:
    """Until every agent answers health (its captures are open by then), or LabError."""
    import trio

    from netprobe.agent.client import AgentClient
    from netprobe.errors import AgentError

    pending = {h.name: h for h in inventory.hosts}
    last_error: dict[str, str] = {}
    with trio.move_on_after(timeout):
        while pending:
            for name, host in list(pending.items()):
                try:
                    async with AgentClient(host.agent, token=token, timeout=2) as client:
                        await client.health()
                    del pending[name]
                except AgentError as exc:
                    last_error[name] = str(exc)
            if pending:
                await trio.sleep(0.1)
    if pending:
        detail = "; ".join(f"{n}: {last_error.get(n, 'no answer')}" for n in pending)
        raise LabError(f"responders did not come up within {timeout:.0f}s: {detail}")


def run_scenario(ref: str, *, name: str | None = None, timeout: float = 0.5, retries: int = 1,
                 checks: str | None = None, on_ready=None, explain: bool = True) -> LabRun:
    """Run one scenario end to end; the lab is removed whatever happens. ``explain``: explain the
    blocked cells (hops are named after the scenario's routers)."""
    import trio

    from netprobe.config import parse_checks
    from netprobe.core.expect import compare
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import load_scenario
    from netprobe.config import inventory_token, load_inventory
    from netprobe.orchestration.mesh_run import run_mesh

    scenario = load_scenario(ref)
    with running_lab(scenario, name) as lab:
        inventory = load_inventory(str(lab.inventory_path))
        token = inventory_token(inventory)
        selected = parse_checks(scenario.profile, checks, apiserver_port=inventory.apiserver_port,
                                vxlan_port=inventory.vxlan_port)
        started = time.monotonic()
        start_responders(lab, [h.name for h in scenario.hosts])
        trio.run(wait_for_agents, inventory, token)
        if on_ready is not None:
            on_ready(lab, len(scenario.hosts), time.monotonic() - started)
        routers = {address: r.name for r in scenario.routers for _segment, address in r.addresses}
        result = trio.run(lambda: run_mesh(inventory, selected, token=token, timeout=timeout, retries=retries,
                                           profile=None if checks else scenario.profile, explain=explain,
                                           hop_names=routers))
    return LabRun(scenario, result, compare(scenario.expect, result))
