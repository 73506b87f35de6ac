"""Scenario files (docs/design.md, "The lab"): hosts, segments, routers, firewalls, services, expectation.

``parse_scenario`` is pure (YAML text in, a validated ``Scenario`` out; every error is a
ConfigError naming the file and the field path). ``load_scenario`` adds the one bit of I/O:
finding the file, by path or by name (``demo`` -> ``scenarios/demo.yaml``).

Shape (every key but ``hosts`` is optional)::

    name: demo                  # default: the file name without .yaml
    profile: calico             # calico | calico-noipip | calico-vxlan | calico-wireguard | canal
    vni: 1                      # VXLAN network id for kernel VXLAN devices
    vxlan_port: 8472            # their UDP port; default the profile's (canal 8472, else 4789)
    segments:                   # L2 segments (one bridge each); default: one "lan" 198.18.0.0/24
      - {name: rack1, subnet: 198.18.1.0/24, subnet6: "2001:db8:1::/64", hosts: [cp1, node1]}
                                # subnet6 (optional, at least a /96): its hosts and routers are dual stack
    routers:                    # namespaces forwarding between segments (IPv4, and IPv6 where subnet6)
      - {name: spine, segments: [rack1, rack2], firewall: {...},
         mtu: {rack2: 1400}}    # the MTU of the router's link into a segment (default 1500)
    hosts:
      - name: cp1
        roles: [node, apiserver, etcd]
        address: 198.18.1.10    # default: allocated from the segment's subnet
        address6: "2001:db8:1::10"  # default (subnet6): the IPv4 address's number, in decimal digits
        firewall: {nft: "...", iptables: "...", iptables-legacy: "...", ip6tables: "...", ipset: "..."}
        services: {listen: {tcp: [...], udp: [...]}, vxlan: true, daemons: [etcd, bird]}
                                # default: the role's TCP ports, UDP 51820 on nodes of a
                                # WireGuard profile, a VXLAN device on nodes of a VXLAN profile
    expect: {default: allowed, rules: [...]}
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from netprobe.core.checks import PROFILES, ROLES, WIREGUARD6_PORT, WIREGUARD_PORT, vxlan_port_for
from netprobe.core.expect import Expectation, parse_expectation
from netprobe.core.untrusted import load_yaml
from netprobe.errors import ConfigError
from netprobe.lab import firewall as fw
from netprobe.lab.names import short_names

DEFAULT_SUBNET = "198.18.0.0/24"
DEFAULT_SEGMENT = "lan"
DEFAULT_PROFILE = "calico"
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# Hosts may carry real node names (a DNS name: ip-198-18-5-99.eu-west-1.compute.internal); the
# lab derives short names for what has a length limit (names.short_names).
HOST_NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
# What a real host of each role listens on (BIRD, Typha, kube-apiserver, etcd clients).
ROLE_PORTS = {"node": 179, "typha": 5473, "apiserver": 6443, "etcd": 2379}
# Real daemons the lab starts when installed, and the TCP ports they take over from the listener.
DAEMONS = {"etcd": (2379, 2380), "bird": (179,)}

TOP_KEYS = frozenset({"name", "description", "profile", "vni", "vxlan_port", "segments", "routers", "hosts",
                      "expect"})
HOST_KEYS = frozenset({"name", "roles", "address", "address6", "firewall", "services"})
SEGMENT_KEYS = frozenset({"name", "subnet", "subnet6", "hosts"})
ROUTER_KEYS = frozenset({"name", "segments", "addresses", "addresses6", "firewall", "mtu"})
MAX_PREFIX6 = 96  # a subnet6 holds every IPv4 host number written in decimal digits (198.18.1.10 -> ...::10)
LINK_MTU_RANGE = (576, 9000)  # a link's MTU: IPv4's minimum to jumbo frames
SERVICE_KEYS = frozenset({"listen", "vxlan", "daemons"})


@dataclass(frozen=True)
class Services:
    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()
    vxlan_vni: int | None = None  # None: no VXLAN device
    daemons: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostSpec:
    name: str
    roles: frozenset[str]
    segment: str
    address: str
    prefixlen: int
    firewall: fw.Firewall = field(default_factory=fw.Firewall)
    services: Services = field(default_factory=Services)
    field: str = ""  # where it is in the file, e.g. "hosts[2]"
    address6: str | None = None  # on a segment with a subnet6
    prefixlen6: int | None = None


@dataclass(frozen=True)
class SegmentSpec:
    name: str
    subnet: str
    hosts: tuple[str, ...]
    field: str = ""
    subnet6: str | None = None


@dataclass(frozen=True)
class RouterSpec:
    name: str
    addresses: tuple[tuple[str, str], ...]  # (segment, address), in the order declared
    firewall: fw.Firewall = field(default_factory=fw.Firewall)
    field: str = ""
    addresses6: tuple[tuple[str, str], ...] = ()  # (segment, IPv6 address) on its segments with a subnet6
    mtus: tuple[tuple[str, int], ...] = ()  # (segment, MTU of the router's link into it), where set

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s, _ in self.addresses)

    def address_on(self, segment: str, family: int = 4) -> str | None:
        return dict(self.addresses if family == 4 else self.addresses6).get(segment)


@dataclass(frozen=True)
class Scenario:
    name: str
    profile: str
    hosts: tuple[HostSpec, ...]
    segments: tuple[SegmentSpec, ...]
    routers: tuple[RouterSpec, ...] = ()
    expect: Expectation = field(default_factory=Expectation)
    description: str = ""
    vni: int = 1
    source: str = "scenario"
    text: str = field(default="", repr=False, compare=False)  # the YAML it came from (the lab keeps a copy)
    vxlan_port: int = 4789  # the kernel VXLAN devices' UDP port (canal: flannel's 8472)

    @functools.cached_property
    def short_names(self) -> dict[str, str]:
        """Host, segment and router name -> the short name the lab uses in namespaces and files."""
        return short_names([*(s.name for s in self.segments), *(r.name for r in self.routers),
                            *(h.name for h in self.hosts)])

    def short(self, name: str) -> str:
        return self.short_names.get(name, name)

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def segment(self, name: str) -> SegmentSpec:
        for s in self.segments:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def roles(self) -> dict[str, frozenset[str]]:
        return {h.name: h.roles for h in self.hosts}

    def firewall_of(self, name: str) -> tuple[fw.Firewall, str]:
        """A host's or router's firewall and its field path (for `lab firewall --host`)."""
        for node in (*self.hosts, *self.routers):
            if node.name == name:
                return node.firewall, f"{node.field}.firewall"
        known = ", ".join(n.name for n in (*self.hosts, *self.routers))
        raise ConfigError(f"no host or router named {name!r} (known: {known})", file=self.source, field="--host")


# -- small validators ------------------------------------------------------------------------

def _err(msg: str, source: str, fld: str | None) -> ConfigError:
    return ConfigError(msg, file=source, field=fld)


def _mapping(raw: Any, keys: frozenset[str], source: str, fld: str) -> dict:
    if not isinstance(raw, dict):
        raise _err(f"must be a mapping (keys: {', '.join(sorted(keys))})", source, fld or None)
    extra = sorted(set(raw) - keys, key=str)
    if extra:
        where = f"{fld}.{extra[0]}" if fld else str(extra[0])
        raise _err(f"unknown key {extra[0]!r} (known: {', '.join(sorted(keys))})", source, where)
    return raw


def _name(raw: Any, source: str, fld: str) -> str:
    if not isinstance(raw, str) or not NAME_RE.match(raw):
        raise _err(f"must be a short lowercase name (letters, digits, '-'; up to 32), got {raw!r}", source, fld)
    return raw


def _host_name(raw: Any, source: str, fld: str) -> str:
    if not isinstance(raw, str) or not HOST_NAME_RE.match(raw):
        raise _err(f"must be a lowercase host name (a short name, or a DNS name such as "
                   f"ip-198-18-5-99.eu-west-1.compute.internal), got {raw!r}", source, fld)
    return raw


def _claim_name(raw: Any, used: dict[str, str], source: str, fld: str, *, host: bool = False) -> str:
    """A valid name no other host, segment or router of the scenario took (they share names)."""
    name = (_host_name if host else _name)(raw, source, f"{fld}.name")
    if name in used:
        raise _err(f"name {name!r} is already used by {used[name]}", source, f"{fld}.name")
    used[name] = fld
    return name


def _str_list(raw: Any, source: str, fld: str) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _err(f"must be a list of names, got {raw!r}", source, fld)
    return raw


def _ports(raw: Any, source: str, fld: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise _err(f"must be a list of ports, got {raw!r}", source, fld)
    for i, p in enumerate(raw):
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
            raise _err(f"must be a port in 1-65535, got {p!r}", source, f"{fld}[{i}]")
    return tuple(dict.fromkeys(raw))


def _vni(raw: Any, source: str, fld: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < (1 << 24):
        raise _err(f"must be a VXLAN network id in 0-16777215, got {raw!r}", source, fld)
    return raw


def _firewall(raw: Any, source: str, fld: str) -> fw.Firewall:
    if raw is None:
        return fw.Firewall()
    data = _mapping(raw, frozenset(fw.KINDS), source, fld)
    texts = {}
    for kind in fw.KINDS:
        text = data.get(kind)
        if text is None:
            continue
        if not isinstance(text, str) or not text.strip():
            raise _err(f"must be {kind} text (a YAML block, e.g. '{kind}: |')", source, f"{fld}.{kind}")
        try:
            fw.check(kind, text)
        except fw.FirewallTextError as exc:
            raise _err(str(exc), source, f"{fld}.{kind}") from None
        texts[kind.replace("-", "_")] = text
    return fw.Firewall(**texts)


def _services(raw: Any, roles: frozenset[str], profile: str, vni: int, vxlan_port: int, source: str,
              fld: str, dual: bool = False) -> Services:
    data = {} if raw is None else _mapping(raw, SERVICE_KEYS, source, fld)
    listen = data.get("listen", None)
    node = "node" in roles
    if listen is None:
        tcp = tuple(ROLE_PORTS[r] for r in sorted(roles, key=list(ROLE_PORTS).index))
        # the kernel's WireGuard devices own 51820 (and 51821 on a dual-stack node) on a real node;
        # a listener stands in for them here
        udp: tuple[int, ...] = ()
        if node and "wireguard" in PROFILES[profile]:
            udp = (WIREGUARD_PORT, WIREGUARD6_PORT) if dual else (WIREGUARD_PORT,)
    elif isinstance(listen, list):
        tcp, udp = _ports(listen, source, f"{fld}.listen"), ()
    else:
        ldata = _mapping(listen, frozenset({"tcp", "udp"}), source, f"{fld}.listen")
        tcp = _ports(ldata.get("tcp", []), source, f"{fld}.listen.tcp")
        udp = _ports(ldata.get("udp", []), source, f"{fld}.listen.udp")
    vx = data.get("vxlan", node and "vxlan" in PROFILES[profile])
    if isinstance(vx, bool):
        vxlan_vni = vni if vx else None
    else:
        vdata = _mapping(vx, frozenset({"vni"}), source, f"{fld}.vxlan")
        vxlan_vni = _vni(vdata.get("vni", vni), source, f"{fld}.vxlan.vni")
    if vxlan_vni is not None and vxlan_port in udp:
        raise _err(f"UDP {vxlan_port} is the VXLAN device's port; do not also listen on it",
                   source, f"{fld}.listen.udp")
    daemons = _str_list(data.get("daemons", []), source, f"{fld}.daemons")
    for i, d in enumerate(daemons):
        if d not in DAEMONS:
            raise _err(f"unknown daemon {d!r} (known: {', '.join(DAEMONS)})", source, f"{fld}.daemons[{i}]")
    return Services(tcp, udp, vxlan_vni, tuple(dict.fromkeys(daemons)))


def _link_mtus(raw: Any, segments: list[str], source: str, fld: str) -> tuple[tuple[str, int], ...]:
    """A router's ``mtu: {segment: N}``: the MTU of its link into each segment named."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _err("must map segment names to MTUs, e.g. {rack2: 1400}", source, fld)
    out = []
    for sname, mtu in raw.items():
        if sname not in segments:
            raise _err(f"{sname!r} is not one of this router's segments", source, f"{fld}.{sname}")
        lo, hi = LINK_MTU_RANGE
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not lo <= mtu <= hi:
            raise _err(f"must be an MTU in {lo}-{hi}, got {mtu!r}", source, f"{fld}.{sname}")
        out.append((sname, mtu))
    return tuple(out)


