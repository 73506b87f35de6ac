"""`netprobe preflight --kubeconfig` with the real kubernetes client against recorded API objects
served on 127.0.0.1 (tests/data/kube-cluster/): a cluster where every Kubernetes row holds
(exit 0); one with flannel beside Calico, a pool overlapping the service range, a node whose
kubelet says the CNI is not ready, kube-proxy in ipvs mode and the apiserver on 16443 (each line
right, exit 1); with --inventory both sections in one report; an unreachable API, a 403 and a
bad kubeconfig (one line each; exit 3, 3, 2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fake_kube_api import dead_api_kubeconfig
from fake_kube_cluster import CLUSTERS, FakeKubeCluster
from netprobe.commands.preflight import make_command
from netprobe.preflight.model import Item, Report, Status

NETPROBE = [sys.executable, "-m", "netprobe"]


def preflight(*args, timeout=60):
    return subprocess.run([*NETPROBE, "preflight", *args], capture_output=True, text=True, timeout=timeout)


def items_of(stdout: str) -> dict[str, dict]:
    return {i["id"]: i for i in json.loads(stdout)["items"]}


@pytest.fixture
def good():
    with FakeKubeCluster("good") as api:
        yield api


@pytest.fixture
def bad():
    with FakeKubeCluster("bad") as api:
        yield api


def test_a_cluster_where_everything_holds(good, tmp_path):
    proc = preflight("--kubeconfig", str(good.kubeconfig(tmp_path / "kc")), "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert data["schema"] == "netprobe.preflight-cluster/v1" and data["status"] == "ok"
    assert data["requirements"] == "current" and data["errors"] == {}
    items = items_of(proc.stdout)
    assert {i["status"] for i in items.values()} == {"ok"}, items
    assert {i["requirements"] for i in items.values()} == {"current"}
    assert set(items) == {"k8s:version", "k8s:cni", "k8s:providers", "k8s:kube-proxy", "k8s:service-range",
                          "k8s:pool:192.168.0.0/16", "k8s:pod-cidrs", "k8s:webhooks", "k8s:apiserver-port"}
    assert "v1.33.5 (/version)" in items["k8s:version"]["evidence"]
    assert items["k8s:kube-proxy"]["evidence"].startswith("iptables (the Linux default")
    assert "IPPool default-ipv4-ippool (crd.projectcalico.org/v1)" in items["k8s:pool:192.168.0.0/16"]["evidence"]
    assert "calico (DaemonSet calico-system/calico-node)" in items["k8s:providers"]["evidence"]
    assert items["k8s:apiserver-port"]["evidence"].startswith("6443 (endpoints default/kubernetes)")
    # the IPPools were asked in the group the cluster serves, and nothing was written
    assert "/apis/crd.projectcalico.org/v1/ippools" in good.requests
    assert all(r.startswith(("/api", "/version")) for r in good.requests)


def test_a_cluster_where_each_row_breaks(bad, tmp_path):
    proc = preflight("--kubeconfig", str(bad.kubeconfig(tmp_path / "kc")), "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    items = items_of(proc.stdout)
    status = {k: v["status"] for k, v in items.items()}
    assert status == {
        "k8s:version": "ok",                 # 1.34 is tested
        "k8s:cni": "fail",                   # node2's kubelet: cni plugin not initialized
        "k8s:providers": "fail",             # flannel alone beside calico-node
        "k8s:kube-proxy": "ok",              # ipvs, Kubernetes 1.34 >= 1.9.3
        "k8s:service-range": "ok",
        "k8s:pool:192.168.0.0/16": "ok",
        "k8s:pool:10.96.64.0/20": "fail",    # inside the service range
        "k8s:pod-cidrs": "ok",
        "k8s:webhooks": "ok",
        "k8s:apiserver-port": "warn",        # 16443, and no inventory to compare with
    }
    assert items["k8s:cni"]["evidence"].startswith("the kubelet reports the network plugin not ready on node2: ")
    assert "cni plugin not initialized" in items["k8s:cni"]["evidence"]
    assert "flannel (DaemonSet kube-flannel/kube-flannel-ds)" in items["k8s:providers"]["evidence"]
    assert "kube-flannel-ds-" not in items["k8s:providers"]["evidence"]  # its pods are not named again
    assert items["k8s:kube-proxy"]["evidence"].startswith("ipvs (mode in configmap kube-system/kube-proxy")
    assert ("10.96.64.0/20 (IPPool extra-pool (projectcalico.org/v3)) overlaps the service range 10.96.0.0/12"
            == items["k8s:pool:10.96.64.0/20"]["evidence"])
    assert "set apiserver_port: 16443 in the inventory" in items["k8s:apiserver-port"]["evidence"]
    assert "/apis/projectcalico.org/v3/ippools" in bad.requests  # the Calico API server's group first

    table = preflight("--kubeconfig", str(bad.kubeconfig(tmp_path / "kc")))
    assert table.returncode == 1
    for words in ("preflight cluster http://127.0.0.1", "requirements current", "✗ fail", "flannel",
                  "preflight FAIL: 6 ok, 3 fail, 1 warn"):
        assert words in table.stdout


def test_with_the_inventory_both_sections_one_exit_code(bad, tmp_path):
    """The inventory's apiserver_port (6443) against the cluster's real 16443 is a fail; the hosts'
    reports come through the (here injected) agent fetcher."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("apiserver_port: 6443\nhosts:\n  - {name: cp1, address: 192.0.2.10, roles: [node]}\n")
    asked = []

    def fetch(path, **options):
        asked.append(path)
        return {"cp1": Report((Item("kernel", "system", "kernel >= 3.10", Status.OK, "6.1.0"),), host="cp1")}

    kc = str(bad.kubeconfig(tmp_path / "kc"))
    result = CliRunner().invoke(make_command(fetch), ["--kubeconfig", kc, "--inventory", str(inventory),
                                                      "--format", "json"], standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == 1 and asked == [str(inventory)]
    data = json.loads(result.output)
    assert data["schema"] == "netprobe.preflight-hosts/v1" and data["status"] == "fail"
    assert list(data["hosts"]) == ["cp1"]
    port = {i["id"]: i for i in data["cluster"]["items"]}["k8s:apiserver-port"]
    assert port["status"] == "fail"
    assert "the inventory's apiserver_port is 6443" in port["evidence"]

    table = CliRunner().invoke(make_command(fetch), ["--kubeconfig", kc, "--inventory", str(inventory)],
                               standalone_mode=False)
    assert table.return_value == 1
    assert "cp1" in table.output and "preflight cluster http://127.0.0.1" in table.output

    # an agent that did not answer makes the whole run partial: 3, whatever the cluster said
    def dead(path, **options):
        return {"cp1": Report((Item("agent", "agent", "agent reachable", Status.UNKNOWN, "refused"),), host="cp1")}

    partial = CliRunner().invoke(make_command(dead), ["--kubeconfig", kc, "--inventory", str(inventory),
                                                      "--format", "json"], standalone_mode=False)
    assert partial.return_value == 3 and json.loads(partial.output)["status"] == "partial"


def test_unreachable_api_is_unknown_one_line_exit_3(tmp_path):
    kc, url = dead_api_kubeconfig(tmp_path / "kc")
    proc = preflight("--kubeconfig", str(kc), "--format", "json", timeout=30)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"cannot reach the Kubernetes API at {url}" in lines[0]
    data = json.loads(proc.stdout)
    assert data["status"] == "partial"
    assert [(i["id"], i["status"]) for i in data["items"]] == [("k8s:api", "unknown")]
    assert "refused" in data["items"][0]["evidence"].lower()


def test_a_403_makes_its_lines_unknown_one_line_exit_3(good, tmp_path):
    good.refuse["/api/v1/pods"] = 403
    proc = preflight("--kubeconfig", str(good.kubeconfig(tmp_path / "kc")), "--format", "json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"netprobe: cluster preflight is partial: the Kubernetes API at {good.url} refused to "
                     "list pods in all namespaces: 403 Forbidden"]
    status = {i["id"]: i["status"] for i in json.loads(proc.stdout)["items"]}
    assert status["k8s:providers"] == "unknown" and status["k8s:kube-proxy"] == "unknown"
    assert status["k8s:version"] == "ok" and status["k8s:cni"] == "ok"  # what was read still counts


def test_everything_refused_is_still_one_line(good, tmp_path):
    good.refuse["/"] = 403
    proc = preflight("--kubeconfig", str(good.kubeconfig(tmp_path / "kc")))
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "? unknown" in proc.stdout and "403 Forbidden" in proc.stdout


def test_no_calico_yet_takes_the_profile_default(tmp_path):
    """Before Calico is installed: no IPPool, no Calico group; the pool checked is the profile's
    default (or --pool-cidr), and kube-proxy missing altogether is said as such."""
    data = tmp_path / "cluster"
    shutil.copytree(CLUSTERS / "good", data)
    apis = json.loads((data / "apis.json").read_text())
    apis["groups"] = [g for g in apis["groups"] if "projectcalico" not in g["name"]]
    (data / "apis.json").write_text(json.dumps(apis))
    for name in ("ippools.json", "configmap-kube-system-kube-proxy.json"):
        (data / name).unlink()
    for name in ("daemonsets.json", "pods.json"):
        objs = json.loads((data / name).read_text())
        objs["items"] = [o for o in objs["items"] if "kube-proxy" not in o["metadata"]["name"]
                         and "calico" not in o["metadata"]["name"]]
        (data / name).write_text(json.dumps(objs))
    with FakeKubeCluster(data) as api:
        proc = preflight("--kubeconfig", str(api.kubeconfig(tmp_path / "kc")), "--format", "json",
                         "--profile", "canal", "--pool-cidr", "10.10.0.0/16")
    items = items_of(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert "--pool-cidr, no IPPool in the cluster" in items["k8s:pool:10.10.0.0/16"]["evidence"]
    assert items["k8s:kube-proxy"]["status"] == "warn"
    assert items["k8s:kube-proxy"]["evidence"].startswith("no kube-proxy")
    assert "no Calico workload found yet" in items["k8s:providers"]["evidence"]
    assert items["k8s:pod-cidrs"]["status"] == "warn"  # canal: pods get podCIDRs outside the pool
    assert not any("ippools" in r for r in api.requests)


@pytest.mark.parametrize(("args", "words"), [
    (["--kubeconfig", "{tmp}/absent"], "absent"),
    (["--kubeconfig", "{kc}", "--context", "nope"], "nope"),
    (["--in-cluster", "--kubeconfig", "{kc}"], "--in-cluster"),
    (["--kubeconfig", "{kc}", "--root", "/tmp"], "--root"),
    (["--kubeconfig", "{kc}", "--inventory", "{tmp}/absent-inventory.yaml"], "absent-inventory.yaml"),
])
def test_bad_input_is_one_line_exit_2(good, tmp_path, args, words):
    kc = good.kubeconfig(tmp_path / "kc")
    proc = preflight(*(a.format(tmp=tmp_path, kc=kc) for a in args))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and proc.stdout == ""
    assert good.requests == []  # nothing was asked of the API


def test_help_stays_free_of_kubernetes():
    code = ("import sys; from netprobe.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['preflight', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--kubeconfig' in r.output; "
            "print(','.join(m for m in ('kubernetes', 'yaml', 'rich', 'netprobe.preflight.rules_k8s') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_in_cluster_outside_a_pod_is_one_line_exit_2():
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    proc = subprocess.run([*NETPROBE, "preflight", "--in-cluster"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("netprobe: in-cluster config:") and len(proc.stderr.strip().splitlines()) == 1


def test_refused_ippools_and_a_garbled_version_are_partial(tmp_path):
    data = tmp_path / "cluster"
    shutil.copytree(CLUSTERS / "bad", data)
    (data / "version.json").write_text("[]")  # /version answering garbage is a failed read, not a fact
    with FakeKubeCluster(data) as api:
        api.refuse["/apis/projectcalico.org/v3/ippools"] = 403
        proc = preflight("--kubeconfig", str(api.kubeconfig(tmp_path / "kc")), "--format", "json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "partial" and set(data["errors"]) == {"version", "ippools"}
    items = items_of(proc.stdout)
    assert items["k8s:version"]["status"] == "unknown" and "list, not an object" in items["k8s:version"]["evidence"]
    assert items["k8s:pools"]["status"] == "unknown" and "403 Forbidden" in items["k8s:pools"]["evidence"]
    assert items["k8s:providers"]["status"] == "fail"  # what was read is still judged
    assert len(proc.stderr.strip().splitlines()) == 1
