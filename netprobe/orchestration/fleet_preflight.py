"""Preflight of every inventory host through its agent, all asked at once."""

from __future__ import annotations

import trio

from netprobe.config import inventory_token, load_inventory
from netprobe.errors import AgentError, ConfigError

AGENT_ITEM = "agent"  # the one preflight item of a host whose agent could not be asked


def fetch_preflight(inventory_path: str, *, pool_cidrs=None, service_cidr=None, profile="calico",
                    token_file: str | None = None, requirements=None, dataplane=None, wireguard=None,
                    vxlan_port=None) -> dict:
    """Every host's preflight report, asked of all agents at once; an agent that fails gives a
    report whose only item is ``agent: unknown`` with the error as evidence. The VXLAN devices
    each agent finds are judged against the port the mesh probes: ``vxlan_port``, else the
    inventory's, else the profile's."""
    from netprobe.agent.client import AgentClient
    from netprobe.agent.protocol import PreflightRequest
    from netprobe.preflight.model import Item, Report, Status

    inventory = load_inventory(inventory_path)
    token = inventory_token(inventory, token_file)
    if vxlan_port is None:
        vxlan_port = inventory.vxlan_port
    request = PreflightRequest(None if pool_cidrs is None else tuple(pool_cidrs), service_cidr, profile,
                               requirements, dataplane, wireguard or None, vxlan_port)
    reports: dict = {}

    async def ask(host):
        try:
            async with AgentClient(host.agent, token=token, timeout=30, ca_file=inventory.ca_file) as client:
                reports[host.name] = await client.preflight(request)
        except (AgentError, ConfigError) as exc:
            reports[host.name] = Report((Item(AGENT_ITEM, "agent", "agent reachable", Status.UNKNOWN, str(exc)),),
                                        host=host.name, profile=profile)

    async def main():
        async with trio.open_nursery() as nursery:
            for host in inventory.hosts:
                nursery.start_soon(ask, host)

    trio.run(main)
    return {h.name: reports[h.name] for h in inventory.hosts}
