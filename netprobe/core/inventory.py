"""The inventory (docs/design.md "Inventory"): which hosts exist, their roles, and how to reach their agents.

Pure: ``parse_inventory`` takes YAML text; the caller reads the file and the token file.
"""

from __future__ import annotations

import ipaddress
import os.path
import re
from dataclasses import dataclass

from netprobe.core.checks import CHECKS, DEFAULT_APISERVER_PORT, ROLES, Check, Direction, Proto
from netprobe.core.untrusted import load_yaml
from netprobe.errors import ConfigError

DEFAULT_AGENT_PORT = 7879  # used by no Calico or Kubernetes component
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # its IPv4 address; its IPv6 one when it has no IPv4
    roles: frozenset[str]
    agent: str  # "unix:/path" or "tcp://ADDR:PORT" (or https://)
    address6: str | None = None  # its IPv6 address, if any (== address on an IPv6-only host)

    @property
    def address4(self) -> str | None:
        return None if ":" in self.address else self.address


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    token_file: str | None = None  # absolute, resolved against the inventory's folder
    apiserver_port: int = DEFAULT_APISERVER_PORT
    vni: int = 1
    custom_checks: tuple[Check, ...] = ()
    source: str = "inventory"
    ca_file: str | None = None  # verifies https:// agents (a private CA); absolute
    vxlan_port: int | None = None  # the UDP port of the cluster's VXLAN (None: the profile's default)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


def parse_agent_url(url: str, *, source: str, field: str) -> str:
    """Validate an agent address: ``unix:/abs/path``, ``tcp://HOST:PORT`` or ``https://HOST:PORT``."""
    if url.startswith("unix:"):
        if not url[5:].startswith("/"):
            raise ConfigError(f"unix socket path must be absolute, got {url!r}", file=source, field=field)
        return url
    m = re.fullmatch(r"(tcp|https)://(\[[0-9a-fA-F:]+\]|[^:/\s]+):(\d{1,5})", url)
    if not m or not 1 <= int(m.group(3)) <= 65535:
        raise ConfigError(f"expected unix:/PATH or tcp://HOST:PORT, got {url!r}", file=source, field=field)
    return url


def _int(value, *, lo: int, hi: int, source: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"must be an integer in {lo}-{hi}, got {value!r}", file=source, field=field)
    return value


MAX_HOSTS = 10_000        # the largest inventory read (a mesh above MAX_FULL_MESH hosts runs with --sample)
MAX_FULL_MESH = 1024      # the largest full mesh: agents' caps are sized from it (docs/design.md, "Caps")
MAX_CUSTOM_CHECKS = 10    # with the 6 built-in checks, at most 16 per run


def _custom_check(raw, i: int, source: str) -> Check:
    field = f"checks[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping", file=source, field=field)
    cid = raw.get("id")
    if not isinstance(cid, str) or not NAME_RE.match(cid):
        raise ConfigError(f"id must be a short name, got {cid!r}", file=source, field=f"{field}.id")
    proto = raw.get("proto")
    if proto not in ("tcp", "udp"):
        raise ConfigError(f"proto must be tcp or udp, got {proto!r}", file=source, field=f"{field}.proto")
    port = _int(raw.get("port"), lo=1, hi=65535, source=source, field=f"{field}.port")
    to_role = raw.get("to_role")
    if to_role is not None and (not isinstance(to_role, str) or to_role not in ROLES):
        raise ConfigError(f"unknown role {to_role!r}", file=source, field=f"{field}.to_role")
    from_role = raw.get("from_role", "node")
    if from_role in ("*", "all"):
        from_role = None
    elif not isinstance(from_role, str) or from_role not in ROLES:
        raise ConfigError(f"unknown role {from_role!r}", file=source, field=f"{field}.from_role")
    return Check(
        id=cid,
        description=str(raw.get("description", cid)),
        proto=Proto(proto),
        port=port,
        direction=Direction.TO_ROLE if to_role else Direction.BOTH,
        to_role=to_role,
        from_role=from_role,
    )


def _addresses(raw: dict, source: str, field: str) -> tuple[str, str | None]:
    """A host's (address, address6): ``address`` is IPv4 or IPv6 (an IPv6-only host), ``address6``
    the IPv6 address of a dual-stack host (absent: the host has only ``address``)."""
    try:
        ip = ipaddress.ip_address(str(raw.get("address")))
    except ValueError:
        raise ConfigError(f"must be an IPv4 or IPv6 address, got {raw.get('address')!r}", file=source,
                          field=f"{field}.address") from None
    if ip.version == 6 and not _global_ipv6(ip):
        raise ConfigError(f"{ip} is not a global unicast IPv6 address", file=source, field=f"{field}.address")
    if "address6" not in raw:
        return str(ip), (str(ip) if ip.version == 6 else None)
    if ip.version == 6:
        raise ConfigError("address is already IPv6; address6 is the IPv6 address of a host whose address is IPv4",
                          file=source, field=f"{field}.address6")
    try:
        ip6 = ipaddress.IPv6Address(str(raw["address6"]))
    except ValueError:
        raise ConfigError(f"must be an IPv6 address, got {raw['address6']!r}", file=source,
                          field=f"{field}.address6") from None
    if not _global_ipv6(ip6):
        raise ConfigError(f"{ip6} is not a global unicast IPv6 address", file=source, field=f"{field}.address6")
    return str(ip), str(ip6)


