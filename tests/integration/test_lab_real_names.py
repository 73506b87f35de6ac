"""A lab whose hosts carry real node names (ip-198-18-5-99.eu-west-1.compute.internal) comes
up, probes and goes down: namespaces, sockets and logs use the derived short names."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "real-node-names.yaml"


def test_lab_run_with_real_node_names():
    name = f"hbreal-{uuid.uuid4().hex[:6]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "netprobe", "lab", "run", str(SCENARIO), "--name", name],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ip-198-18-5-99.eu-west-1.compute.internal" in proc.stdout
        assert "expectation holds" in proc.stdout
    finally:
        subprocess.run([sys.executable, "-m", "netprobe", "lab", "down", name], capture_output=True, timeout=60)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"nplab-{name}." not in left


def test_the_labs_own_listeners_pass_the_port_check():
    """BGP and Typha ports held by the lab's listener are the services the roles imply."""
    import json

    name = f"hbpf-{uuid.uuid4().hex[:6]}"
    netprobe = [sys.executable, "-m", "netprobe"]
    try:
        up = subprocess.run([*netprobe, "lab", "up", str(SCENARIO), "--name", name, "--responders"],
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        proc = subprocess.run([*netprobe, "preflight", "--inventory", f"/run/netprobe/lab/{name}/inventory.yaml",
                               "--format", "json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode in (0, 1), proc.stderr
        hosts = json.loads(proc.stdout)["hosts"]
        for host, report in hosts.items():
            items = {i["id"]: i for i in report["items"]}
            assert items["port:179/tcp"]["status"] == "ok", (host, items["port:179/tcp"])
            assert "lab listener" in items["port:179/tcp"]["evidence"]
        typha = {i["id"]: i for i in hosts["ip-198-18-5-100.eu-west-1.compute.internal"]["items"]}["port:5473/tcp"]
        assert typha["status"] == "ok" and "lab listener" in typha["evidence"]
    finally:
        subprocess.run([*netprobe, "lab", "down", name], capture_output=True, timeout=60)
