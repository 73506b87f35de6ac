"""Read what cluster preflight judges, through the official ``kubernetes`` client: the version,
nodes, every DaemonSet and pod, kube-proxy's ConfigMap, the served API groups, Calico's
IPPools and the ``default/kubernetes`` Service and Endpoints.

No judgement here (that is ``netprobe.preflight.rules_k8s``, which never imports this package):
the answer is a plain dict of the objects exactly as the API returned them (JSON, camelCase),
so the rules are table-tested with recorded objects and no client at all.

Failures, kept apart so the report can say which lines they cost:

- the API cannot be reached (refused, timed out, TLS): ``ClusterError`` at the first request,
  one line; nothing else is tried, so a dead API costs one timeout, not eleven;
- a request refused (401/403, or any other non-404 status): recorded in ``errors`` under the
  object's key, one line each; the other reads go on;
- 404: the object does not exist (no kube-proxy ConfigMap, no Calico API group), recorded as
  ``None`` and no error: that is a fact, not a failure.
"""

from __future__ import annotations

import json

from netprobe.kube.client import TIMEOUT, ClusterError, _describe, _one_line

# key -> what the request does, in the words an error line uses
WHAT = {
    "version": "read /version",
    "apis": "list API groups (/apis)",
    "nodes": "list nodes",
    "daemonsets": "list daemonsets in all namespaces",
    "pods": "list pods in all namespaces",
    "kube_proxy_config": "read configmap kube-system/kube-proxy",
    "ippools": "list Calico IPPools",
    "kubernetes_service": "read service default/kubernetes",
    "kubernetes_endpoints": "read endpoints default/kubernetes",
}
MUST_EXIST = {"version", "apis", "nodes", "daemonsets", "pods"}  # a 404 here is no fact but a failure
CALICO_GROUPS = ("projectcalico.org", "crd.projectcalico.org")  # the Calico API server's, else the CRDs'


def read_cluster(api) -> dict:
    """The raw cluster: ``{"server", "errors": {key: line}, KEY: object | None, ...}`` with the
    keys of ``WHAT``; lists are the API's ``items``; ``ippools`` is ``{"group", "items"}`` (None:
    no Calico API group is served). Raises ``ClusterError`` when the API cannot be reached."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    server = api.configuration.host
    raw: dict = {"server": server, "errors": {}}

    def get(key, fn, *args, **kwargs):
        """The JSON the API answered; None on 404 or a refusal (recorded in errors)."""
        try:
            response = fn(*args, _request_timeout=TIMEOUT, _preload_content=False, **kwargs)
            data = json.loads(response.data)
            if not isinstance(data, dict):
                raw["errors"][key] = (f"the Kubernetes API at {server} answered {WHAT[key]} with "
                                      f"{type(data).__name__}, not an object")
                return None
            return data
        except ApiException as exc:
            if exc.status == 404 and key not in MUST_EXIST:
                return None
            if exc.status == 0:  # the client's own wrapper of a TLS failure: unreachable
                raise ClusterError(_one_line(f"cannot reach the Kubernetes API at {server} ({WHAT[key]}): "
                                             f"{exc.reason}")) from None
            raw["errors"][key] = _describe(exc, server, WHAT[key])
            return None
        except ValueError as exc:  # not JSON: not an API server we can read
            raw["errors"][key] = f"the Kubernetes API at {server} answered {WHAT[key]} with no JSON ({exc})"
            return None
        except Exception as exc:  # urllib3: refused, timed out, TLS; one line, and stop here
            raise ClusterError(_describe(exc, server, WHAT[key])) from None

    def items(key, fn, *args, **kwargs):
        data = get(key, fn, *args, **kwargs)
        return None if data is None else list(data.get("items") or [])

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    raw["version"] = get("version", client.VersionApi(api).get_code)
    raw["apis"] = get("apis", client.ApisApi(api).get_api_versions)
    raw["nodes"] = items("nodes", core.list_node)
    raw["daemonsets"] = items("daemonsets", apps.list_daemon_set_for_all_namespaces)
    raw["pods"] = items("pods", core.list_pod_for_all_namespaces)
    raw["kube_proxy_config"] = get("kube_proxy_config", core.read_namespaced_config_map, "kube-proxy", "kube-system")
    raw["kubernetes_service"] = get("kubernetes_service", core.read_namespaced_service, "kubernetes", "default")
    raw["kubernetes_endpoints"] = get("kubernetes_endpoints", core.read_namespaced_endpoints, "kubernetes",
                                      "default")
    raw["ippools"] = None
    group_version = calico_group_version(raw["apis"])
    if group_version is not None:
        group, version = group_version.split("/")
        pools = items("ippools", client.CustomObjectsApi(api).list_cluster_custom_object, group, version, "ippools")
        if pools is not None:
            raw["ippools"] = {"group": group_version, "items": pools}
    elif "apis" in raw["errors"]:
        raw["errors"]["ippools"] = f"not read: {WHAT['apis']} failed"
    return raw


def calico_group_version(apis: dict | None) -> str | None:
    """``projectcalico.org/v3`` when the Calico API server (or v3 CRDs) serve it, else
    ``crd.projectcalico.org/v1``; None when neither group is served."""
    served = {g.get("name"): g for g in (apis or {}).get("groups") or [] if isinstance(g, dict)}
    for name in CALICO_GROUPS:
        group = served.get(name)
        if group:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            versions = [v.get("groupVersion") for v in group.get("versions") or [] if v.get("groupVersion")]
            if preferred or versions:
                return preferred or versions[0]
    return None


def cluster_from_config(kubeconfig: str | None = None, context: str | None = None, *,
                        in_cluster: bool = False) -> dict:
    """Load the kubeconfig (``ConfigError``, exit 2, on a bad one) and read the cluster."""
    from netprobe.kube.client import api_client

    api = api_client(kubeconfig, context, in_cluster=in_cluster)
    with api:
        return read_cluster(api)
