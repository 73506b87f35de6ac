"""What cluster preflight knows about a cluster, as plain data, parsed from the API's objects.

``cluster_facts(raw)`` takes the dict ``netprobe.kube.cluster_read`` returns (the objects as
the API sent them: JSON, camelCase) and keeps only what the rules judge. Pure: no client, no
I/O, so every rule is table-tested with hand-written objects. Same convention as ``facts``:
``None`` means "could not be read" (its ``errors`` entry says why), an empty collection "read,
and there is nothing".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from netprobe.preflight.kube import flag_value, parse_version

APISERVER_LABELS = (("component", "kube-apiserver"), ("k8s-app", "kube-apiserver"))


@dataclass(frozen=True)
class Node:
    name: str
    internal: tuple[str, ...] = ()
    external: tuple[str, ...] = ()
    pod_cidrs: tuple[str, ...] = ()
    ready: str | None = None           # the Ready condition's status: "True", "False", "Unknown"; None: none
    ready_reason: str = ""
    ready_message: str = ""
    kubelet_version: str | None = None


@dataclass(frozen=True)
class Workload:
    """A DaemonSet or a pod (pods owned by something: named after their owner)."""

    kind: str                        # "DaemonSet", "Pod", or the pod's owner kind ("ReplicaSet", ...)
    namespace: str
    name: str
    images: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    owner: tuple[str, str] | None = None  # (kind, name) of a pod's controller
    argv: tuple[tuple[str, ...], ...] = ()  # each container's command + args

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Pool:
    name: str
    cidr: str
    disabled: bool = False


@dataclass
class ClusterFacts:
    server: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # read key -> one line
    version: str | None = None                           # gitVersion, "v1.31.4"
    groups: frozenset[str] | None = None                 # served API groups
    nodes: list[Node] | None = None
    daemonsets: list[Workload] | None = None
    pods: list[Workload] | None = None
    proxy_config: dict[str, str] | None = None           # kube-system/kube-proxy ConfigMap data ({}: absent)
    proxy_config_found: bool = False
    pools: list[Pool] | None = None                      # None: not read; [] : none (or no Calico API)
    pools_source: str | None = None                      # "crd.projectcalico.org/v1"; None: no Calico group
    service: dict | None = None                          # default/kubernetes Service (None: absent or unread)
    endpoints: dict | None = None                        # default/kubernetes Endpoints

    @property
    def version_tuple(self) -> tuple[int, int, int] | None:
        return parse_version(self.version)

    def apiserver_pods(self) -> list[Workload]:
        """kube-apiserver's (static) pods, as kubeadm and most installers run it; a managed
        control plane shows none."""
        found = []
        for pod in self.pods or []:
            labels = dict(pod.labels)
            if pod.namespace == "kube-system" and (
                    any(labels.get(k) == v for k, v in APISERVER_LABELS)
                    or any(image_name(i) == "kube-apiserver" for i in pod.images)):
                found.append(pod)
        return sorted(found, key=lambda p: p.name)

    def apiserver_flag(self, name: str) -> tuple[str, str] | None:
        """(value, "pod NS/NAME") of a kube-apiserver flag, from the first pod that sets it."""
        for pod in self.apiserver_pods():
            for argv in pod.argv:
                value = flag_value(argv, name)
                if value is not None:
                    return value, f"kube-apiserver pod {pod.label}"
        return None


def image_name(image: str) -> str:
    """The last path element of an image without registry, tag or digest:
    "quay.io/calico/node:v3.29.1" -> "node"."""
    path = image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def image_path(image: str) -> tuple[str, ...]:
    """The image's path elements without the registry host and tag: ("calico", "node")."""
    path = image.split("@", 1)[0]
    parts = path.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    parts[-1] = parts[-1].split(":", 1)[0]
    return tuple(p.lower() for p in parts)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _node(obj: dict) -> Node:
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    addresses = [a for a in _list(status.get("addresses")) if isinstance(a, dict)]
    cidrs = [c for c in _list(spec.get("podCIDRs")) if isinstance(c, str)]
    if not cidrs and isinstance(spec.get("podCIDR"), str):
        cidrs = [spec["podCIDR"]]
    ready = next((c for c in _list(status.get("conditions")) if isinstance(c, dict) and c.get("type") == "Ready"),
                 None)
    return Node(
        name=str(meta.get("name", "?")),
        internal=tuple(str(a.get("address")) for a in addresses if a.get("type") == "InternalIP"),
        external=tuple(str(a.get("address")) for a in addresses if a.get("type") == "ExternalIP"),
        pod_cidrs=tuple(cidrs),
        ready=str(ready.get("status")) if ready else None,
        ready_reason=str((ready or {}).get("reason") or ""),
        ready_message=str((ready or {}).get("message") or ""),
        kubelet_version=_dict(status.get("nodeInfo")).get("kubeletVersion"),
    )


