"""Rules about what else runs on the host: other CNI providers, kube-proxy's mode, and the ports
Calico must bind. Pure, like ``rules``."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from netprobe.preflight.facts import CniFacts, Facts, Process
from netprobe.preflight.kube import flag_value, image_version, parse_version
from netprobe.preflight.model import Item, Status
from netprobe.preflight.requirements import CURRENT, LEGACY_SET, NFTABLES_MIN_K8S, SETS, RequirementSet

# CNI plugin types that chain onto a network rather than provide one.
META_PLUGINS = {"portmap", "bandwidth", "tuning", "firewall", "sbr", "loopback", "static", "host-local"}
PROVIDERS = {
    "calico": "calico", "flannel": "flannel", "weave-net": "weave", "weave-plugin": "weave",
    "cilium-cni": "cilium", "antrea": "antrea", "kube-ovn": "kube-ovn", "ovn-k8s-cni-overlay": "ovn-kubernetes",
    "multus": "multus", "multus-shim": "multus", "aws-cni": "aws-vpc-cni", "azure-vnet": "azure-cni",
}
IPVS_MIN_K8S = (1, 9, 3)


def cni_item(cni: CniFacts) -> Item:
    """Calico should be the only network provider: any other config in net.d is a warning."""
    title = "one network provider (CNI)"
    if cni.configs is None:
        return Item("cni", "cni", title, Status.UNKNOWN, f"cannot read {cni.directory}")
    if not cni.exists:
        return Item("cni", "cni", title, Status.OK, f"no {cni.directory} yet: no provider installed")
    ours, others = [], []
    for conf in sorted(cni.configs, key=lambda c: c.file):
        name = conf.file.rsplit("/", 1)[-1]
        if conf.error:
            others.append(f"{name}: unreadable ({conf.error})")
            continue
        main = next((t for t in conf.types if t not in META_PLUGINS), None)
        if main is None:
            continue  # e.g. 99-loopback.conf: no network of its own
        provider = PROVIDERS.get(main, main)
        label = f"{name}: {provider}" + (f" ({conf.name})" if conf.name and conf.name != provider else "")
        (ours if provider == "calico" else others).append(label)
    if not ours and not others:
        return Item("cni", "cni", title, Status.OK, f"no network config in {cni.directory}")
    if not others:
        return Item("cni", "cni", title, Status.OK, f"only Calico: {', '.join(ours)}")
    first = sorted([*ours, *others])[0].split(":", 1)[0]
    text = f"other providers in {cni.directory}: {', '.join(others)}"
    if ours:
        text += f"; Calico: {', '.join(ours)}"
    return Item("cni", "cni", title, Status.WARN, f"{text}; the kubelet uses the first by name: {first}")


def _by_name(facts: Facts, name: str) -> list[Process] | None:
    if facts.processes is None:
        return None
    found = []
    for proc in facts.processes.values():
        exe = proc.cmdline[0].rsplit("/", 1)[-1] if proc.cmdline else ""
        if proc.comm == name or exe == name:
            found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def kubernetes_version(facts: Facts) -> tuple[str, str] | None:
    manifest = facts.kube.apiserver_manifest
    if manifest:
        version = image_version(manifest, "kube-apiserver")
        if version:
            return version, facts.kube.manifest_source or "kube-apiserver manifest"
    return None


def service_cidrs_seen(facts: Facts) -> tuple[list[str], str] | None:
    """kube-apiserver's --service-cluster-ip-range, from its process or its static-pod manifest."""
    for proc in _by_name(facts, "kube-apiserver") or []:
        value = flag_value(proc.cmdline, "service-cluster-ip-range")
        if value:
            return [v for v in value.split(",") if v], f"kube-apiserver pid {proc.pid}"
    manifest = facts.kube.apiserver_manifest
    if manifest:
        match = re.search(r"--service-cluster-ip-range=([0-9a-fA-F:.,/]+)", manifest)
        if match:
            return [v for v in match[1].split(",") if v], facts.kube.manifest_source or "kube-apiserver manifest"
    return None


