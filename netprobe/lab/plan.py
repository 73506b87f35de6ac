"""Scenario -> ordered steps, each with its undo. Pure: nothing here touches the kernel.

Layout: each segment is a bridge ``br0`` in a *fabric* namespace of its own; each host is a
namespace with ``eth0`` (a veth whose peer is a bridge port ``to-<host>``); each router is a
namespace with ``eth0``, ``eth1``... one per segment it joins, forwarding between them. The
root namespace gets nothing: veths are created inside the fabric namespace with their peer
placed straight into the host's.

An undo of ``None`` means the step's effect goes away with an earlier step's undo (its link
or its namespace). ``teardown`` turns the steps that were done into the undos worth running:
nothing inside a namespace that is about to be deleted anyway.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass

from netprobe.lab import firewall as fw
from netprobe.lab.names import netns_name, state_dir
from netprobe.lab.spec import DAEMONS, HostSpec, Scenario

BRIDGE = "br0"
# The VXLAN device a lab host gets: named as the real one, so preflight tells them apart
# (flannel's flannel.1 in a canal cluster, Felix's vxlan.calico otherwise).
VXLAN_DEVS = {"canal": "flannel.1"}
CALICO_VXLAN_DEV = "vxlan.calico"
# Each VXLAN device's overlay address: 198.19.0.N/24 (N = the host's place among the VXLAN hosts),
# inside the lab's 198.18.0.0/15, so an overlay ping proves the device carries traffic.
OVERLAY_NET = "198.19.0.0/24"
ZERO_MAC = "00:00:00:00:00:00"


def vxlan_device(profile: str) -> str:
    return VXLAN_DEVS.get(profile, CALICO_VXLAN_DEV)


def overlay_address(index: int) -> str:
    """The overlay address of the ``index``-th VXLAN host (0-based)."""
    return str(ipaddress.IPv4Network(OVERLAY_NET)[index + 1])
BIRD_AS = 64512


# -- actions -------------------------------------------------------------------------------
# Each knows the namespace it acts in (``ns``) and how to say itself as a one-line command.

@dataclass(frozen=True)
class CreateNetns:
    ns: str

    def describe(self) -> str:
        return f"ip netns add {self.ns}"


@dataclass(frozen=True)
class DeleteNetns:
    ns: str

    def describe(self) -> str:
        return f"ip netns del {self.ns}"


@dataclass(frozen=True)
class AddBridge:
    ns: str
    ifname: str

    def describe(self) -> str:
        return f"[{self.ns}] ip link add {self.ifname} type bridge"


@dataclass(frozen=True)
class AddVeth:
    ns: str
    ifname: str
    peer_ns: str
    peer_ifname: str

    def describe(self) -> str:
        return f"[{self.ns}] ip link add {self.ifname} type veth peer {self.peer_ifname} netns {self.peer_ns}"


@dataclass(frozen=True)
class DeleteLink:
    ns: str
    ifname: str

    def describe(self) -> str:
        return f"[{self.ns}] ip link del {self.ifname}"


@dataclass(frozen=True)
class SetMaster:
    ns: str
    ifname: str
    master: str

    def describe(self) -> str:
        return f"[{self.ns}] ip link set {self.ifname} master {self.master}"


@dataclass(frozen=True)
class LinkUp:
    ns: str
    ifname: str

    def describe(self) -> str:
        return f"[{self.ns}] ip link set {self.ifname} up"


@dataclass(frozen=True)
class AddAddress:
    """An IPv6 address is added without duplicate address detection (``nodad``): usable at once."""

    ns: str
    ifname: str
    address: str
    prefixlen: int

    def describe(self) -> str:
        nodad = " nodad" if ":" in self.address else ""
        return f"[{self.ns}] ip addr add {self.address}/{self.prefixlen} dev {self.ifname}{nodad}"


@dataclass(frozen=True)
class DeleteAddress:
    ns: str
    ifname: str
    address: str
    prefixlen: int

    def describe(self) -> str:
        return f"[{self.ns}] ip addr del {self.address}/{self.prefixlen} dev {self.ifname}"


@dataclass(frozen=True)
class AddRoute:
    ns: str
    dst: str
    gateway: str

    def describe(self) -> str:
        return f"[{self.ns}] ip route add {self.dst} via {self.gateway}"


@dataclass(frozen=True)
class DeleteRoute:
    ns: str
    dst: str
    gateway: str

    def describe(self) -> str:
        return f"[{self.ns}] ip route del {self.dst} via {self.gateway}"


@dataclass(frozen=True)
class SetSysctl:
    ns: str
    key: str  # dotted, e.g. net.ipv4.ip_forward
    value: str

    def describe(self) -> str:
        return f"[{self.ns}] sysctl -w {self.key}={self.value}"


@dataclass(frozen=True)
class AddVxlan:
    ns: str
    ifname: str
    vni: int
    port: int
    dev: str
    local: str

    def describe(self) -> str:
        return (f"[{self.ns}] ip link add {self.ifname} type vxlan id {self.vni} dstport {self.port} "
                f"dev {self.dev} local {self.local}")


@dataclass(frozen=True)
class AddFdb:
    """Flood the device's broadcast/unknown traffic to a peer VTEP (flannel writes one entry per
    peer MAC; an all-zeros entry per peer is the same wiring without knowing the MACs)."""

    ns: str
    ifname: str
    dst: str

    def describe(self) -> str:
        return f"[{self.ns}] bridge fdb append {ZERO_MAC} dev {self.ifname} dst {self.dst}"


@dataclass(frozen=True)
class LoadFirewall:
    ns: str
    owner: str     # host or router name
    field: str     # e.g. hosts[2].firewall, for error messages
    commands: tuple[fw.FirewallCommand, ...]

    def describe(self) -> str:
        return f"[{self.ns}] " + "; ".join(" ".join(c.argv) + f" < {c.kind} text" for c in self.commands)


@dataclass(frozen=True)
class FlushFirewall:
    ns: str

    def describe(self) -> str:
        return f"[{self.ns}] nft flush ruleset; ipset destroy"


@dataclass(frozen=True)
class StartListener:
    ns: str
    host: str
    tcp: tuple[int, ...]
    udp: tuple[int, ...]
    log_name: str

    def describe(self) -> str:
        ports = [f"tcp/{p}" for p in self.tcp] + [f"udp/{p}" for p in self.udp]
        return f"[{self.ns}] listen on {' '.join(ports)} (logs/{self.log_name}.log)"


@dataclass(frozen=True)
class StartDaemon:
    """A real daemon when installed; otherwise a listener on ``fallback_tcp`` stands in for it."""

    ns: str
    host: str
    daemon: str
    argv: tuple[str, ...]
    config_path: str | None
    config_text: str | None
    fallback_tcp: tuple[int, ...]
    log_name: str

    def describe(self) -> str:
        return f"[{self.ns}] start {self.daemon} if installed: {' '.join(self.argv)}"


@dataclass(frozen=True)
class StopProcess:
    ns: str
    log_name: str

    def describe(self) -> str:
        return f"[{self.ns}] stop {self.log_name}"


Action = (CreateNetns | DeleteNetns | AddBridge | AddVeth | DeleteLink | SetMaster | LinkUp | AddAddress
          | DeleteAddress | AddRoute | DeleteRoute | SetSysctl | AddVxlan | AddFdb | LoadFirewall | FlushFirewall
          | StartListener | StartDaemon | StopProcess)


@dataclass(frozen=True)
class Step:
    action: Action
    undo: Action | None = None

    def describe(self) -> str:
        return self.action.describe()


# -- the plan ------------------------------------------------------------------------------

def port_name(node: str, index: int) -> str:
    """The bridge port facing ``node`` (interface names have 15 characters at most)."""
    name = f"to-{node}"
    return name if len(name) <= 15 else f"port{index}"


def routes(scenario: Scenario, family: int = 4) -> dict[str, list[tuple[str, str]]]:
    """Static routes: node (host or router) -> [(remote subnet, gateway)], by shortest path.

    A hop is a router joining two segments; the gateway is that first router's address on a
    segment the node sits on. Segments no router leads to get no route. ``family`` 6: over the
    segments that have a subnet6 only (IPv6 crosses no IPv4-only segment).
    """
    six = {s.name for s in scenario.segments if s.subnet6 is not None}
    usable = (lambda seg: seg in six) if family == 6 else (lambda seg: True)
    attached: dict[str, list[str]] = {h.name: [h.segment] for h in scenario.hosts}
    for r in scenario.routers:
        attached[r.name] = list(r.segments)
    out: dict[str, list[tuple[str, str]]] = {}
    for node, segs in attached.items():
        # BFS over segments; first_hop[seg] = gateway address used to get there
        first_hop: dict[str, str | None] = {s: None for s in segs if usable(s)}
        queue = deque(first_hop)
        while queue:
            seg = queue.popleft()
            for r in scenario.routers:
                if r.name == node or seg not in r.segments:
                    continue
                for nxt in r.segments:
                    if nxt not in first_hop and usable(nxt):
                        first_hop[nxt] = first_hop[seg] or r.address_on(seg, family)
                        queue.append(nxt)
        out[node] = [(s.subnet if family == 4 else s.subnet6, first_hop[s.name]) for s in scenario.segments
                     if s.name in first_hop and first_hop[s.name] is not None]
    return out


def _daemon(scenario: Scenario, host: HostSpec, ns: str, daemon: str, lab_name: str) -> StartDaemon:
    state = state_dir(lab_name)
    addr = host.address
    short = scenario.short(host.name)  # files and sockets have length limits; real names may be long
    log = f"{short}-{daemon}"
    if daemon == "etcd":
        argv = ("etcd", "--name", host.name, "--data-dir", f"{state}/{short}-etcd",
                "--listen-client-urls", f"http://{addr}:2379,http://127.0.0.1:2379",
                "--advertise-client-urls", f"http://{addr}:2379",
                "--listen-peer-urls", f"http://{addr}:2380",
                "--initial-advertise-peer-urls", f"http://{addr}:2380",
                "--initial-cluster", f"{host.name}=http://{addr}:2380")
        return StartDaemon(ns, host.name, daemon, argv, None, None, DAEMONS[daemon], log)
    # bird: a BGP session to every other node, as Calico's BIRD has (full mesh)
    peers = [h for h in scenario.hosts if "node" in h.roles and h.name != host.name]
    conf = [f"router id {addr};", "protocol device {}", 'protocol direct { ipv4; interface "eth0"; }']
    for p in peers:
        conf.append(f"protocol bgp {scenario.short(p.name).replace('-', '_')} {{ local {addr} as {BIRD_AS}; "
                    f"neighbor {p.address} as {BIRD_AS}; ipv4 {{ import all; export all; }}; }}")
    path = f"{state}/{short}-bird.conf"
    argv = ("bird", "-f", "-c", path, "-s", f"{state}/{short}-bird.ctl")
    return StartDaemon(ns, host.name, daemon, argv, path, "\n".join(conf) + "\n", DAEMONS[daemon], log)


def build_plan(scenario: Scenario, lab_name: str) -> list[Step]:
    """Every step that brings the lab up, in order; ``Step.undo`` says how to take it back."""
    ns = {name: netns_name(lab_name, scenario.short(name)) for name in
          [s.name for s in scenario.segments] + [r.name for r in scenario.routers] + [h.name for h in scenario.hosts]}
    steps: list[Step] = []
    add = steps.append

    for name in ns.values():
        add(Step(CreateNetns(name), DeleteNetns(name)))
    for name in ns.values():
        add(Step(LinkUp(name, "lo")))

    # fabric: one bridge per segment; a switch does not firewall, so bridged frames skip netfilter
    for seg in scenario.segments:
        fab = ns[seg.name]
        for key in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
                    "net.bridge.bridge-nf-call-arptables"):
            add(Step(SetSysctl(fab, key, "0")))
        add(Step(AddBridge(fab, BRIDGE), DeleteLink(fab, BRIDGE)))
        add(Step(LinkUp(fab, BRIDGE)))

    # cables: hosts and routers into their segments' bridges
    index = {name: i for i, name in enumerate(ns)}
    cables: list[tuple[str, str, str]] = [(h.segment, h.name, "eth0") for h in scenario.hosts]
    for r in scenario.routers:
        cables += [(seg, r.name, f"eth{i}") for i, seg in enumerate(r.segments)]
    for seg, node, ifname in cables:
        fab, port = ns[seg], port_name(node, index[node])
        add(Step(AddVeth(fab, port, ns[node], ifname), DeleteLink(fab, port)))
        add(Step(SetMaster(fab, port, BRIDGE)))
        add(Step(LinkUp(fab, port)))

    # addresses and routes (IPv6 where a segment has a subnet6: added nodad, routers forward it)
    for h in scenario.hosts:
        add(Step(AddAddress(ns[h.name], "eth0", h.address, h.prefixlen),
                 DeleteAddress(ns[h.name], "eth0", h.address, h.prefixlen)))
        if h.address6 is not None:
            add(Step(AddAddress(ns[h.name], "eth0", h.address6, h.prefixlen6),
                     DeleteAddress(ns[h.name], "eth0", h.address6, h.prefixlen6)))
        add(Step(LinkUp(ns[h.name], "eth0")))
    prefix = {s.name: int(s.subnet.split("/")[1]) for s in scenario.segments}
    prefix6 = {s.name: int(s.subnet6.split("/")[1]) for s in scenario.segments if s.subnet6 is not None}
    for r in scenario.routers:
        for i, seg in enumerate(r.segments):
            for addr, plen in ((r.address_on(seg), prefix[seg]), (r.address_on(seg, 6), prefix6.get(seg))):
                if addr is not None:
                    add(Step(AddAddress(ns[r.name], f"eth{i}", addr, plen),
                             DeleteAddress(ns[r.name], f"eth{i}", addr, plen)))
            add(Step(LinkUp(ns[r.name], f"eth{i}")))
        add(Step(SetSysctl(ns[r.name], "net.ipv4.ip_forward", "1")))
        if r.addresses6:
            add(Step(SetSysctl(ns[r.name], "net.ipv6.conf.all.forwarding", "1")))
    for family in (4, 6):
        for node, node_routes in routes(scenario, family).items():
            for dst, gw in node_routes:
                add(Step(AddRoute(ns[node], dst, gw), DeleteRoute(ns[node], dst, gw)))

    # kernel VXLAN devices (flannel's flannel.1 in a canal cluster, vxlan.calico for Calico's
    # VXLAN) on the scenario's port, with an overlay address and a flood entry to every peer
    dev = vxlan_device(scenario.profile)
    vxlan_hosts = [h for h in scenario.hosts if h.services.vxlan_vni is not None]
    for i, h in enumerate(vxlan_hosts):
        n = ns[h.name]
        add(Step(AddVxlan(n, dev, h.services.vxlan_vni, scenario.vxlan_port, "eth0", h.address),
                 DeleteLink(n, dev)))
        plen = ipaddress.IPv4Network(OVERLAY_NET).prefixlen
        add(Step(AddAddress(n, dev, overlay_address(i), plen), DeleteAddress(n, dev, overlay_address(i), plen)))
        for peer in vxlan_hosts:
            if peer.name != h.name and peer.services.vxlan_vni == h.services.vxlan_vni:
                add(Step(AddFdb(n, dev, peer.address)))
        add(Step(LinkUp(n, dev)))

    # firewalls, routers first: the path exists before the hosts guard themselves
    for node in (*scenario.routers, *scenario.hosts):
        cmds = tuple(fw.commands(node.firewall))
        if cmds:
            n = ns[node.name]
            add(Step(LoadFirewall(n, node.name, f"{node.field}.firewall", cmds), FlushFirewall(n)))

    # services: listeners for the ports, real daemons where installed
    for h in scenario.hosts:
        n = ns[h.name]
        daemon_ports = {p for d in h.services.daemons for p in DAEMONS[d]}
        tcp = tuple(p for p in h.services.tcp if p not in daemon_ports)
        if tcp or h.services.udp:
            log = f"{scenario.short(h.name)}-listener"
            add(Step(StartListener(n, h.name, tcp, h.services.udp, log), StopProcess(n, log)))
        for d in h.services.daemons:
            start = _daemon(scenario, h, n, d, lab_name)
            add(Step(start, StopProcess(n, start.log_name)))
    return steps


def namespaces(steps: list[Step]) -> list[str]:
    """Every namespace the plan creates, in creation order."""
    return [s.action.ns for s in steps if isinstance(s.action, CreateNetns)]


def teardown(done: list[Step]) -> list[Action]:
    """The undos to run for the steps in ``done``, newest first, skipping work inside a namespace
    that is deleted anyway (its links, addresses, routes and rules vanish with it)."""
    doomed = {s.action.ns for s in done if isinstance(s.action, CreateNetns)}
    out = []
    for step in reversed(done):
        undo = step.undo
        if undo is None:
            continue
        if isinstance(undo, (DeleteNetns, StopProcess)) or undo.ns not in doomed:
            out.append(undo)
    return out


def inventory(scenario: Scenario, lab_name: str) -> dict:
    """The inventory (docs/design.md, "The lab") of a lab: its hosts, each agent on a unix socket in the
    lab's state directory, the token file beside it (relative paths: the inventory's folder)."""
    sd = state_dir(lab_name)
    return {
        "token_file": "token",
        "apiserver_port": 6443,
        "vni": scenario.vni,
        "vxlan_port": scenario.vxlan_port,
        "hosts": [
            {"name": h.name, "address": h.address, **({"address6": h.address6} if h.address6 else {}),
             "roles": sorted(h.roles), "agent": f"unix:{sd}/{scenario.short(h.name)}.sock"}
            for h in scenario.hosts
        ],
    }
