"""Kubernetes API objects -> a netprobe inventory document. Pure: dicts in the shape the API
returns (``status.addresses``, ``metadata.labels``, ``spec.nodeName``, ``subsets``) in, a dict
ready for YAML out, plus notes on what was left out and why.

Roles: every node with an InternalIP is a ``node`` (its first IPv4 InternalIP is ``address``, its
first IPv6 one ``address6``; an IPv6-only node's is ``address``); ``apiserver`` where a node carries a
control-plane label or an address the ``default/kubernetes`` endpoints name; ``etcd`` on
control-plane nodes (stacked etcd, kubeadm's default) and nodes labelled
``node-role.kubernetes.io/etcd``; ``typha`` where a Running calico-typha pod is scheduled.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netprobe.core.checks import DEFAULT_APISERVER_PORT
from netprobe.core.inventory import DEFAULT_AGENT_PORT, NAME_RE

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
ETCD_LABELS = ("node-role.kubernetes.io/etcd",)
TYPHA_SELECTOR = "k8s-app=calico-typha"
CALICO_NAMESPACES = ("calico-system", "kube-system")


@dataclass
class ClusterSnapshot:
    """What the API said, as plain dicts: nodes, calico-typha pods, the kubernetes endpoints."""

    nodes: list[dict]
    typha_pods: list[dict] = field(default_factory=list)
    apiserver_endpoints: dict | None = None
    agent_port: int = DEFAULT_AGENT_PORT
    server: str = ""  # the API server URL, for the header comment


@dataclass
class BuiltInventory:
    document: dict          # token_file?, apiserver_port, hosts: [...]
    notes: list[str]        # one line each: what was skipped or assumed, and why

    def to_yaml(self, *, header: str | None = None) -> str:
        import yaml

        lines = [f"# {header}"] if header else []
        lines += [f"# note: {n}" for n in self.notes]
        body = yaml.safe_dump(self.document, sort_keys=False, default_flow_style=None, width=200)
        return "\n".join(lines) + ("\n" if lines else "") + body


def _v4(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).version == 4
    except ValueError:
        return False


def _v6(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).version == 6
    except ValueError:
        return False


def apiserver_endpoint(endpoints: dict | None) -> tuple[set[str], int | None]:
    """Addresses and port of the ``default/kubernetes`` Endpoints object (port named https first)."""
    addresses: set[str] = set()
    port = None
    for subset in (endpoints or {}).get("subsets") or []:
        addresses |= {a.get("ip") for a in subset.get("addresses") or [] if a.get("ip")}
        ports = subset.get("ports") or []
        named = [p for p in ports if p.get("name") == "https"] or ports
        if named and port is None and isinstance(named[0].get("port"), int):
            port = named[0]["port"]
    return addresses, port


def build_inventory(snap: ClusterSnapshot, *, token_file: str | None = None) -> BuiltInventory:
    notes: list[str] = []
    api_addrs, api_port = apiserver_endpoint(snap.apiserver_endpoints)
    if snap.apiserver_endpoints is None:
        notes.append(f"no default/kubernetes endpoints: apiserver_port {DEFAULT_APISERVER_PORT} assumed, "
                     "apiserver role from control-plane labels only")
    typha_nodes = {
        (p.get("spec") or {}).get("nodeName")
        for p in snap.typha_pods
        if (p.get("status") or {}).get("phase") == "Running" and (p.get("spec") or {}).get("nodeName")
    }
    hosts = []
    matched_api: set[str] = set()
    for node in sorted(snap.nodes, key=lambda n: (n.get("metadata") or {}).get("name", "")):
        meta = node.get("metadata") or {}
        name = meta.get("name", "")
        labels = meta.get("labels") or {}
        addresses = (node.get("status") or {}).get("addresses") or []
        internal = [a.get("address", "") for a in addresses if a.get("type") == "InternalIP"]
        v4 = [a for a in internal if _v4(a)]
        v6 = [a for a in internal if _v6(a)]
        if not NAME_RE.match(name or ""):
            notes.append(f"node {name!r} skipped: not a name the inventory takes (at most 63 characters)")
            continue
        if not v4 and not v6:
            notes.append(f"node {name} skipped: no InternalIP")
            continue
        address = v4[0] if v4 else v6[0]
        roles = ["node"]
        every = {a.get("address") for a in addresses}
        if any(label in labels for label in CONTROL_PLANE_LABELS) or every & api_addrs:
            roles.append("apiserver")
            matched_api |= every & api_addrs
        if any(label in labels for label in CONTROL_PLANE_LABELS + ETCD_LABELS):
            roles.append("etcd")
        if name in typha_nodes:
            roles.append("typha")
        agent_host = f"[{address}]" if ":" in address else address
        host = {"name": name, "address": address, "roles": roles, "agent": f"tcp://{agent_host}:{snap.agent_port}"}
        if v4 and v6:
            host = {"name": name, "address": address, "address6": v6[0], "roles": roles, "agent": host["agent"]}
        for extra in v4[1:] + v6[1:]:
            notes.append(f"node {name}: InternalIP {extra} not probed (one address per family)")
        hosts.append(host)
    for addr in sorted(api_addrs - matched_api):
        notes.append(f"apiserver endpoint {addr} is no node's address: not probed (no agent runs there)")
    for node_name in sorted(typha_nodes - {h["name"] for h in hosts}):
        notes.append(f"calico-typha runs on {node_name}, which is not in the inventory")
    doc: dict = {}
    if token_file:
        doc["token_file"] = token_file
    doc["apiserver_port"] = api_port or DEFAULT_APISERVER_PORT
    doc["hosts"] = hosts
    return BuiltInventory(doc, notes)


def to_inventory(built: BuiltInventory, *, source: str = "cluster", base_dir: str = "."):
    """The built document as a checked ``Inventory`` (the same parser a file goes through)."""
    from netprobe.core.inventory import parse_inventory

    return parse_inventory(built.to_yaml(), source=source, base_dir=base_dir)