def kube_proxy_item(facts: Facts, reqs: RequirementSet = SETS[CURRENT], dataplane: str = "iptables") -> Item:
    item = _kube_proxy_item(facts, reqs, dataplane)
    return Item(item.id, item.group, item.title, item.status, item.evidence, reqs.name)


def _kube_proxy_item(facts: Facts, reqs: RequirementSet, dataplane: str) -> Item:
    modes = reqs.proxy_modes
    title = f"kube-proxy mode ({', '.join(modes[:-1])} or {modes[-1]})"
    if dataplane == "nftables":
        title += "; nftables for the nftables dataplane"
    procs = _by_name(facts, "kube-proxy")
    kube = facts.kube
    mode = source = None
    if procs:
        proc = procs[0]
        flag = flag_value(proc.cmdline, "proxy-mode")
        if kube.proxy_config_mode:
            mode, source = kube.proxy_config_mode, f"mode in {kube.proxy_config_source}"
        elif flag:
            mode, source = flag, f"kube-proxy --proxy-mode, pid {proc.pid}"
        elif kube.proxy_config_error:
            return Item("kube-proxy", "kube-proxy", title, Status.UNKNOWN,
                        f"kube-proxy pid {proc.pid} runs, but its config is unreadable: {kube.proxy_config_error}")
        else:
            mode = "iptables"
            where = f"{kube.proxy_config_source} sets no mode" if kube.proxy_config_source else "no --proxy-mode"
            source = f"the Linux default: kube-proxy pid {proc.pid}, {where}"
    elif kube.ipvs_link:
        mode, source = "ipvs", "kube-ipvs0 exists (no kube-proxy process visible)"
    if mode is None:
        if procs is None and kube.ipvs_link is None:
            return Item("kube-proxy", "kube-proxy", title, Status.UNKNOWN,
                        "process table and /sys/class/net unreadable")
        return Item("kube-proxy", "kube-proxy", title, Status.UNKNOWN,
                    "not detectable: no kube-proxy process here and no kube-ipvs0 link")
    mode = mode.strip().lower()
    if dataplane == "nftables" and mode != "nftables":
        return Item("kube-proxy", "kube-proxy", title, Status.FAIL,
                    f"{mode} ({source}): Calico's nftables dataplane needs kube-proxy in nftables mode")
    if mode == "iptables":
        return Item("kube-proxy", "kube-proxy", title, Status.OK, f"iptables ({source})")
    minimum = {"nftables": (NFTABLES_MIN_K8S, "1.31"), "ipvs": (IPVS_MIN_K8S, "1.9.3")}.get(mode)
    if minimum is not None and mode in modes:  # these modes need a minimum Kubernetes version
        least, shown = minimum
        known = kubernetes_version(facts)
        version = parse_version(known[0]) if known else None
        if version is None:
            return Item("kube-proxy", "kube-proxy", title, Status.WARN,
                        f"{mode} ({source}): needs Kubernetes >= {shown}, version not found on this host")
        status = Status.OK if version >= least else Status.FAIL
        return Item("kube-proxy", "kube-proxy", title, status,
                    f"{mode} ({source}); Kubernetes {known[0]} ({known[1]}); {mode} needs >= {shown}")
    return Item("kube-proxy", "kube-proxy", title, Status.WARN,
                f"{mode} ({source}): Calico's requirements name {' or '.join(modes)}")


@dataclass(frozen=True)
class PortNeed:
    port: int
    proto: str
    what: str
    holders: frozenset[str]     # process names that may hold it
    kernel_ok: bool = False     # a kernel-owned socket (inode 0, e.g. a VXLAN device) is expected
    conflict: Status = Status.FAIL
    check: str | None = None    # the profile check that needs it (None: always)
    requirements: str = ""      # the set that states it ("": both)


