"""The Vagrantfile validates (vagrant is installed by `make test`; skipped only where it is absent)
and its provisioning uses the shipped unit and `netprobe lab firewall`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")


@needs_vagrant
def test_vagrantfile_validates(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    for host in ("cp1", "node1", "node2"):  # the demo scenario's three hosts become three VMs
        assert f"==> {host}:" in proc.stdout
    token = tmp_path / "dot" / "netprobe-token"
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64


@needs_vagrant
def test_vagrantfile_makes_routers_vms_too(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider", scenario="two-racks-router")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for machine in ("cp1", "node1", "node2", "node3", "core"):  # two racks and the core router
        assert f"==> {machine}:" in proc.stdout


@needs_vagrant
def test_vagrantfile_refuses_an_unknown_scenario(tmp_path):
    proc = vagrant(tmp_path, "validate", "--ignore-provider", scenario="no-such-scenario")
    assert proc.returncode != 0
    assert "no scenario no-such-scenario" in proc.stdout + proc.stderr


def test_vagrantfile_shape():
    text = (REPO / "Vagrantfile").read_text()
    assert "debian/bookworm64" in text
    assert 'provider "virtualbox"' in text and 'provider "libvirt"' in text
    assert "private_network" in text
    script = (REPO / "deploy" / "vagrant-provision.sh").read_text()
    assert 'netprobe lab firewall "$NETPROBE_SCENARIO" --host "$NETPROBE_HOST"' in script
    assert "pip install -q /vagrant" in script and "netprobe-responder.service" in script
    # offline (make vm-test): from a wheelhouse in the synced folder, never an index
    assert '--no-index --find-links "/vagrant/$NETPROBE_WHEELHOUSE"' in script
    # the local box and TCG are the make target's choice (environment), not the file's default
    assert 'ENV["NETPROBE_LIBVIRT_TCG"] == "1"' in text and 'ENV.fetch("NETPROBE_VM_MEMORY", "1024")' in text


def test_responder_unit():
    unit = (REPO / "deploy" / "netprobe-responder.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith("netprobe responder --listen tcp://0.0.0.0:7879 --token-file /etc/netprobe/token")
    assert "[Install]" in unit and "WantedBy=multi-user.target" in unit