def _address(raw: Any, subnet: ipaddress.IPv4Network, source: str, fld: str) -> str:
    try:
        addr = ipaddress.IPv4Address(str(raw))
    except ValueError:
        raise _err(f"must be an IPv4 address, got {raw!r}", source, fld) from None
    if addr not in subnet:
        raise _err(f"{addr} is not in the segment's subnet {subnet}", source, fld)
    if addr in (subnet.network_address, subnet.broadcast_address):
        raise _err(f"{addr} is the network or broadcast address of {subnet}", source, fld)
    return str(addr)


def _subnet6(raw: Any, source: str, fld: str) -> ipaddress.IPv6Network:
    try:
        subnet = ipaddress.IPv6Network(str(raw), strict=True)
    except ValueError as exc:
        raise _err(f"must be an IPv6 subnet like 2001:db8:1::/64 ({exc})", source, fld) from None
    if subnet.prefixlen > MAX_PREFIX6:
        raise _err(f"{subnet} is too small for a segment (at most /{MAX_PREFIX6})", source, fld)
    return subnet


def _address6(raw: Any, subnet: ipaddress.IPv6Network | None, source: str, fld: str) -> str:
    if subnet is None:
        raise _err("the segment has no subnet6: give it one for IPv6", source, fld)
    try:
        addr = ipaddress.IPv6Address(str(raw))
    except ValueError:
        raise _err(f"must be an IPv6 address, got {raw!r}", source, fld) from None
    if addr not in subnet or addr == subnet.network_address:
        raise _err(f"{addr} is not a host address of the segment's subnet6 {subnet}", source, fld)
    return str(addr)


