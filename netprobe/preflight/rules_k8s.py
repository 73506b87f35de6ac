"""Judge a cluster, read from its API, against the Kubernetes rows of Calico's requirements page:
supported versions, CNI enabled in the kubelet, Calico the only network provider, kube-proxy's
mode, the pod IP pools apart from the service range and the hosts' addresses, mutating admission
webhooks (Application Layer Policy), and the apiserver's real port.

Pure: ``evaluate_cluster(facts, ...)`` reads nothing; the facts come from
``k8s_facts.cluster_facts`` (the objects ``netprobe.kube.cluster_read`` fetched). Every line
records the requirement set it was judged against (``Item.requirements``): ``current`` (default)
or ``legacy``, the first requirements page. A read the API refused makes the lines that need it
``unknown`` with that refusal as evidence; the command turns any refused read into exit 3.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from netprobe.errors import ConfigError
from netprobe.preflight import overlap
from netprobe.preflight.k8s_facts import ClusterFacts, Workload, image_name, image_path
from netprobe.preflight.kube import flag_value, parse_version
from netprobe.preflight.model import Item, Report, Status

GROUP = "kubernetes"
API_ITEM = "k8s:api"  # the one line of a cluster whose API could not be reached


@dataclass(frozen=True)
class RequirementSet:
    name: str
    source: str
    tested: tuple[tuple[int, int], tuple[int, int]]  # first and last tested minor, inclusive
    will_not_work_below: tuple[int, int] | None      # older than this: the page says it will not work
    proxy_modes: dict[str, tuple[int, int, int]]     # supported kube-proxy mode -> minimum Kubernetes


# "current": Calico's "System requirements for Kubernetes", Kubernetes requirements section, as
# its versioned docs (tigera/docs, calico_versioned_docs/version-3.32/_includes/partials/
# _system-requirements.mdx) list it: tested 1.32, 1.33, 1.34, 1.35, 1.36; "will not work on
# Kubernetes v1.20 or below, v1.21 may work but is no longer tested"; kube-proxy iptables (default),
# ipvs (>= 1.9.3), nftables (>= 1.31.0). The 3.33 copy read at the same time still listed
# 1.32-1.34 (it lags the e2e runs), so 3.32's wider list is the one taken. Update with the docs.
# "legacy": the first requirements page netprobe was built from: Kubernetes 1.9-1.11 tested,
# kube-proxy iptables, or ipvs with Kubernetes >= 1.9.3.
REQUIREMENT_SETS = {
    "current": RequirementSet(
        "current", "Calico 3.32 docs, System requirements for Kubernetes",
        ((1, 32), (1, 36)), (1, 21),
        {"iptables": (0, 0, 0), "ipvs": (1, 9, 3), "nftables": (1, 31, 0)}),
    "legacy": RequirementSet(
        "legacy", "the old requirements page (Kubernetes 1.9-1.11)",
        ((1, 9), (1, 11)), None,
        {"iptables": (0, 0, 0), "ipvs": (1, 9, 3)}),
}
DEFAULT_REQUIREMENTS = "current"
NETPROBE_APISERVER_PORT = 6443


def _v(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def evaluate_cluster(
    facts: ClusterFacts,
    *,
    requirements: str = DEFAULT_REQUIREMENTS,
    profile: str = "calico",
    pool_cidrs: Sequence[str] | None = None,
    service_cidr: str | None = None,
    apiserver_port: int | None = None,
) -> Report:
    """Every Kubernetes row's status for one cluster. ``pool_cidrs``/``service_cidr`` stand in
    for what the cluster does not say (no IPPool yet, no kube-apiserver pod visible);
    ``apiserver_port`` is the inventory's, when there is one."""
    reqs = requirement_set(requirements)
    rules = _Rules(facts, reqs, profile, pool_cidrs, service_cidr, apiserver_port)
    items = [rules.version(), rules.cni(), rules.providers(), rules.kube_proxy(), rules.service_range(),
             *rules.pools(), rules.pod_cidrs(), rules.webhooks(), rules.apiserver_port()]
    return Report(items=tuple(items), host=f"cluster {facts.server}".strip(), profile=profile,
                  pool_cidrs=tuple(str(p) for p, _ in rules.pool_nets()),
                  service_cidr=",".join(str(s) for s in rules.services[0]) if rules.services else None)


