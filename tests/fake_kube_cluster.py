"""The recorded Kubernetes API of ``fake_kube_api`` (127.0.0.1 only), grown by what cluster
preflight reads: every DaemonSet and pod, a ConfigMap, a Service, the API group list and
Calico's IPPools (in the group ``apis.json`` says is served).

Extra files in the data directory (the API's own shapes): daemonsets.json (a DaemonSetList),
pods.json (a PodList of all namespaces; namespaced requests are filtered from it),
configmap-NS-NAME.json, service-NAME.json (namespace in its metadata), apis.json (an
APIGroupList), ippools.json (an IPPoolList). A file that is absent is a 404, as the API says
for an object that does not exist. ``refuse`` (path prefix -> status) works as in the base.
"""

from __future__ import annotations

import re
from pathlib import Path

from fake_kube_api import FakeKubeAPI, matches, status

CLUSTERS = Path(__file__).resolve().parent / "data" / "kube-cluster"


class FakeKubeCluster(FakeKubeAPI):
    def __init__(self, name_or_dir: str | Path = "good", **kwargs):
        data = Path(name_or_dir)
        super().__init__(data if data.is_absolute() else CLUSTERS / data, **kwargs)

    def answer(self, raw_path: str, auth: str) -> tuple[int, dict]:
        from urllib.parse import parse_qs, urlsplit

        if auth != "Bearer recorded-token" or any(raw_path.startswith(p) for p in self.refuse):
            return super().answer(raw_path, auth)
        url = urlsplit(raw_path)
        path, query = url.path.rstrip("/") or "/", parse_qs(url.query)
        if path != url.path:  # the client asks for /version/ and /apis/, as the API allows
            raw_path = path + (f"?{url.query}" if url.query else "")
        if path == "/apis":
            return self._found(self.load("apis.json"), "the server could not find the requested resource")
        if path == "/apis/apps/v1/daemonsets":
            return self._found(self.load("daemonsets.json"), "daemonsets not found")
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([a-z0-9-]+)/daemonsets/([a-z0-9-]+)", path)
        if m and self.load("daemonsets.json") is not None:
            found = [d for d in self.load("daemonsets.json")["items"]
                     if (d["metadata"]["namespace"], d["metadata"]["name"]) == (m[1], m[2])]
            return self._found(found[0] if found else None, f'daemonsets.apps "{m[2]}" not found')
        m = re.fullmatch(r"/api/v1(?:/namespaces/([a-z0-9-]+))?/pods", path)
        if m and self.load("pods.json") is not None:
            pods = self.load("pods.json")
            selector = query.get("labelSelector", [""])[0]
            pods["items"] = [p for p in pods["items"] if (m[1] is None or p["metadata"]["namespace"] == m[1])
                             and matches(p["metadata"].get("labels", {}), selector)]
            return 200, pods
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)/configmaps/([a-z0-9-]+)", path)
        if m:
            return self._found(self.load(f"configmap-{m[1]}-{m[2]}.json"), f'configmaps "{m[2]}" not found')
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)/services/([a-z0-9-]+)", path)
        if m:
            obj = self.load(f"service-{m[2]}.json")
            return self._found(obj if obj and obj["metadata"]["namespace"] == m[1] else None,
                               f'services "{m[2]}" not found')
        m = re.fullmatch(r"/apis/([a-z.]+)/(v[0-9a-z]+)/ippools", path)
        if m:
            pools = self.load("ippools.json")
            served = {v["groupVersion"] for g in (self.load("apis.json") or {}).get("groups", []) for v in g["versions"]}
            if pools is None or f"{m[1]}/{m[2]}" not in served:
                return 404, status(404, "NotFound", "the server could not find the requested resource")
            return 200, pools
        return super().answer(raw_path, auth)

    @staticmethod
    def _found(obj, message: str) -> tuple[int, dict]:
        return (200, obj) if obj is not None else (404, status(404, "NotFound", message))