def _mirror6(address: str, subnet: ipaddress.IPv4Network, subnet6: ipaddress.IPv6Network) -> str:
    """The IPv6 address a host or router gets by default: its IPv4 address's number in its subnet,
    written in decimal digits in the subnet6 (198.18.1.10 in a /24 -> 2001:db8:1::10), so the
    two addresses of a host read alike."""
    number = int(ipaddress.IPv4Address(address)) - int(subnet.network_address)
    return str(subnet6[int(str(number), 16)])


def _allocate(subnet: ipaddress.IPv4Network, taken: set[str], *, skip: int) -> str | None:
    """The first free address of ``subnet`` after the first ``skip`` usable ones (or from the start)."""
    usable = list(subnet.hosts())
    for candidates in (usable[skip:], usable):
        for a in candidates:
            if str(a) not in taken:
                return str(a)
    return None


# -- the scenario ---------------------------------------------------------------------------

def parse_scenario(text: str, *, source: str, default_name: str | None = None) -> Scenario:
    """Validate scenario YAML. Errors name ``source`` and the field path; the CLI exits 2."""
    data = load_yaml(text, source=source)
    if not isinstance(data, dict):
        raise _err("must be a mapping with a 'hosts' list", source, None)
    _mapping(data, TOP_KEYS, source, "")  # unknown top-level keys
    name = _name(data.get("name", default_name), source, "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _err("must be text", source, "description")
    profile = data.get("profile", DEFAULT_PROFILE)
    if not isinstance(profile, str) or profile not in PROFILES:
        raise _err(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})", source, "profile")
    vni = _vni(data.get("vni", 1), source, "vni")
    vxlan_port = data.get("vxlan_port", vxlan_port_for(profile))
    if isinstance(vxlan_port, bool) or not isinstance(vxlan_port, int) or not 1 <= vxlan_port <= 65535:
        raise _err(f"must be a port in 1-65535, got {vxlan_port!r}", source, "vxlan_port")

    # hosts: names, roles, firewall, services (addresses come once segments are known)
    raw_hosts = data.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise _err("must be a non-empty list of hosts", source, "hosts")
    used: dict[str, str] = {}  # name -> field of whatever took it (hosts, segments, routers share names)
    hosts_raw: list[dict] = []
    for i, raw in enumerate(raw_hosts):
        fld = f"hosts[{i}]"
        h = _mapping(raw, HOST_KEYS, source, fld)
        hname = _claim_name(h.get("name"), used, source, fld, host=True)
        roles = h.get("roles", ["node"])
        roles = _str_list(roles, source, f"{fld}.roles")
        for j, r in enumerate(roles):
            if r not in ROLES:
                raise _err(f"unknown role {r!r} (known: {', '.join(sorted(ROLES))})", source, f"{fld}.roles[{j}]")
        if not roles:
            raise _err("must name at least one role", source, f"{fld}.roles")
        hosts_raw.append(h)

    # segments
    raw_segments = data.get("segments")
    if raw_segments is None:
        raw_segments = [{"name": DEFAULT_SEGMENT, "subnet": DEFAULT_SUBNET}]
    if not isinstance(raw_segments, list) or not raw_segments:
        raise _err("must be a non-empty list of segments", source, "segments")
    host_names = [h["name"] for h in hosts_raw]
    segment_of: dict[str, str] = {}
    subnets: dict[str, ipaddress.IPv4Network] = {}
    subnets6: dict[str, ipaddress.IPv6Network] = {}
    seg_fields: dict[str, str] = {}
    seg_hosts: dict[str, tuple[str, ...]] = {}
    for i, raw in enumerate(raw_segments):
        fld = f"segments[{i}]"
        s = _mapping(raw, SEGMENT_KEYS, source, fld)
        sname = _claim_name(s.get("name"), used, source, fld)
        try:
            subnet = ipaddress.IPv4Network(str(s.get("subnet")), strict=True)
        except ValueError as exc:
            raise _err(f"must be an IPv4 subnet like 198.18.1.0/24 ({exc})", source, f"{fld}.subnet") from None
        if subnet.prefixlen > 29:
            raise _err(f"{subnet} is too small for a segment (at most /29)", source, f"{fld}.subnet")
        for other, net in subnets.items():
            if subnet.overlaps(net):
                raise _err(f"{subnet} overlaps {net} of {seg_fields[other]}", source, f"{fld}.subnet")
        if s.get("subnet6") is not None:
            subnet6 = _subnet6(s["subnet6"], source, f"{fld}.subnet6")
            for other, net in subnets6.items():
                if subnet6.overlaps(net):
                    raise _err(f"{subnet6} overlaps {net} of {seg_fields[other]}", source, f"{fld}.subnet6")
            subnets6[sname] = subnet6
        if "hosts" in s:
            members = _str_list(s["hosts"], source, f"{fld}.hosts")
        elif len(raw_segments) == 1:
            members = host_names
        else:
            raise _err("must list the segment's hosts ([] for a segment of routers only)", source, f"{fld}.hosts")
        for j, m in enumerate(members):
            mfld = f"{fld}.hosts[{j}]"
            if m not in host_names:
                raise _err(f"no host named {m!r} (hosts: {', '.join(host_names)})", source, mfld)
            if m in segment_of:
                raise _err(f"host {m!r} is already in segment {segment_of[m]!r}; a host sits in one segment",
                           source, mfld)
            segment_of[m] = sname
        subnets[sname] = subnet
        seg_fields[sname] = fld
        seg_hosts[sname] = tuple(members)
    for i, h in enumerate(hosts_raw):
        if h["name"] not in segment_of:
            raise _err(f"host {h['name']!r} is in no segment (add it to a segment's hosts)", source, f"hosts[{i}]")

    # explicit addresses first, then routers' and hosts' allocated ones
    taken: dict[str, str] = {}

    def take(addr: str, fld: str) -> str:
        if addr in taken:
            raise _err(f"address {addr} is already used by {taken[addr]}", source, fld)
        taken[addr] = fld
        return addr

    host_addr: dict[str, str] = {}
    for i, h in enumerate(hosts_raw):
        if "address" in h:
            fld = f"hosts[{i}].address"
            host_addr[h["name"]] = take(_address(h["address"], subnets[segment_of[h["name"]]], source, fld), fld)

    raw_routers = data.get("routers") or []
    if not isinstance(raw_routers, list):
        raise _err("must be a list of routers", source, "routers")
    routers_raw = []
    for i, raw in enumerate(raw_routers):
        fld = f"routers[{i}]"
        r = _mapping(raw, ROUTER_KEYS, source, fld)
        rname = _claim_name(r.get("name"), used, source, fld)
        segs = _str_list(r.get("segments"), source, f"{fld}.segments")
        for j, sname in enumerate(segs):
            if sname not in subnets:
                raise _err(f"no segment named {sname!r} (segments: {', '.join(subnets)})",
                           source, f"{fld}.segments[{j}]")
            if segs.index(sname) != j:
                raise _err(f"segment {sname!r} listed twice", source, f"{fld}.segments[{j}]")
        if len(segs) < 2:
            raise _err("a router joins at least two segments", source, f"{fld}.segments")
        addrs = r.get("addresses") or {}
        if not isinstance(addrs, dict):
            raise _err("must map segment names to addresses", source, f"{fld}.addresses")
        chosen: dict[str, str] = {}
        for sname, addr in addrs.items():
            afld = f"{fld}.addresses.{sname}"
            if sname not in segs:
                raise _err(f"{sname!r} is not one of this router's segments", source, afld)
            chosen[sname] = take(_address(addr, subnets[sname], source, afld), afld)
        addrs6 = r.get("addresses6") or {}
        if not isinstance(addrs6, dict):
            raise _err("must map segment names to IPv6 addresses", source, f"{fld}.addresses6")
        chosen6: dict[str, str] = {}
        for sname, addr in addrs6.items():
            afld = f"{fld}.addresses6.{sname}"
            if sname not in segs:
                raise _err(f"{sname!r} is not one of this router's segments", source, afld)
            chosen6[sname] = take(_address6(addr, subnets6.get(sname), source, afld), afld)
        mtus = _link_mtus(r.get("mtu"), segs, source, f"{fld}.mtu")
        routers_raw.append((rname, segs, chosen, chosen6, r, fld, mtus))
    for _, segs, chosen, chosen6, _r, fld, _mtus in routers_raw:
        for sname in segs:
            if sname not in chosen:
                addr = _allocate(subnets[sname], set(taken), skip=0)
                if addr is None:
                    raise _err(f"segment {sname!r} has no free address left", source, f"{fld}.segments")
                chosen[sname] = take(addr, f"{fld}.segments")
            if sname in subnets6 and sname not in chosen6:
                chosen6[sname] = take(_mirror6(chosen[sname], subnets[sname], subnets6[sname]), f"{fld}.segments")
    hosts: list[HostSpec] = []
    for i, h in enumerate(hosts_raw):
        fld = f"hosts[{i}]"
        hname, sname = h["name"], segment_of[h["name"]]
        addr = host_addr.get(hname)
        if addr is None:
            subnet = subnets[sname]
            addr = _allocate(subnet, set(taken), skip=9 if subnet.num_addresses > 32 else 0)
            if addr is None:
                raise _err(f"segment {sname!r} has no free address left", source, fld)
            take(addr, fld)
        subnet6 = subnets6.get(sname)
        if "address6" in h:
            addr6: str | None = take(_address6(h["address6"], subnet6, source, f"{fld}.address6"), f"{fld}.address6")
        else:
            addr6 = None if subnet6 is None else take(_mirror6(addr, subnets[sname], subnet6), f"{fld}.address6")
        roles = frozenset(h.get("roles", ["node"]))
        hosts.append(HostSpec(
            name=hname,
            roles=roles,
            segment=sname,
            address=addr,
            prefixlen=subnets[sname].prefixlen,
            firewall=_firewall(h.get("firewall"), source, f"{fld}.firewall"),
            services=_services(h.get("services"), roles, profile, vni, vxlan_port, source, f"{fld}.services",
                               dual=subnet6 is not None),
            field=fld,
            address6=addr6,
            prefixlen6=None if subnet6 is None else subnet6.prefixlen,
        ))
    routers = tuple(
        RouterSpec(rname, tuple((s, chosen[s]) for s in segs), _firewall(r.get("firewall"), source, f"{fld}.firewall"),
                   fld, tuple((s, chosen6[s]) for s in segs if s in chosen6), mtus)
        for rname, segs, chosen, chosen6, r, fld, mtus in routers_raw
    )
    segments = tuple(SegmentSpec(s, str(subnets[s]), seg_hosts[s], seg_fields[s],
                                 str(subnets6[s]) if s in subnets6 else None) for s in subnets)
    roles_by_host = {h.name: h.roles for h in hosts}
    expect = parse_expectation(data.get("expect"), source=source, field="expect", hosts=roles_by_host)
    return Scenario(name, profile, tuple(hosts), segments, routers, expect, description.strip(), vni, source, text,
                    vxlan_port)


