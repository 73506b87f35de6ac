"""A Kubernetes API server of recorded responses, on 127.0.0.1: enough of the API for the real
``kubernetes`` client to list nodes and typha pods and read the apiserver's endpoints and the
responder DaemonSet. Runs in-process (``FakeKubeAPI``) or as a script (``python
tests/fake_kube_api.py DIR PORT_FILE``) for tests that need it inside a network namespace.

Objects are JSON files in the API's own shape (tests/data/kube/ by default): nodes.json,
pods-NAMESPACE.json, endpoints-kubernetes.json, daemonset-NAME.json, version.json. The bearer
token must be ``recorded-token``, as the API would refuse a stranger.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

TOKEN = "recorded-token"
DATA = Path(__file__).resolve().parent / "data" / "kube"


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def matches(labels: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def write_kubeconfig(path: Path, url: str, *, context: str = "recorded") -> Path:
    """A kubeconfig whose current context talks to ``url`` with the recorded token."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "recorded", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": TOKEN}}],
        "contexts": [{"name": context, "context": {"cluster": "recorded", "user": "tester"}}],
    }))
    return path


def dead_api_kubeconfig(path: Path) -> tuple[Path, str]:
    """A kubeconfig whose API is a loopback port nobody listens on (bound, then released), and
    that API's URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    return write_kubeconfig(path, url), url


class FakeKubeAPI:
    def __init__(self, data: Path = DATA, *, host: str = "127.0.0.1", port: int = 0):
        self.data = Path(data)
        self.requests: list[str] = []
        self.refuse: dict[str, int] = {}  # path prefix -> status code to answer instead
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.requests.append(self.path)
                code, body = api.answer(self.path, self.headers.get("Authorization", ""))
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def load(self, name: str) -> dict | None:
        path = self.data / name
        return json.loads(path.read_text()) if path.exists() else None

    def answer(self, raw_path: str, auth: str) -> tuple[int, dict]:
        if auth != f"Bearer {TOKEN}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        url = urlsplit(raw_path)
        path, query = url.path, parse_qs(url.query)
        for prefix, code in self.refuse.items():
            if path.startswith(prefix):
                return code, status(code, "Forbidden", f"forbidden: {path}")
        if path == "/version":
            return 200, self.load("version.json")
        if path == "/api/v1/nodes":
            return 200, self.load("nodes.json")
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)/pods", path)
        if m:
            pods = self.load(f"pods-{m[1]}.json") or {"kind": "PodList", "apiVersion": "v1", "metadata": {},
                                                      "items": []}
            selector = query.get("labelSelector", [""])[0]
            pods["items"] = [p for p in pods["items"] if matches(p["metadata"].get("labels", {}), selector)]
            return 200, pods
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)/endpoints/([a-z0-9-]+)", path)
        if m:
            obj = self.load(f"endpoints-{m[2]}.json")
            if obj and obj["metadata"]["namespace"] == m[1]:
                return 200, obj
            return 404, status(404, "NotFound", f'endpoints "{m[2]}" not found')
        m = re.fullmatch(r"/apis/apps/v1/namespaces/([a-z0-9-]+)/daemonsets/([a-z0-9-]+)", path)
        if m:
            obj = self.load(f"daemonset-{m[2]}.json")
            if obj and obj["metadata"]["namespace"] == m[1]:
                return 200, obj
            return 404, status(404, "NotFound", f'daemonsets.apps "{m[2]}" not found')
        return 404, status(404, "NotFound", "the server could not find the requested resource")

    def kubeconfig(self, path: Path, *, context: str = "recorded") -> Path:
        return write_kubeconfig(path, self.url, context=context)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


if __name__ == "__main__":  # python tests/fake_kube_api.py DATA_DIR PORT_FILE
    api = FakeKubeAPI(Path(sys.argv[1]))
    Path(sys.argv[2]).write_text(str(api.port))
    api.server.serve_forever()