PORTS = (
    PortNeed(179, "tcp", "BGP (BIRD)", frozenset({"bird", "bird6", "calico-node"}), check="bgp"),
    PortNeed(5473, "tcp", "Typha", frozenset({"calico-typha"}), conflict=Status.WARN, check="typha"),
    PortNeed(4789, "udp", "VXLAN", frozenset({"flanneld", "calico-node"}), kernel_ok=True, check="vxlan"),
    PortNeed(9099, "tcp", "Felix health", frozenset({"calico-node", "calico-felix"}), conflict=Status.WARN),
)
TYPHA_HEALTH = PortNeed(9098, "tcp", "Typha health", frozenset({"calico-typha"}), conflict=Status.WARN,
                        requirements=CURRENT)
# the kernel's WireGuard device owns it (a kernel socket, inode 0)
WIREGUARD = PortNeed(51820, "udp", "WireGuard", frozenset({"calico-node"}), kernel_ok=True, requirements=CURRENT)


# The netns lab's stand-in for a host's services (`python -m netprobe.lab.listener`): on a lab host
# it holds the ports the host's roles imply, as BIRD, Typha or etcd would -- expected, not a conflict.
LAB_LISTENER_MODULE = "netprobe.lab.listener"


def is_lab_listener(proc) -> bool:
    args = list(proc.cmdline)
    return any(a == "-m" and i + 1 < len(args) and args[i + 1] == LAB_LISTENER_MODULE for i, a in enumerate(args))


def port_items(facts: Facts, checks: set[str], reqs: RequirementSet = LEGACY_SET, *, vxlan_port: int = 4789,
               wireguard: bool = False) -> list[Item]:
    """The ports of the profile's checks (VXLAN on the port the mesh probes), Felix's health, and
    for the current set Typha's health; WireGuard's when it is on."""
    needs = []
    for need in PORTS:
        if need.check is not None and need.check not in checks:
            continue
        if need.check == "vxlan":
            need = dataclasses.replace(need, port=vxlan_port)
        needs.append(need)
    if reqs.typha_health:
        needs.append(TYPHA_HEALTH)
    if wireguard:
        needs.append(WIREGUARD)
    return [port_item(facts, need) for need in needs]


def port_item(facts: Facts, need: PortNeed) -> Item:
    """Free, or held only by the daemon that should hold it."""
    item = _port_item(facts, need)
    return dataclasses.replace(item, requirements=need.requirements) if need.requirements else item


def _port_item(facts: Facts, need: PortNeed) -> Item:
    item_id, title = f"port:{need.port}/{need.proto}", f"{need.port}/{need.proto} free for {need.what}"
    sockets = facts.sockets
    if sockets.listening is None:
        return Item(item_id, "ports", title, Status.UNKNOWN, f"cannot read /proc/net/{need.proto}")
    held = [s for s in sockets.listening if s.proto == need.proto and s.port == need.port]
    if not held:
        read = [src for src in sockets.sources if src.rsplit("/", 1)[-1].rstrip("6") == need.proto]
        return Item(item_id, "ports", title, Status.OK, f"free ({', '.join(read)})")
    expected, unexpected, unseen = [], [], []
    for sock in held:
        where = f"{sock.local}:{sock.port}"
        if sock.inode == 0:
            (expected if need.kernel_ok else unexpected).append(f"the kernel on {where}")
            continue
        pids = (sockets.owners or {}).get(sock.inode, [])
        procs = [facts.processes[p] for p in pids if facts.processes and p in facts.processes]
        if not procs:
            unseen.append(f"{where} (socket inode {sock.inode})")
        for proc in procs:
            if is_lab_listener(proc):
                expected.append(f"lab listener standing in for {need.what} (pid {proc.pid}) on {where}")
                continue
            label = f"{proc.comm} (pid {proc.pid}) on {where}"
            (expected if proc.comm in need.holders else unexpected).append(label)
    if unexpected:
        return Item(item_id, "ports", title, need.conflict, "held by " + "; ".join(dict.fromkeys(unexpected)))
    if unseen:
        return Item(item_id, "ports", title, Status.UNKNOWN,
                    "held by a process not visible here: " + "; ".join(unseen))
    return Item(item_id, "ports", title, Status.OK, "held by the expected " + "; ".join(dict.fromkeys(expected)))
