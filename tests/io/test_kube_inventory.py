"""`netprobe inventory` with the real kubernetes client against recorded API responses served
on 127.0.0.1: roles from labels, endpoints and typha pods, the DaemonSet's port, what is left
out and why, and one-line errors (exit 2 for a bad kubeconfig/context, 3 for an API that can't
be reached or refuses)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from fake_kube_api import FakeKubeAPI, dead_api_kubeconfig
from netprobe.config import load_inventory

NETPROBE = [sys.executable, "-m", "netprobe"]


def run(*args, env=None, timeout=60):
    return subprocess.run([*NETPROBE, "inventory", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def api():
    with FakeKubeAPI() as server:
        yield server


def test_inventory_from_recorded_cluster(api, tmp_path):
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    out = tmp_path / "inventory.yaml"
    proc = run("--kubeconfig", str(kubeconfig), "--token-file", "/etc/netprobe/token/token", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert list(hosts) == ["cp1", "node1", "node2", "v6only"]  # sorted; edge1 (no InternalIP) left out
    assert hosts["cp1"]["roles"] == ["node", "apiserver", "etcd"]
    assert hosts["node1"]["roles"] == ["node", "typha"]      # the Running typha pod
    assert hosts["node2"]["roles"] == ["node"]               # a Pending typha pod does not count
    assert hosts["node2"]["address"] == "192.0.2.12"         # InternalIP, not ExternalIP
    assert doc["apiserver_port"] == 16443                     # the endpoints' real port
    assert hosts["node1"]["agent"] == "tcp://192.0.2.11:17879"  # the DaemonSet's control port
    # dual stack: the IPv6 InternalIP is address6; an IPv6-only node's agent is at its IPv6 address
    assert (hosts["node1"]["address"], hosts["node1"]["address6"]) == ("192.0.2.11", "2001:db8::11")
    assert hosts["v6only"]["address"] == "2001:db8::50" and "address6" not in hosts["v6only"]
    assert hosts["v6only"]["agent"] == "tcp://[2001:db8::50]:17879"
    assert doc["token_file"] == "/etc/netprobe/token/token"
    # what was left out is said, one line each, on stderr and in the file
    for said in ("node edge1 skipped: no InternalIP", "apiserver endpoint 198.51.100.5 is no node's address"):
        assert said in proc.stderr
        assert said in out.read_text()
    inventory = load_inventory(str(out))  # the file netprobe mesh reads
    assert inventory.apiserver_port == 16443
    assert inventory.host("cp1").roles == frozenset({"node", "apiserver", "etcd"})
    assert inventory.host("node1").address6 == "2001:db8::11" and inventory.host("v6only").address4 is None
    # the client asked with the typha label selector in both Calico namespaces
    pod_requests = [r for r in api.requests if "/pods" in r]
    assert len(pod_requests) == 2
    assert all("labelSelector=k8s-app%3Dcalico-typha" in r for r in pod_requests)


def test_stdout_and_agent_port_override(api, tmp_path):
    proc = run("--kubeconfig", str(api.kubeconfig(tmp_path / "kc")), "--agent-port", "7879")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout)
    assert {h["agent"] for h in doc["hosts"]} == {f"tcp://192.0.2.1{i}:7879" for i in range(3)} | {
        "tcp://[2001:db8::50]:7879"}
    assert not any("daemonsets" in r for r in api.requests)  # a given port needs no lookup


def test_missing_daemonset_falls_back_to_default_port(api, tmp_path):
    proc = run("--kubeconfig", str(api.kubeconfig(tmp_path / "kc")), "--agent-namespace", "elsewhere")
    assert proc.returncode == 0, proc.stderr
    assert "agents assumed on port 7879" in proc.stderr
    assert all(h["agent"].endswith(":7879") for h in yaml.safe_load(proc.stdout)["hosts"])


def test_context_is_chosen(api, tmp_path):
    kc = api.kubeconfig(tmp_path / "kc", context="prod")
    assert run("--kubeconfig", str(kc), "--context", "prod").returncode == 0
    proc = run("--kubeconfig", str(kc), "--context", "nope")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nope" in proc.stderr


def test_unreachable_api_is_one_line_exit_3(tmp_path):
    kc, url = dead_api_kubeconfig(tmp_path / "kc")
    proc = run("--kubeconfig", str(kc), timeout=30)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"cannot reach the Kubernetes API at {url}" in lines[0]
    assert "refused" in lines[0].lower()


def test_refused_by_rbac_is_one_line_exit_3(api, tmp_path):
    api.refuse["/api/v1/nodes"] = 403
    proc = run("--kubeconfig", str(api.kubeconfig(tmp_path / "kc")))
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [f"netprobe: the Kubernetes API at {api.url} refused to list nodes: "
                                                "403 Forbidden"]


def test_bad_token_is_exit_3(api, tmp_path):
    kc = api.kubeconfig(tmp_path / "kc")
    kc.write_text(kc.read_text().replace("recorded-token", "stranger"))
    proc = run("--kubeconfig", str(kc))
    assert proc.returncode == 3
    assert "401 Unauthorized" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_missing_kubeconfig_is_exit_2(tmp_path):
    proc = run("--kubeconfig", str(tmp_path / "absent"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_in_cluster_outside_a_cluster_is_one_line_exit_2():
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    proc = run("--in-cluster", env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "in-cluster config" in proc.stderr


def test_in_cluster_is_the_default_inside_a_pod(tmp_path):
    """KUBERNETES_SERVICE_HOST set and no --kubeconfig: the service account is used (here: absent)."""
    import os

    env = {**os.environ, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}
    proc = run(env=env)
    assert proc.returncode == 2
    assert "in-cluster config" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
