"""The kernel's route to a target: which source address a probe leaves from (IPv4 or IPv6), and
whether its next hop is resolved."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from netprobe.errors import ConfigError

SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's (primary) IPv4 address
SIOCGIFMTU = 0x8921   # ... and its MTU
IP_MTU = 14           # linux/in.h: a connected socket's route MTU


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


NUD_RESOLVED = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # reachable, stale, delay, probe, noarp, permanent
IFF_NOARP = 0x80


def unresolved_next_hops(addresses: Iterable[str]) -> set[str]:
    """Which of ``addresses`` the kernel holds packets back from: the route's next hop (its
    gateway, else the address itself) has no resolved neighbour entry on the route's device.
    A packet to such a hop waits in the neighbour queue (and is dropped when ARP gives up)
    without reaching the device, so a tap never sees it leave -- and no filter is to blame.
    Devices without ARP (tunnels, point-to-point) resolve nothing; an address whose route cannot
    be read counts as unresolved (a drop below IP is never claimed on a guess).

    pyroute2 is imported here, only when some probe was not seen leaving (it costs ~22 MB RSS).
    """
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    out = set()
    with IPRoute() as ipr:
        state = {(n["ifindex"], n.get_attr("NDA_DST")): n["state"] for n in ipr.neigh("dump", family=socket.AF_INET)}
        noarp = {link["index"] for link in ipr.get_links() if link["flags"] & IFF_NOARP}
        for address in addresses:
            try:
                route = ipr.route("get", dst=address)[0]
            except NetlinkError:
                out.add(address)
                continue
            oif = route.get_attr("RTA_OIF")
            hop = route.get_attr("RTA_GATEWAY") or address
            if oif not in noarp and not state.get((oif, hop), 0) & NUD_RESOLVED:
                out.add(address)
    return out
def interface_mtu(address: str) -> int:
    """The MTU of the interface a probe to ``address`` leaves from: the one holding the route's
    source address (read with ioctls, no netlink, as ``route_to``). Not the route's MTU, which
    includes a path MTU the kernel learnt from ICMP: the mtu check must not take its own finding
    as the requirement. When no interface holds that address as its primary one, the route's MTU."""
    source = route_to(address).source
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            request = struct.pack("16s16x", name.encode()[:15])
            try:
                addr = fcntl.ioctl(sock, SIOCGIFADDR, request)[20:24]
            except OSError:
                continue  # no IPv4 address
            if socket.inet_ntoa(addr) == source:
                return struct.unpack_from("i", fcntl.ioctl(sock, SIOCGIFMTU, request), 16)[0]
        sock.connect((address, 9))
        return sock.getsockopt(socket.IPPROTO_IP, IP_MTU)