def unreachable_report(server: str, error: str, *, requirements: str = DEFAULT_REQUIREMENTS,
                       profile: str = "calico") -> Report:
    """The cluster section when the API could not be asked at all: one line, unknown."""
    return Report(items=(Item(API_ITEM, GROUP, "Kubernetes API reachable", Status.UNKNOWN, error,
                              requirement_set(requirements).name),),
                  host=f"cluster {server}".strip(), profile=profile)


def requirement_set(name: str) -> RequirementSet:
    if name not in REQUIREMENT_SETS:
        raise ConfigError(f"unknown requirement set {name!r} (known: {', '.join(REQUIREMENT_SETS)})",
                          field="--requirements")
    return REQUIREMENT_SETS[name]


# ---------------------------------------------------------------------------------------------
# other network providers: image path -> provider, by the image's last path element

def provider_of(image: str) -> str | None:
    """The network provider an image belongs to ("calico", "flannel", ...), None for others."""
    path, name = image_path(image), image_name(image)
    if name in {"node", "cni", "cnx-node"} and ("calico" in path[:-1] or "tigera" in path[:-1]):
        return "calico"
    if name == "flannel" or (name.endswith("-flannel") and "calico" not in path[:-1]) or path[-2:] == ("coreos", "flannel"):
        return "flannel"
    if name in {"weave-kube", "weave-npc"}:
        return "weave"
    if name == "cilium" or (len(path) > 1 and path[-2] == "cilium" and name.startswith("operator")):
        return "cilium"
    if name in {"amazon-k8s-cni", "amazon-k8s-cni-init"}:
        return "aws-vpc-cni"
    if name == "kube-router":
        return "kube-router"
    if name.startswith("antrea-"):
        return "antrea"
    if name == "kube-ovn":
        return "kube-ovn"
    if name.startswith(("ovnkube", "ovn-kubernetes")):
        return "ovn-kubernetes"
    if name in {"azure-cns", "azure-cni", "azure-vnet"}:
        return "azure-cni"
    if name == "kindnetd":
        return "kindnet"
    if name in {"romana-agent", "contiv-netplugin"}:
        return name.split("-")[0]
    return None


def providers_in(workload: Workload) -> set[str]:
    found = {p for p in map(provider_of, workload.images) if p}
    if {"calico", "flannel"} <= found:  # canal: Calico's policy and flannel's network in one pod
        found -= {"calico", "flannel"}
        found.add("canal")
    return found


def _dedupe_pods(daemonsets: list[Workload], pods: list[Workload]) -> list[Workload]:
    """Pods not owned by a listed DaemonSet, one per owner (a Deployment's pods count once)."""
    ds = {(d.namespace, d.name) for d in daemonsets}
    seen: dict[tuple[str, str, str], Workload] = {}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if pod.owner and pod.owner[0] == "DaemonSet" and (pod.namespace, pod.owner[1]) in ds:
            continue
        if pod.owner and pod.owner[0] in {"ReplicaSet", "StatefulSet", "Job"}:
            key = (pod.namespace, pod.owner[0], _owner_name(pod.owner))
            seen.setdefault(key, Workload(pod.owner[0] if pod.owner[0] != "ReplicaSet" else "Deployment",
                                          pod.namespace, key[2], pod.images, pod.labels, pod.owner, pod.argv))
        else:
            seen.setdefault((pod.namespace, "Pod", pod.name), pod)
    return list(seen.values())