# -- finding scenario files (the only I/O here) ------------------------------------------------

def scenario_dirs() -> list[Path]:
    """Where scenario names are looked up: $NETPROBE_SCENARIOS (':'-separated), the repository's
    scenarios/ next to the package, then ./scenarios."""
    dirs = [Path(p) for p in os.environ.get("NETPROBE_SCENARIOS", "").split(":") if p]
    dirs.append(Path(__file__).resolve().parents[2] / "scenarios")
    dirs.append(Path.cwd() / "scenarios")
    return list(dict.fromkeys(dirs))


def available_scenarios() -> dict[str, Path]:
    """Scenario name -> file, first directory wins."""
    found: dict[str, Path] = {}
    for d in scenario_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found.setdefault(p.stem, p)
    return found


def resolve_scenario(ref: str | os.PathLike) -> Path:
    """SCENARIO may be a path to a file or a name (``demo`` -> scenarios/demo.yaml)."""
    path = Path(ref)
    if path.is_file():
        return path
    text = str(ref)
    if "/" not in text:
        stem = text[:-5] if text.endswith(".yaml") else text
        known = available_scenarios()
        if stem in known:
            return known[stem]
        names = ", ".join(sorted(known)) or "none found"
        raise ConfigError(f"no such scenario file or name (known names: {names})", file=text)
    raise ConfigError("no such scenario file", file=text)


def load_scenario(ref: str | os.PathLike) -> Scenario:
    """Find (by path or name), read and validate a scenario."""
    from netprobe.config import read_text

    path = resolve_scenario(ref)
    text = read_text(str(path))
    return parse_scenario(text, source=str(path), default_name=path.stem)
