"""Read a ClusterSnapshot through the official ``kubernetes`` client (kubeconfig or in-cluster).

Every failure is one line: a kubeconfig or context that doesn't load is a ``ConfigError``
(exit 2); an API that can't be reached or refuses us is a ``ClusterError`` (exit 3). The client
makes one attempt per request with a short timeout: a coordinator re-reads the cluster every run
and must not hang on a dead API.
"""

from __future__ import annotations

import logging

from netprobe.core.inventory import DEFAULT_AGENT_PORT
from netprobe.errors import ConfigError, NetprobeError
from netprobe.kube.build import CALICO_NAMESPACES, TYPHA_SELECTOR, ClusterSnapshot

RESPONDER_DAEMONSET = "netprobe-responder"
AGENT_PORT_NAME = "control"
TIMEOUT = (5, 20)  # connect, read (seconds)


class ClusterError(NetprobeError):
    """The Kubernetes API could not be reached, or refused a request."""

    exit_code = 3


def api_client(kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = False):
    """A ``kubernetes.client.ApiClient``: in-cluster (service account) or from a kubeconfig."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    logging.getLogger("urllib3").setLevel(logging.ERROR)  # no "Retrying ..." lines: we say it once
    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration,
                                    persist_config=False)
    except ConfigException as exc:
        where = "in-cluster config" if in_cluster else (kubeconfig or "kubeconfig")
        raise ConfigError(_one_line(str(exc)), file=where) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:  # unreadable/garbled file
        raise ConfigError(_one_line(f"{type(exc).__name__}: {exc}"), file=kubeconfig or "kubeconfig") from None
    configuration.retries = 0
    return client.ApiClient(configuration)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _describe(exc: BaseException, server: str, what: str) -> str:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        reason = exc.reason or ""
        return f"the Kubernetes API at {server} refused to {what}: {exc.status} {reason}".rstrip()
    import urllib3.exceptions as u3

    cause = exc
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, u3.NewConnectionError):
        detail = str(cause).rsplit("] ", 1)[-1] if "] " in str(cause) else "connection failed"
    elif isinstance(cause, u3.TimeoutError):
        detail = "timed out"
    elif isinstance(cause, u3.SSLError):
        detail = f"TLS: {cause}"
    else:
        detail = f"{type(cause).__name__}: {cause}"
    return _one_line(f"cannot reach the Kubernetes API at {server} ({what}): {detail}")


def read_snapshot(api, *, calico_namespaces=CALICO_NAMESPACES, agent_port: int | None = None,
                  agent_namespace: str = "netprobe") -> tuple[ClusterSnapshot, list[str]]:
    """Nodes, calico-typha pods, default/kubernetes endpoints and the responder DaemonSet's port.

    Returns the snapshot (API-shaped dicts) and notes about what was assumed.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    server = api.configuration.host
    notes: list[str] = []
    plain = api.sanitize_for_serialization

    def call(what, fn, *args, **kwargs):
        try:
            return fn(*args, _request_timeout=TIMEOUT, **kwargs)
        except ApiException:
            raise
        except Exception as exc:  # urllib3 errors, bad TLS, a garbled answer: one line each
            raise ClusterError(_describe(exc, server, what)) from None

    def required(what, fn, *args, **kwargs):
        try:
            return call(what, fn, *args, **kwargs)
        except ApiException as exc:
            raise ClusterError(_describe(exc, server, what)) from None

    nodes = [plain(n) for n in required("list nodes", core.list_node).items]
    pods = []
    for ns in calico_namespaces:
        pods += [plain(p) for p in required(f"list pods in {ns}", core.list_namespaced_pod, ns,
                                            label_selector=TYPHA_SELECTOR).items]
    try:
        endpoints = plain(call("read endpoints default/kubernetes", core.read_namespaced_endpoints,
                               "kubernetes", "default"))
    except ApiException as exc:
        endpoints = None
        notes.append(f"cannot read endpoints default/kubernetes ({exc.status} {exc.reason})")
    if agent_port is None:
        agent_port = DEFAULT_AGENT_PORT
        try:
            ds = plain(call(f"read daemonset {agent_namespace}/{RESPONDER_DAEMONSET}",
                            client.AppsV1Api(api).read_namespaced_daemon_set, RESPONDER_DAEMONSET, agent_namespace))
            found = daemonset_port(ds)
            if found is None:
                notes.append(f"daemonset {agent_namespace}/{RESPONDER_DAEMONSET} names no port {AGENT_PORT_NAME!r}: "
                             f"agents assumed on port {agent_port}")
            else:
                agent_port = found
        except ApiException as exc:
            notes.append(f"no daemonset {agent_namespace}/{RESPONDER_DAEMONSET} readable ({exc.status} {exc.reason}): "
                         f"agents assumed on port {agent_port}")
    return ClusterSnapshot(nodes, pods, endpoints, agent_port, server), notes


def daemonset_port(ds: dict) -> int | None:
    """The responder's control port in a DaemonSet: hostPort (else containerPort) named ``control``."""
    for container in ((ds.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == AGENT_PORT_NAME:
                return port.get("hostPort") or port.get("containerPort")
    return None


def snapshot_from_cluster(kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = False,
                          calico_namespaces=CALICO_NAMESPACES, agent_port: int | None = None,
                          agent_namespace: str = "netprobe") -> tuple[ClusterSnapshot, list[str]]:
    api = api_client(kubeconfig, context, in_cluster=in_cluster)
    with api:
        return read_snapshot(api, calico_namespaces=calico_namespaces, agent_port=agent_port,
                             agent_namespace=agent_namespace)


def build_from_cluster(settings: dict, token_file: str | None = None):
    """Ask the API and build the inventory: (BuiltInventory with every note, API server URL).

    ``settings``: kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace.
    """
    from netprobe.kube.build import build_inventory

    snap, notes = snapshot_from_cluster(**settings)
    built = build_inventory(snap, token_file=token_file)
    built.notes[:0] = notes
    return built, snap.server