def _owner_name(owner: tuple[str, str]) -> str:
    kind, name = owner
    if kind == "ReplicaSet":  # "cilium-operator-5d7f8c9b6" -> the Deployment "cilium-operator"
        return re.sub(r"-[a-z0-9]{6,10}$", "", name)
    return name


# ---------------------------------------------------------------------------------------------

class _Rules:
    def __init__(self, facts: ClusterFacts, reqs: RequirementSet, profile: str,
                 pool_cidrs: Sequence[str] | None, service_cidr: str | None, apiserver_port: int | None):
        self.f, self.reqs, self.profile = facts, reqs, profile
        self.given_pools = list(pool_cidrs or [])
        self.given_services = service_cidr
        self.inventory_port = apiserver_port
        self.services = self._services()

    def item(self, item_id: str, title: str, status: Status, evidence: str) -> Item:
        return Item(item_id, GROUP, title, status, evidence, self.reqs.name)

    def refused(self, *keys: str) -> str | None:
        """The first refusal among the reads ``keys`` (the line's evidence), None if all were read."""
        return next((self.f.errors[k] for k in keys if k in self.f.errors), None)

    # -- version ---------------------------------------------------------------------------
    def version(self) -> Item:
        (lo, hi), floor = self.reqs.tested, self.reqs.will_not_work_below
        tested = f"{_v(lo)}-{_v(hi)}"
        title = f"Kubernetes version tested with Calico ({tested})"
        if self.f.version is None:
            return self.item("k8s:version", title, Status.UNKNOWN, self.refused("version") or "/version not read")
        found = self.f.version_tuple
        where = f"{self.f.version} (/version)"
        if found is None:
            return self.item("k8s:version", title, Status.UNKNOWN, f"cannot parse {where}")
        minor = found[:2]
        if lo <= minor <= hi:
            return self.item("k8s:version", title, Status.OK, f"{where}; tested: {tested} ({self.reqs.source})")
        if floor and minor < floor:
            return self.item("k8s:version", title, Status.FAIL,
                             f"{where}: Calico will not work on {_v(floor[:1] + (floor[1] - 1,))} or below "
                             f"({self.reqs.source})")
        side = "older" if minor < lo else "newer"
        return self.item("k8s:version", title, Status.WARN,
                         f"{where}: {side} than the tested {tested} ({self.reqs.source}); it may work, untested")

    # -- CNI enabled in the kubelet -----------------------------------------------------------
    def cni(self) -> Item:
        title = "CNI networking enabled in every kubelet"
        if self.f.nodes is None:
            return self.item("k8s:cni", title, Status.UNKNOWN, self.refused("nodes") or "nodes not read")
        if not self.f.nodes:
            return self.item("k8s:cni", title, Status.UNKNOWN, "the API lists no node")
        cni_down, other_down, no_condition, pre_124 = [], [], [], []
        for node in self.f.nodes:
            text = f"{node.ready_reason} {node.ready_message}"
            kubelet = parse_version(node.kubelet_version)
            if kubelet is not None and kubelet[:2] < (1, 24):
                pre_124.append(f"{node.name} ({node.kubelet_version})")
            if node.ready is None:
                no_condition.append(node.name)
            elif node.ready != "True":
                if re.search(r"network ?plugin|\bcni\b|NetworkReady=false|network not ready", text, re.I):
                    cni_down.append(f"{node.name}: {_clip(node.ready_message or node.ready_reason)}")
                else:
                    other_down.append(f"{node.name} ({node.ready_reason or node.ready})")
        extra = []
        if other_down:
            extra.append(f"NotReady for another reason: {', '.join(other_down)}")
        if no_condition:
            extra.append(f"no Ready condition: {', '.join(no_condition)}")
        if pre_124:
            extra.append(f"kubelet older than 1.24 (check it runs with --network-plugin=cni, not visible "
                         f"through the API): {', '.join(pre_124)}")
        tail = ("; " + "; ".join(extra)) if extra else ""
        if cni_down:
            return self.item("k8s:cni", title, Status.FAIL,
                             f"the kubelet reports the network plugin not ready on {'; '.join(cni_down)}{tail}")
        count = len(self.f.nodes) - len(other_down) - len(no_condition)
        status = Status.WARN if pre_124 or other_down else Status.OK
        return self.item("k8s:cni", title, status,
                         f"{count} of {len(self.f.nodes)} nodes Ready (kubelet's network ready){tail}")

    # -- other network providers ---------------------------------------------------------------
    def providers(self) -> Item:
        title = "Calico the only network provider"
        if self.f.daemonsets is None or self.f.pods is None:
            return self.item("k8s:providers", title, Status.UNKNOWN,
                             self.refused("daemonsets", "pods") or "daemonsets/pods not read")
        ours, others = [], []
        for workload in [*sorted(self.f.daemonsets, key=lambda w: (w.namespace, w.name)),
                         *_dedupe_pods(self.f.daemonsets, self.f.pods)]:
            found = providers_in(workload)
            for provider in sorted(found):
                label = f"{provider} ({workload.kind} {workload.label})"
                (ours if provider in {"calico", "canal"} else others).append(label)
        seen_ours = f"; Calico: {', '.join(ours)}" if ours else "; no Calico workload found yet"
        if others:
            return self.item("k8s:providers", title, Status.FAIL,
                             f"other network providers: {', '.join(others)}{seen_ours}")
        return self.item("k8s:providers", title, Status.OK,
                         f"no other provider among {len(self.f.daemonsets)} daemonsets and "
                         f"{len(self.f.pods)} pods{seen_ours}")

    # -- kube-proxy ------------------------------------------------------------------------
    def kube_proxy_mode(self) -> tuple[str | None, str]:
        """(mode, where it was read); mode None: no kube-proxy visible; "" : the default."""
        proxies = [w for w in (self.f.daemonsets or []) if any(image_name(i) == "kube-proxy" for i in w.images)
                   or (w.namespace, w.name) == ("kube-system", "kube-proxy")]
        static = [p for p in (self.f.pods or []) if p.namespace == "kube-system" and p.owner is None
                  and any(image_name(i) == "kube-proxy" for i in p.images)]
        config_mode, config_where = self._config_mode()
        for workload in proxies + static:
            for argv in workload.argv:
                if flag_value(argv, "config") and config_mode is not None:
                    return config_mode, config_where
                flag = flag_value(argv, "proxy-mode")
                if flag is not None:
                    return flag, f"--proxy-mode of {workload.kind} {workload.label}"
        if config_mode is not None:
            return config_mode, config_where
        if proxies or static:
            first = (proxies + static)[0]
            return "", f"{first.kind} {first.label} sets no mode"
        return None, ""

    def _config_mode(self) -> tuple[str | None, str]:
        for key, text in sorted((self.f.proxy_config or {}).items()):
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and doc.get("kind") == "KubeProxyConfiguration":
                return str(doc.get("mode") or ""), f"mode in configmap kube-system/kube-proxy ({key})"
        return None, ""

    def kube_proxy(self) -> Item:
        modes = self.reqs.proxy_modes
        title = f"kube-proxy mode ({', '.join(modes)})"
        refused = self.refused("daemonsets", "pods", "kube_proxy_config")
        if refused:
            return self.item("k8s:kube-proxy", title, Status.UNKNOWN, refused)
        mode, where = self.kube_proxy_mode()
        if mode is None:
            return self.item("k8s:kube-proxy", title, Status.WARN,
                             "no kube-proxy: no DaemonSet, pod or configmap kube-system/kube-proxy. Fine when "
                             "Calico's eBPF data plane replaces it (or it runs outside the API, e.g. k3s); "
                             "otherwise Services do not work")
        mode = mode.strip().lower()
        shown = mode or "iptables"
        if not mode:
            where = f"the Linux default: {where}"
        if shown not in modes:
            return self.item("k8s:kube-proxy", title, Status.FAIL,
                             f"{shown} ({where}): {self.reqs.source} supports {', '.join(modes)}")
        need = modes[shown]
        if need == (0, 0, 0):
            return self.item("k8s:kube-proxy", title, Status.OK, f"{shown} ({where})")
        version = self.f.version_tuple
        if version is None:
            return self.item("k8s:kube-proxy", title, Status.UNKNOWN,
                             f"{shown} ({where}) needs Kubernetes >= {_v(need)}; version not read")
        status = Status.OK if version >= need else Status.FAIL
        return self.item("k8s:kube-proxy", title, status,
                         f"{shown} ({where}); Kubernetes {self.f.version}, {shown} needs >= {_v(need)}")

    # -- IP ranges -------------------------------------------------------------------------
    def _services(self) -> tuple[list[overlap.Network], str] | None:
        flag = self.f.apiserver_flag("service-cluster-ip-range")
        if flag is not None:
            try:
                return [overlap.parse_cidr(t, "--service-cluster-ip-range") for t in _split(flag[0])], \
                    f"--service-cluster-ip-range of {flag[1]}"
            except ConfigError:
                pass
        if self.given_services:
            return [overlap.parse_cidr(t, "--service-cidr") for t in _split(self.given_services)], "--service-cidr"
        return None

    def service_range(self) -> Item:
        title = "service range known"
        if self.services is None:
            why = self.refused("pods") or ("no kube-apiserver pod in kube-system (a managed control plane?) and "
                                           "no --service-cidr given")
            return self.item("k8s:service-range", title, Status.UNKNOWN, why)
        nets, source = self.services
        return self.item("k8s:service-range", title, Status.OK, f"{','.join(map(str, nets))} ({source})")

    def pool_nets(self) -> list[tuple[overlap.Network, str]]:
        """(network, where it comes from) of every enabled pool: the cluster's IPPools, else the
        given --pool-cidr, else the profile's default."""
        out = []
        if self.f.pools:
            for pool in self.f.pools:
                if pool.disabled:
                    continue
                try:
                    out.append((ipaddress.ip_network(pool.cidr, strict=False),
                                f"IPPool {pool.name} ({self.f.pools_source})"))
                except ValueError:
                    continue
            return out
        if self.f.pools is None:
            return []
        texts = self.given_pools or overlap.default_pools(self.profile)
        where = "--pool-cidr" if self.given_pools else f"the {self.profile} profile's default"
        return [(overlap.parse_cidr(t, "--pool-cidr"), f"{where}, no IPPool in the cluster") for t in texts]

    def _host_ips(self) -> list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str]]:
        out = []
        for node in self.f.nodes or []:
            for kind, addrs in (("InternalIP", node.internal), ("ExternalIP", node.external)):
                for addr in addrs:
                    try:
                        out.append((ipaddress.ip_address(addr), f"node {node.name}'s {kind} {addr}"))
                    except ValueError:
                        continue
        return out

    def pools(self) -> list[Item]:
        if self.f.pools is None:
            return [self.item("k8s:pools", "pod IP pools apart from hosts and services", Status.UNKNOWN,
                              self.refused("ippools", "apis") or "IPPools not read")]
        nets = self.pool_nets()
        if not nets:
            return [self.item("k8s:pools", "pod IP pools apart from hosts and services", Status.WARN,
                              f"every IPPool is disabled or unreadable ({self.f.pools_source})")]
        items = []
        hosts = self._host_ips()
        for i, (pool, source) in enumerate(nets):
            pairs = [f"contains {what}" for addr, what in hosts if addr.version == pool.version and addr in pool]
            if self.services:
                pairs += [f"overlaps the service range {svc}" for svc in self.services[0]
                          if overlap.overlapping(pool, svc)]
            pairs += [f"overlaps pool {other}" for other, _ in nets[:i] if overlap.overlapping(pool, other)]
            notes = []
            if self.f.nodes is None:
                notes.append(f"node addresses not read: {self.refused('nodes')}")
            if self.services is None:
                notes.append("service range unknown")
            note = ("; " + "; ".join(notes)) if notes else ""
            if pairs:
                status, text = Status.FAIL, f"{pool} ({source}) " + "; ".join(pairs)
            else:
                status = Status.UNKNOWN if self.f.nodes is None else Status.OK
                text = (f"{pool} ({source}): apart from {len(hosts)} node addresses"
                        + (f" and the service range {','.join(map(str, self.services[0]))}" if self.services else ""))
            items.append(self.item(f"k8s:pool:{pool}", f"pool {pool} apart from hosts and services", status,
                                   text + note))
        return items

    def pod_cidrs(self) -> Item:
        """The nodes' podCIDRs (kube-controller-manager's --cluster-cidr): pods get them with
        host-local IPAM (canal), so they too must keep clear of services and host addresses. Inside
        a pool is the usual setup (kubeadm's --pod-network-cidr = the pool); wider than one is not."""
        title = "nodes' podCIDRs apart from hosts and services"
        if self.f.nodes is None:
            return self.item("k8s:pod-cidrs", title, Status.UNKNOWN, self.refused("nodes") or "nodes not read")
        cidrs: dict[overlap.Network, list[str]] = {}
        for node in self.f.nodes:
            for text in node.pod_cidrs:
                try:
                    cidrs.setdefault(ipaddress.ip_network(text, strict=False), []).append(node.name)
                except ValueError:
                    continue
        if not cidrs:
            return self.item("k8s:pod-cidrs", title, Status.OK, "no node has a podCIDR (none allocated)")
        hosts = self._host_ips()
        pairs, outside = [], []
        pools = self.pool_nets()
        for net, owners in sorted(cidrs.items(), key=lambda kv: str(kv[0])):
            label = f"podCIDR {net} ({', '.join(owners)})"
            pairs += [f"{label} contains {what}" for addr, what in hosts if addr.version == net.version and addr in net]
            if self.services:
                pairs += [f"{label} overlaps the service range {svc}" for svc in self.services[0]
                          if overlap.overlapping(net, svc)]
            inside = [p for p, _ in pools if net.version == p.version and net.subnet_of(p)]
            # a podCIDR wider than a pool: that node's host-local IPAM and Calico's blocks on every
            # node could hand out the same address (CIDRs nest or are apart: no other overlap exists)
            pairs += [f"{label} contains pool {p} ({where})" for p, where in pools
                      if net.version == p.version and p != net and p.subnet_of(net)]
            if pools and not inside:
                outside.append(str(net))
        shown = ", ".join(str(n) for n in sorted(cidrs, key=str)[:4]) + (" ..." if len(cidrs) > 4 else "")
        if pairs:
            return self.item("k8s:pod-cidrs", title, Status.FAIL, "; ".join(pairs))
        if outside and self.profile == "canal":  # host-local IPAM: the pods get these addresses
            return self.item("k8s:pod-cidrs", title, Status.WARN,
                             f"podCIDRs outside every pool ({', '.join(outside)}): with canal the pods get them")
        where = "" if self.services else "; service range unknown"
        inside = "" if outside or not pools else ", inside the pools"
        return self.item("k8s:pod-cidrs", title, Status.OK, f"{len(cidrs)} podCIDRs ({shown}){inside}{where}")

    # -- mutating admission webhooks (Application Layer Policy) ---------------------------------
    def webhooks(self) -> Item:
        title = "mutating admission webhooks enabled (Application Layer Policy)"
        if self.f.groups is None:
            return self.item("k8s:webhooks", title, Status.UNKNOWN, self.refused("apis") or "/apis not read")
        if "admissionregistration.k8s.io" not in self.f.groups:
            return self.item("k8s:webhooks", title, Status.WARN,
                             "admissionregistration.k8s.io is not served (/apis): no webhook can be registered; "
                             "needed only for Application Layer Policy")
        disabled = self.f.apiserver_flag("disable-admission-plugins")
        if disabled and "MutatingAdmissionWebhook" in _split(disabled[0]):
            return self.item("k8s:webhooks", title, Status.WARN,
                             f"MutatingAdmissionWebhook in --disable-admission-plugins of {_pod(disabled[1])}; "
                             "needed only for Application Layer Policy")
        legacy = self.f.apiserver_flag("admission-control")  # before 1.10 the list was explicit
        if legacy and "MutatingAdmissionWebhook" not in _split(legacy[0]):
            return self.item("k8s:webhooks", title, Status.WARN,
                             f"MutatingAdmissionWebhook not in --admission-control of {_pod(legacy[1])}; "
                             "needed only for Application Layer Policy")
        if self.f.pods is None:
            flags = f"kube-apiserver flags not read: {self.refused('pods')}"
        elif self.f.apiserver_pods():
            flags = "not disabled in the kube-apiserver pod's flags"
        else:
            flags = "kube-apiserver's flags not visible (no pod in kube-system); on by default since 1.10"
        return self.item("k8s:webhooks", title, Status.OK, f"admissionregistration.k8s.io served; {flags}")

    # -- the apiserver's real port ------------------------------------------------------------
    def apiserver_port(self) -> Item:
        title = "apiserver port (what netprobe probes)"
        port, evidence = self._real_port()
        if port is None:
            return self.item("k8s:apiserver-port", title, Status.UNKNOWN,
                             self.refused("kubernetes_endpoints", "kubernetes_service") or evidence)
        if self.inventory_port is not None:
            if port != self.inventory_port:
                return self.item("k8s:apiserver-port", title, Status.FAIL,
                                 f"{evidence}; the inventory's apiserver_port is {self.inventory_port}: "
                                 f"the mesh would probe the wrong port")
            return self.item("k8s:apiserver-port", title, Status.OK, f"{evidence}; the inventory says {port} too")
        if port != NETPROBE_APISERVER_PORT:
            return self.item("k8s:apiserver-port", title, Status.WARN,
                             f"{evidence}; not netprobe's default {NETPROBE_APISERVER_PORT}: "
                             f"set apiserver_port: {port} in the inventory")
        return self.item("k8s:apiserver-port", title, Status.OK, evidence)

    def _real_port(self) -> tuple[int | None, str]:
        ep_port = None
        for subset in _listof((self.f.endpoints or {}).get("subsets")):
            ports = _listof(subset.get("ports"))
            named = [p for p in ports if p.get("name") == "https"] or ports
            if named and isinstance(named[0].get("port"), int):
                ep_port = named[0]["port"]
                break
        target = None
        for port in _listof(((self.f.service or {}).get("spec") or {}).get("ports")):
            if port.get("name") == "https" or target is None:
                target = port.get("targetPort", port.get("port"))
        secure = self.f.apiserver_flag("secure-port")
        parts = []
        if ep_port is not None:
            parts.append(f"{ep_port} (endpoints default/kubernetes)")
        if target is not None:
            parts.append(f"service default/kubernetes targetPort {target}")
        if secure:
            parts.append(f"--secure-port {secure[0]} of {_pod(secure[1])}")
        real = ep_port if ep_port is not None else (target if isinstance(target, int) else None)
        if real is None and secure and secure[0].isdigit():
            real = int(secure[0])
        if real is None:
            return None, "no port in endpoints or service default/kubernetes"
        mismatch = isinstance(target, int) and ep_port is not None and target != ep_port
        return real, ", ".join(parts) + ("; the service's targetPort disagrees with its endpoints" if mismatch else "")


def _pod(where: str) -> str:
    """"kube-apiserver pod kube-system/x" -> "pod kube-system/x" (the flag already names the binary)."""
    return where.removeprefix("kube-apiserver ")


def _listof(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _split(text: str) -> list[str]:
    return [p for p in (part.strip() for part in text.split(",")) if p]


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
