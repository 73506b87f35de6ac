"""The kernel's route to a target: which source address a probe leaves from."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from netprobe.errors import ConfigError


@dataclass(frozen=True)
class RouteInfo:
    source: str


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
    """The source address the kernel's routing table picks for ``address``.

    A UDP socket's connect() runs exactly the kernel's route lookup (policy rules, metrics,
    preferred source) and sends nothing. This replaces a pyroute2 RTM_GETROUTE here: importing
    pyroute2 costs ~22 MB RSS, which alone would break netprobe probe's 60 MB budget
    (docs/design.md); the lab and preflight, where netlink is the job, still use pyroute2.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))  # port 9 (discard); connect() on UDP sends no packet
        except OSError as exc:
            raise ConfigError(f"no route to {address}: {exc.strerror}", field="TARGET") from None
        source = sock.getsockname()[0]
    if source == "0.0.0.0":
        raise ConfigError(f"no source address for {address}", field="TARGET")
    return RouteInfo(source=source)


def is_local_unicast(address: str) -> bool:
    """Whether ``address`` is one of this host's own unicast addresses, asked the same way: the
    kernel routes to its own address with that address as the source, refuses to connect to a
    broadcast address (no SO_BROADCAST), and picks another source for anyone else's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))
        except OSError:
            return False
        return sock.getsockname()[0] == address