def _global_ipv6(ip) -> bool:
    """Probes and echoes go between unicast addresses a route leads to: not link-local (it needs an
    interface), multicast, loopback, unspecified or IPv4-mapped."""
    return not (ip.is_link_local or ip.is_multicast or ip.is_loopback or ip.is_unspecified
                or ip.ipv4_mapped is not None)


def parse_inventory(text: str, *, source: str = "inventory", base_dir: str = ".") -> Inventory:
    """Parse and validate inventory YAML; every error names the file and the field."""
    data = load_yaml(text, source=source)
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with a 'hosts' list", file=source)
    unknown = sorted(str(k) for k in set(data) - {"token_file", "ca_file", "apiserver_port", "vni", "vxlan_port",
                                                  "hosts", "checks"})
    if unknown:  # str(): YAML keys may be numbers, which neither sort with strings nor name a field
        raise ConfigError(f"unknown key {unknown[0]!r}", file=source, field=unknown[0])
    raw_hosts = data.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        raise ConfigError("must be a non-empty list", file=source, field="hosts")
    if len(raw_hosts) > MAX_HOSTS:
        raise ConfigError(f"at most {MAX_HOSTS} hosts, got {len(raw_hosts)}", file=source, field="hosts")
    hosts: list[Host] = []
    seen_names: set[str] = set()
    seen_addrs: set[str] = set()
    for i, raw in enumerate(raw_hosts):
        field = f"hosts[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError("must be a mapping", file=source, field=field)
        extra = sorted(str(k) for k in set(raw) - {"name", "address", "address6", "roles", "agent"})
        if extra:
            raise ConfigError(f"unknown key {extra[0]!r}", file=source, field=field)
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(f"name must be a host name, got {name!r}", file=source, field=f"{field}.name")
        if name in seen_names:
            raise ConfigError(f"duplicate host name {name!r}", file=source, field=f"{field}.name")
        address, address6 = _addresses(raw, source, field)
        for key, value in (("address", address), ("address6", address6)):
            if value in seen_addrs and not (key == "address6" and value == address):
                raise ConfigError(f"duplicate address {value}", file=source, field=f"{field}.{key}")
        roles = raw.get("roles", ["node"])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ConfigError("must be a list of role names", file=source, field=f"{field}.roles")
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise ConfigError(
                f"unknown role {bad[0]!r} (known: {', '.join(sorted(ROLES))})", file=source, field=f"{field}.roles"
            )
        agent = raw.get("agent", f"tcp://{address if ':' not in address else f'[{address}]'}:{DEFAULT_AGENT_PORT}")
        if not isinstance(agent, str):
            raise ConfigError("must be a string", file=source, field=f"{field}.agent")
        agent = parse_agent_url(agent, source=source, field=f"{field}.agent")
        seen_names.add(name)
        seen_addrs.update(a for a in (address, address6) if a)
        hosts.append(Host(name, address, frozenset(roles), agent, address6))
    token_file = data.get("token_file")
    if token_file is not None:
        if not isinstance(token_file, str) or not token_file:
            raise ConfigError("must be a path", file=source, field="token_file")
        token_file = os.path.normpath(os.path.join(base_dir, token_file))
    apiserver_port = _int(data.get("apiserver_port", DEFAULT_APISERVER_PORT), lo=1, hi=65535,
                          source=source, field="apiserver_port")
    vni = _int(data.get("vni", 1), lo=0, hi=(1 << 24) - 1, source=source, field="vni")
    vxlan_port = data.get("vxlan_port")
    if vxlan_port is not None:
        vxlan_port = _int(vxlan_port, lo=1, hi=65535, source=source, field="vxlan_port")
    raw_checks = data.get("checks", [])
    if not isinstance(raw_checks, list):
        raise ConfigError("must be a list", file=source, field="checks")
    if len(raw_checks) > MAX_CUSTOM_CHECKS:
        raise ConfigError(f"at most {MAX_CUSTOM_CHECKS} custom checks, got {len(raw_checks)}", file=source,
                          field="checks")
    custom = tuple(_custom_check(c, i, source) for i, c in enumerate(raw_checks))
    seen_ids = set(CHECKS)
    for i, check in enumerate(custom):  # a repeated id would silently replace a check, or plan it twice
        if check.id in seen_ids:
            what = "a built-in check" if check.id in CHECKS else "a duplicate check id"
            raise ConfigError(f"{check.id!r} is {what}", file=source, field=f"checks[{i}].id")
        seen_ids.add(check.id)
    ca_file = data.get("ca_file")
    if ca_file is not None:
        if not isinstance(ca_file, str) or not ca_file:
            raise ConfigError("must be a path", file=source, field="ca_file")
        ca_file = os.path.normpath(os.path.join(base_dir, ca_file))
    return Inventory(tuple(hosts), token_file, apiserver_port, vni, custom, source, ca_file, vxlan_port)