def _pod_spec(obj: dict) -> dict:
    spec = _dict(obj.get("spec"))
    template = _dict(spec.get("template"))
    return _dict(template.get("spec")) if template else spec


def _workload(obj: dict, kind: str) -> Workload:
    meta = _dict(obj.get("metadata"))
    spec = _pod_spec(obj)
    containers = [c for c in _list(spec.get("initContainers")) + _list(spec.get("containers")) if isinstance(c, dict)]
    owner = None
    if kind == "Pod":
        ref = next((r for r in _list(meta.get("ownerReferences")) if isinstance(r, dict) and r.get("controller")),
                   None) or next((r for r in _list(meta.get("ownerReferences")) if isinstance(r, dict)), None)
        if ref:
            owner = (str(ref.get("kind", "")), str(ref.get("name", "")))
    labels = _dict(meta.get("labels"))
    if kind == "DaemonSet":  # the pods' labels say what runs, the DaemonSet's own may be empty
        template_meta = _dict(_dict(_dict(obj.get("spec")).get("template")).get("metadata"))
        labels = {**_dict(template_meta.get("labels")), **labels}
    return Workload(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "?")),
        images=tuple(str(c["image"]) for c in containers if c.get("image")),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        owner=owner,
        argv=tuple(tuple(str(a) for a in _list(c.get("command")) + _list(c.get("args"))) for c in containers),
    )


def cluster_facts(raw: Mapping) -> ClusterFacts:
    """The facts the rules judge, from ``netprobe.kube.cluster_read.read_cluster``'s dict."""
    facts = ClusterFacts(server=str(raw.get("server", "")), errors=dict(raw.get("errors") or {}))
    version = raw.get("version")
    if isinstance(version, dict):
        facts.version = str(version.get("gitVersion") or f"v{version.get('major', '?')}.{version.get('minor', '?')}")
    apis = raw.get("apis")
    if isinstance(apis, dict):
        facts.groups = frozenset(str(g.get("name")) for g in _list(apis.get("groups")) if isinstance(g, dict))
    if raw.get("nodes") is not None:
        facts.nodes = sorted((_node(n) for n in _list(raw["nodes"]) if isinstance(n, dict)), key=lambda n: n.name)
    if raw.get("daemonsets") is not None:
        facts.daemonsets = [_workload(d, "DaemonSet") for d in _list(raw["daemonsets"]) if isinstance(d, dict)]
    if raw.get("pods") is not None:
        facts.pods = [_workload(p, "Pod") for p in _list(raw["pods"]) if isinstance(p, dict)]
    config = raw.get("kube_proxy_config")
    if isinstance(config, dict):
        facts.proxy_config_found = True
        facts.proxy_config = {str(k): str(v) for k, v in _dict(config.get("data")).items()}
    elif "kube_proxy_config" not in facts.errors:
        facts.proxy_config = {}
    ippools = raw.get("ippools")
    if isinstance(ippools, dict):
        facts.pools_source = str(ippools.get("group", ""))
        facts.pools = []
        for obj in _list(ippools.get("items")):
            spec = _dict(_dict(obj).get("spec"))
            if isinstance(spec.get("cidr"), str):
                facts.pools.append(Pool(str(_dict(obj.get("metadata")).get("name", "?")), spec["cidr"],
                                        bool(spec.get("disabled"))))
    elif "ippools" not in facts.errors:
        facts.pools = []
    facts.service = raw.get("kubernetes_service") if isinstance(raw.get("kubernetes_service"), dict) else None
    facts.endpoints = raw.get("kubernetes_endpoints") if isinstance(raw.get("kubernetes_endpoints"), dict) else None
    return facts
