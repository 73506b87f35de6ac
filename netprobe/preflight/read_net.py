"""Read the host's addresses and routes: from netlink (pyroute2, every family, every table) on
the live host, or from ROOT/netprobe-addrs.json under --root.

With --root the live host's netlink describes another machine than the image being checked, so
it is never read unless asked for (``live_netlink=True``, e.g. a container that shares the host's
network namespace and mounts its / at /host). Without the file the pool check is ``unknown``.

The fixture file (also handy to check an image against the network it will join)::

    {"addresses": [{"ifname": "eth0", "address": "192.0.2.2/24"}],
     "routes": [{"dst": "192.0.2.0/24", "dev": "eth0", "table": 254, "proto": 2, "type": 1}]}

``table`` (254 = main), ``proto`` and ``type`` (1 = unicast) are optional.
"""

from __future__ import annotations

import ipaddress
import json
import socket

from netprobe.errors import ConfigError
from netprobe.preflight.facts import HostAddress, HostRoute, NetFacts, VxlanDevice
from netprobe.preflight.fsroot import Root

ADDRS_FILE = "netprobe-addrs.json"


def read_net(root: Root, *, live_netlink: bool | None = None) -> NetFacts:
    """``live_netlink`` None: netlink only when root is /. True: always. False: never."""
    use_netlink = root.is_live if live_netlink is None else live_netlink
    if use_netlink:
        return read_netlink()
    fixture = root.path(ADDRS_FILE)
    if fixture.exists():
        return read_fixture(str(fixture))
    return NetFacts(source=f"with --root the live host's netlink is not read; no {root.show(ADDRS_FILE)}")


def read_fixture(path: str) -> NetFacts:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    except ValueError as exc:
        raise ConfigError(f"bad JSON: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object", file=path)
    addresses, routes = [], []
    for i, entry in enumerate(data.get("addresses") or []):
        where = f"addresses[{i}]"
        try:
            ipaddress.ip_interface(entry["address"])
            addresses.append(HostAddress(str(entry.get("ifname", "?")), str(entry["address"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"needs an 'address' like 192.0.2.2/24 ({exc})", file=path, field=where) from None
    for i, entry in enumerate(data.get("routes") or []):
        where = f"routes[{i}]"
        try:
            dst = str(ipaddress.ip_network(entry["dst"], strict=False))
            routes.append(HostRoute(dst, entry.get("dev"), int(entry.get("table", 254)),
                                    int(entry.get("proto", 0)), int(entry.get("type", 1))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"needs a 'dst' like 192.0.2.0/24 ({exc})", file=path, field=where) from None
    return NetFacts(addresses, routes, source=f"fixture {path}")


def read_netlink() -> NetFacts:
    """This network namespace's addresses and routes (what `ip addr` and `ip route show table all` list)."""
    try:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as exc:  # pragma: no cover - pyroute2 is a dependency
        return NetFacts(source=f"pyroute2 unavailable: {exc}")
    try:
        with IPRoute() as ipr:
            names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
            addresses = []
            for msg in ipr.get_addr():
                addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                if addr:
                    ifname = msg.get("IFA_LABEL") or names.get(msg["index"]) or str(msg["index"])
                    addresses.append(HostAddress(ifname, f"{addr}/{msg['prefixlen']}"))
            routes = []
            for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                for msg in ipr.get_routes(family=family):
                    dst = f"{msg.get('RTA_DST') or anywhere}/{msg['dst_len']}"
                    oif = msg.get("RTA_OIF")
                    routes.append(HostRoute(str(ipaddress.ip_network(dst, strict=False)),
                                            names.get(oif) if oif else None,
                                            int(msg.get("RTA_TABLE") or msg["table"]),
                                            int(msg["proto"]), int(msg["type"])))
            vxlan = vxlan_devices(ipr.get_links())
    except (OSError, NetlinkError) as exc:
        return NetFacts(source=f"netlink error: {exc}")
    return NetFacts(addresses, routes, source="netlink", vxlan=vxlan)


def vxlan_devices(links) -> list[VxlanDevice]:
    """The links of kind vxlan and their UDP port (IFLA_VXLAN_PORT, what `ip -d link` calls dstport)."""
    found = []
    for link in links:
        info = link.get("IFLA_LINKINFO")
        if not info or info.get("IFLA_INFO_KIND") != "vxlan":
            continue
        data = info.get("IFLA_INFO_DATA") or {}
        port = data.get("IFLA_VXLAN_PORT")
        if port is None:
            continue
        found.append(VxlanDevice(str(link.get("IFLA_IFNAME")), int(port), data.get("IFLA_VXLAN_ID")))
    return sorted(found, key=lambda d: d.ifname)
