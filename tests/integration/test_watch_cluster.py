"""Cluster mode end to end, inside a lab: responders on TCP at the nodes' addresses (as the
DaemonSet runs them), a Kubernetes API of recorded objects whose nodes are the lab's hosts,
`netprobe inventory` from it feeding a real `netprobe mesh`, and `netprobe watch --kubeconfig`
re-reading the cluster every run: when calico-typha moves to node2, whose firewall has no
Typha rule, the typha column moves and the new flows show blocked at node2's ingress.

Everything runs in the lab's cp1 namespace (the API and the watch on its loopback; the
responders on the lab segment): nothing touches the root namespace's network."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import cells_of

from fake_kube_api import write_kubeconfig

pytestmark = pytest.mark.netns

TESTS = Path(__file__).resolve().parents[1]
PY = sys.executable
NETPROBE = [PY, "-m", "netprobe"]
HOSTS = {"cp1": "198.18.0.10", "node1": "198.18.0.11", "node2": "198.18.0.12"}  # scenarios/demo.yaml
INTERVAL = 2.0


def node(name: str, addr: str, control_plane: bool = False) -> dict:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {"metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}]}}


def typha_pods(on: str) -> dict:
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [{
        "metadata": {"name": "calico-typha-5b8f7c9d6-abcde", "namespace": "calico-system",
                     "labels": {"k8s-app": "calico-typha"}},
        "spec": {"nodeName": on, "hostNetwork": True, "containers": [{"name": "calico-typha", "image": "calico/typha"}]},
        "status": {"phase": "Running", "hostIP": HOSTS[on]}}]}


def write_cluster(data: Path, typha_on: str) -> None:
    data.mkdir(exist_ok=True)
    (data / "nodes.json").write_text(json.dumps({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
        node(n, a, control_plane=(n == "cp1")) for n, a in HOSTS.items()]}))
    (data / "endpoints-kubernetes.json").write_text(json.dumps({
        "kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": HOSTS["cp1"]}], "ports": [{"name": "https", "port": 6443,
                                                                       "protocol": "TCP"}]}]}))
    (data / "version.json").write_text(json.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.4"}))
    tmp = data / "pods-calico-system.json.new"
    tmp.write_text(json.dumps(typha_pods(typha_on)))
    tmp.replace(data / "pods-calico-system.json")  # atomic: the API never serves half a file


def wait_for(what, fn, timeout, every=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last})")


class Lab:
    def __init__(self, name: str, tmp: Path):
        self.name, self.tmp = name, tmp
        self.procs: list[subprocess.Popen] = []

    def ns(self, host: str) -> str:
        return f"nplab-{self.name}.{host}"

    def spawn(self, host: str, argv: list[str], log: str) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], stdout=subprocess.DEVNULL,
                                stderr=open(self.tmp / log, "w"))
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True, text=True,
                              timeout=timeout)

    def fetch(self, url: str) -> str:
        """GET from inside cp1's namespace (where the watch listens on loopback)."""
        proc = self.run("cp1", [PY, "-c", "import sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); "
                                          "sys.stdout.write(o.open(sys.argv[1], timeout=5).read().decode())",
                                url], timeout=20)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def log(self, name: str) -> str:
        return (self.tmp / name).read_text()


