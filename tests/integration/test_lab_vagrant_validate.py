"""The Vagrantfile validates under a real `vagrant` (installed by `make test`; skipped where it is
absent). Marker ``vagrant``: it runs the vagrant binary, which no unit test may."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.vagrant,
    pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed"),
]


def vagrant(tmp_path, *args, scenario=None):
    env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"),  # keeps .vagrant/ (and the token) out of the tree
        "VAGRANT_HOME": str(tmp_path / "home"),
    }
    if scenario:
        env["NETPROBE_SCENARIO"] = scenario
    return subprocess.run(["vagrant", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_vagrantfile_validates(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    for host in ("cp1", "node1", "node2"):  # the demo scenario's three hosts become three VMs
        assert f"==> {host}:" in proc.stdout
    token = tmp_path / "dot" / "netprobe-token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64


def test_vagrantfile_makes_routers_vms_too(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider", scenario="two-racks-router")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for machine in ("cp1", "node1", "node2", "node3", "core"):  # two racks and the core router
        assert f"==> {machine}:" in proc.stdout


def test_vagrantfile_refuses_an_unknown_scenario(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider", scenario="no-such-scenario")
    assert proc.returncode != 0
    assert "no scenario no-such-scenario" in proc.stdout + proc.stderr


def test_vagrantfile_refuses_a_dual_stack_scenario(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider", scenario="dual-stack-bgp6-blocked")
    assert proc.returncode != 0
    assert "dual stack (subnet6): the VMs get IPv4 only" in proc.stdout + proc.stderr
