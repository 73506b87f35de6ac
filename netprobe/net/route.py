"""The kernel's route to a target: which source address a probe leaves from (IPv4 or IPv6)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from netprobe.errors import ConfigError


@dataclass(frozen=True)
class RouteInfo:
    source: str


def resolve_target(target: str) -> str:
    """An IPv4 or IPv6 address for ``target`` (a literal, or a name from /etc/hosts or DNS: its
    first address, in the resolver's order of preference)."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(target, None, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"cannot resolve {target!r} to an IP address", field="TARGET") from None
    return str(ipaddress.ip_address(infos[0][4][0].split("%")[0]))


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def route_to(address: str) -> RouteInfo:
    """The source address the kernel's routing table picks for ``address`` (IPv6: after source
    address selection, RFC 6724, as the kernel does it).

    A UDP socket's connect() runs exactly the kernel's route lookup (policy rules, metrics,
    preferred source) and sends nothing. This replaces a pyroute2 RTM_GETROUTE here: importing
    pyroute2 costs ~22 MB RSS, which alone would break netprobe probe's 60 MB budget
    (docs/design.md); the lab and preflight, where netlink is the job, still use pyroute2.
    """
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))  # port 9 (discard); connect() on UDP sends no packet
        except OSError as exc:
            raise ConfigError(f"no route to {address}: {exc.strerror}", field="TARGET") from None
        source = sock.getsockname()[0]
    if ipaddress.ip_address(source).is_unspecified:
        raise ConfigError(f"no source address for {address}", field="TARGET")
    return RouteInfo(source=source)


def is_local_unicast(address: str) -> bool:
    """Whether ``address`` is one of this host's own unicast addresses, asked the same way: the
    kernel routes to its own address with that address as the source, refuses to connect to a
    broadcast address (no SO_BROADCAST), and picks another source for anyone else's."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))
        except OSError:
            return False
        return sock.getsockname()[0] == address
