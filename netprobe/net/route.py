"""The kernel's route to a target: which source address and interface a probe leaves from."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from netprobe.errors import ConfigError


@dataclass(frozen=True)
class RouteInfo:
    source: str
    ifname: str | None
    gateway: str | None


def resolve_target(target: str) -> str:
    """An IPv4 address for ``target`` (a literal or a name from /etc/hosts or DNS)."""
    try:
        return str(ipaddress.IPv4Address(target))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(target, None, socket.AF_INET)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"cannot resolve {target!r} to an IPv4 address", field="TARGET") from None
    return infos[0][4][0]


def route_to(address: str) -> RouteInfo:
    """Ask the kernel (pyroute2, RTM_GETROUTE) how it would reach ``address``."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            routes = ipr.route("get", dst=address)
        except NetlinkError as exc:
            raise ConfigError(f"no route to {address}: {exc.args[-1]}", field="TARGET") from None
        if not routes:
            raise ConfigError(f"no route to {address}", field="TARGET")
        route = routes[0]
        source = route.get("RTA_PREFSRC")
        oif = route.get("RTA_OIF")
        ifname = None
        if oif is not None:
            links = ipr.link("get", index=oif)
            ifname = links[0].get("IFLA_IFNAME") if links else None
        if source is None:
            raise ConfigError(f"the route to {address} has no source address", field="TARGET")
        return RouteInfo(source=source, ifname=ifname, gateway=route.get("RTA_GATEWAY"))
