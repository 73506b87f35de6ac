"""IP pool overlap: a pod pool must not overlap the host's addresses, its routes, the service
range, nor another pool. Pure (``ipaddress`` only).

Calico's and flannel's own addresses and routes (tunl0, vxlan.calico, cali*, flannel.*, routes
installed by BIRD or Felix) sit inside the pool by design; they are left out and counted, so a
preflight re-run on a working node does not fail on the network it is checking for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netprobe.errors import ConfigError
from netprobe.preflight.facts import HostAddress, HostRoute

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_POOL = "192.168.0.0/16"
DEFAULT_CANAL_POOL = "10.244.0.0/16"

PROVIDER_DEVICES = ("tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali")
PROVIDER_DEVICE_PREFIXES = ("cali", "flannel.")
PROVIDER_PROTOS = {12: "bird", 80: "felix"}
ROUTE_TYPES_CHECKED = {1: "", 6: "blackhole ", 7: "unreachable ", 8: "prohibit ", 9: "throw "}
LOCAL_TABLE = 255


def parse_cidr(text: str, option: str) -> Network:
    """A network in CIDR form, or a ConfigError naming the option (-> exit 2, one line)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        hint = ""
        try:
            hint = f" (did you mean {ipaddress.ip_network(text.strip(), strict=False)}?)"
        except ValueError:
            pass
        raise ConfigError(f"not a network in CIDR form: {exc}{hint}", field=option) from None


def default_pools(profile: str) -> list[str]:
    return [DEFAULT_CANAL_POOL if profile == "canal" else DEFAULT_POOL]


def is_provider_device(dev: str | None) -> bool:
    return bool(dev) and (dev in PROVIDER_DEVICES or dev.startswith(PROVIDER_DEVICE_PREFIXES))


@dataclass(frozen=True)
class Conflict:
    what: str  # "address 192.168.1.10/24 on eth0", "route 192.168.5.0/24 dev eth1 (table main)"


@dataclass(frozen=True)
class PoolCheck:
    conflicts: tuple[Conflict, ...]
    ignored: int  # provider-owned addresses/routes inside the pool, left out on purpose


def host_conflicts(pool: Network, addresses: list[HostAddress], routes: list[HostRoute]) -> PoolCheck:
    """Addresses whose subnet overlaps the pool and routes whose destination does.

    A default route overlaps everything and says nothing; local-table routes repeat the
    addresses; broadcast/multicast/local route types are not destinations pods could clash with.
    """
    conflicts: list[Conflict] = []
    ignored = 0
    for addr in addresses:
        iface = ipaddress.ip_interface(addr.cidr)
        if iface.version != pool.version or not iface.network.overlaps(pool):
            continue
        if is_provider_device(addr.ifname):
            ignored += 1
            continue
        conflicts.append(Conflict(f"address {addr.cidr} on {addr.ifname}"))
    for route in routes:
        net = ipaddress.ip_network(route.dst, strict=False)
        if (net.version != pool.version or net.prefixlen == 0 or route.table == LOCAL_TABLE
                or route.type not in ROUTE_TYPES_CHECKED or not net.overlaps(pool)):
            continue
        if is_provider_device(route.dev) or route.proto in PROVIDER_PROTOS:
            ignored += 1
            continue
        dev = f" dev {route.dev}" if route.dev else ""
        table = "main" if route.table == 254 else str(route.table)
        conflicts.append(Conflict(f"{ROUTE_TYPES_CHECKED[route.type]}route {net}{dev} (table {table})"))
    return PoolCheck(tuple(dict.fromkeys(conflicts)), ignored)


def overlapping(a: Network, b: Network) -> bool:
    return a.version == b.version and a.overlaps(b)
