"""The responder as the DaemonSet confines it, for real: only the capabilities the manifest
adds (NET_RAW, NET_ADMIN; the bounding set holds nothing else), no new privileges, a read-only
root filesystem with a tmpfs on the manifest's emptyDir mounts, listening on TCP at the node's
address. The mesh over those responders gives the demo scenario's answer, and the kubelet's
probe paths answer without a token."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import cells_of, stop_processes

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
NETPROBE = [sys.executable, "-m", "netprobe"]
HOSTS = {"cp1": "198.18.0.10", "node1": "198.18.0.11", "node2": "198.18.0.12"}  # scenarios/demo.yaml
ROLES = {"cp1": ["node", "apiserver", "etcd"], "node1": ["node", "typha"], "node2": ["node"]}


def daemonset_container() -> tuple[dict, dict]:
    ds = yaml.safe_load((REPO / "deploy" / "kubernetes" / "daemonset.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def confined(ns: str, argv: list[str]) -> list[str]:
    """argv run in ``ns`` the way the DaemonSet's securityContext runs it."""
    pod, c = daemonset_container()
    sc = c["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    caps = ",".join(f"+{cap.lower()}" for cap in sc["capabilities"]["add"])
    emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    # a tmpfs over a path that holds this checkout or its interpreter (a clone under /tmp) would
    # hide netprobe itself: in the image those live elsewhere, so such a mount is left out here
    ours = (str(REPO), str(Path(sys.executable).parent))
    mounts = [m["mountPath"] for m in c["volumeMounts"] if m["name"] in emptydirs]
    tmpfs = " && ".join(f"mount -t tmpfs -o size=16m tmpfs {path}" for path in mounts
                        if not any(o == path or o.startswith(path.rstrip("/") + "/") for o in ours)) or "true"
    ro = "mount -o remount,bind,ro /" if sc["readOnlyRootFilesystem"] else "true"
    nnp = "--no-new-privs" if sc["allowPrivilegeEscalation"] is False else ""
    inner = " ".join(f"'{a}'" for a in argv)
    script = f"{ro} && {tmpfs} && exec setpriv {nnp} --bounding-set=-all,{caps} --inh-caps=-all {inner}"
    # a private mount namespace: the read-only remount is this process's view only
    return ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script]


@pytest.fixture
def confined_lab(tmp_path):
    name = f"k8s-r{uuid.uuid4().hex[:5]}"
    procs: list[subprocess.Popen] = []
    try:
        up = subprocess.run([*NETPROBE, "lab", "up", "demo", "--name", name], capture_output=True, text=True,
                            timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        token = f"/run/netprobe/lab/{name}/token"
        for host, addr in HOSTS.items():
            log = tmp_path / f"{host}.log"
            procs.append(subprocess.Popen(
                confined(f"nplab-{name}.{host}", [*NETPROBE, "responder", "--listen", f"tcp://{addr}:7879",
                                                  "--name", host, "--token-file", token]),
                stdout=subprocess.DEVNULL, stderr=open(log, "w")))
        deadline = time.monotonic() + 30
        while not all("ready" in (tmp_path / f"{h}.log").read_text() for h in HOSTS):
            logs = "".join((tmp_path / f"{h}.log").read_text() for h in HOSTS)
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), logs
            time.sleep(0.2)
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(yaml.safe_dump({"token_file": token, "hosts": [
            {"name": h, "address": a, "roles": ROLES[h]} for h, a in HOSTS.items()]}))
        yield name, inventory, procs
    finally:
        stop_processes(procs, grace=10)
        subprocess.run([*NETPROBE, "lab", "down", name], capture_output=True, timeout=120)


def in_ns(name: str, host: str, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", f"nplab-{name}.{host}", *argv], capture_output=True, text=True,
                          timeout=60)


def test_confined_responders_answer_the_mesh_and_the_probes(confined_lab):
    name, inventory, procs = confined_lab
    # the confinement is real: the responder's effective set is exactly NET_RAW+NET_ADMIN (bits 12, 13)
    for p in procs:
        status = Path(f"/proc/{p.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == (1 << 12) | (1 << 13), fields["CapEff"]
        assert int(fields["CapBnd"], 16) == (1 << 12) | (1 << 13)
        assert fields["NoNewPrivs"].strip() == "1"
    mesh = in_ns(name, "cp1", [*NETPROBE, "mesh", "-i", str(inventory), "--format", "json", "--timeout", "0.5"])
    assert mesh.returncode == 1, mesh.stderr
    cells = cells_of(json.loads(mesh.stdout))
    assert json.loads(mesh.stdout)["errors"] == []
    problems = {(c["check"], c["src"], c["dst"]): (c["reach"], c["where"]) for c in cells if c["reach"] != "allowed"}
    assert problems == {("bgp", "node1", "node2"): ("blocked", "destination-ingress")}
    # what the kubelet's probes do: GET without a token, from the node (hostNetwork)
    fetch = ("import sys, urllib.request as u, urllib.error as e\n"
             "o = u.build_opener(u.ProxyHandler({}))\n"
             "for path in sys.argv[2:]:\n"
             "    try:\n"
             "        r = o.open(sys.argv[1] + path, timeout=5); print(path, r.status, r.read().decode())\n"
             "    except e.HTTPError as x:\n"
             "        print(path, x.code, x.read().decode())\n")
    got = in_ns(name, "node1", [sys.executable, "-c", fetch, "http://198.18.0.11:7879", "/healthz", "/readyz",
                                "/v1/health"])
    assert got.stdout.splitlines() == ['/healthz 200 {"status":"ok"}', '/readyz 200 {"status":"ready"}',
                                       '/v1/health 401 {"error":"unauthorized: no NetprobeHMAC signature"}'], got.stderr