@pytest.fixture
def cluster_lab(tmp_path):
    name = f"k8s-c{uuid.uuid4().hex[:5]}"
    lab = Lab(name, tmp_path)
    try:
        up = subprocess.run([*NETPROBE, "lab", "up", "demo", "--name", name], capture_output=True, text=True,
                            timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        lab.token = f"/run/netprobe/lab/{name}/token"
        for host, addr in HOSTS.items():  # the DaemonSet's way: TCP on the node's address, port 7879
            lab.spawn(host, [*NETPROBE, "responder", "--listen", f"tcp://{addr}:7879", "--name", host,
                             "--token-file", lab.token], f"responder-{host}.log")
        for host in HOSTS:
            wait_for(f"{host}'s responder", lambda h=host: "ready" in lab.log(f"responder-{h}.log"), 30)
        lab.data = tmp_path / "kube"
        write_cluster(lab.data, typha_on="node1")
        port_file = tmp_path / "api.port"
        lab.spawn("cp1", [PY, str(TESTS / "fake_kube_api.py"), str(lab.data), str(port_file)], "api.log")
        port = int(wait_for("the recorded API", lambda: port_file.exists() and port_file.read_text().strip(), 20))
        lab.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
        yield lab
    finally:
        for p in lab.procs:
            if p.poll() is None:
                p.terminate()
        for p in lab.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([*NETPROBE, "lab", "down", name], capture_output=True, timeout=120)


def test_inventory_from_the_cluster_drives_mesh_and_watch_follows_typha(cluster_lab):
    lab = cluster_lab
    inventory = lab.tmp / "inventory.yaml"
    made = lab.run("cp1", [*NETPROBE, "inventory", "--kubeconfig", str(lab.kubeconfig), "--token-file", lab.token,
                           "-o", str(inventory)])
    assert made.returncode == 0, made.stderr
    text = inventory.read_text()
    assert "roles: [node, apiserver, etcd]" in text and "roles: [node, typha]" in text
    assert "agent: tcp://198.18.0.12:7879" in text
    mesh = lab.run("cp1", [*NETPROBE, "mesh", "-i", str(inventory), "--format", "json", "--timeout", "0.5"])
    assert mesh.returncode == 1, mesh.stderr  # one cell blocked, as the demo scenario says
    cells = {(c["check"], c["src"], c["dst"]): c for c in cells_of(json.loads(mesh.stdout))}
    problems = {k: (c["reach"], c["where"]) for k, c in cells.items() if c["reach"] != "allowed"}
    assert problems == {("bgp", "node1", "node2"): ("blocked", "destination-ingress")}
    assert {k[2] for k in cells if k[0] == "typha"} == {"node1"}

    lab.spawn("cp1", [*NETPROBE, "watch", "--kubeconfig", str(lab.kubeconfig), "--token-file", lab.token,
                      "--interval", str(INTERVAL), "--timeout", "0.5", "--listen", "tcp://127.0.0.1:0"], "watch.log")
    url = wait_for("watch to serve", lambda: re.search(r"serving on (http://127\.0\.0\.1:\d+)", lab.log("watch.log")),
                   30)[1]

    def result() -> dict:
        return json.loads(lab.fetch(f"{url}/result.json"))

    first = wait_for("the first run", result, 30)
    assert {c["dst"] for c in cells_of(first) if c["check"] == "typha"} == {"node1"}
    moved = time.monotonic()
    write_cluster(lab.data, typha_on="node2")  # the scheduler moved calico-typha

    def typha_moved():
        r = result()
        return r if {c["dst"] for c in cells_of(r) if c["check"] == "typha"} == {"node2"} else None

    after = wait_for("the typha column to move", typha_moved, 3 * INTERVAL + 5)
    print(f"\ntypha column moved {time.monotonic() - moved:.1f} s after the pod did")
    typha = {(c["src"], c["dst"]): (c["reach"], c["where"]) for c in cells_of(after) if c["check"] == "typha"}
    # node2's firewall never had a Typha rule: both new flows die at its INPUT
    assert typha == {("cp1", "node2"): ("blocked", "destination-ingress"),
                     ("node1", "node2"): ("blocked", "destination-ingress")}
    roles = {h["name"]: h["roles"] for h in after["hosts"]}
    assert "typha" in roles["node2"] and "typha" not in roles["node1"]
    live = json.loads(lab.fetch(f"{url}/live"))
    assert "typha cp1 -&gt; node2 is blocked at destination-ingress" in live["timeline"]
    metrics = lab.fetch(f"{url}/metrics")
    assert 'netprobe_flow_blocked{check="typha",dst="node2",family="4",src="cp1",where="destination-ingress"} 1.0' in metrics
