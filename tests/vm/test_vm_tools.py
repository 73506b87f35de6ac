"""The VM lab's tooling without VMs: boot order, and that the scripts it runs are sound."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from netprobe.lab.spec import load_scenario

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "vm"


def vmlab():
    spec = importlib.util.spec_from_file_location("vmlab", TOOLS / "vmlab.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_boot_batches_make_each_network_once_then_two_at_a_time():
    batches = vmlab().boot_batches(load_scenario("routed-stateful"))
    assert batches == [["core"], ["cp1", "node1"]]  # the router makes both racks' networks
    assert vmlab().boot_batches(load_scenario("demo")) == [["cp1"], ["node1", "node2"]]
    racks = vmlab().boot_batches(load_scenario("two-racks-router"))
    assert racks[0] == ["core"] and all(len(b) <= 2 for b in racks)
    assert sorted(n for b in racks for n in b) == ["core", "cp1", "node1", "node2", "node3"]


@pytest.mark.parametrize("script", sorted(p.name for p in TOOLS.glob("*.sh")) + ["../../deploy/vagrant-provision.sh"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(TOOLS / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_libvirt_namespace_names_are_ours():
    proc = subprocess.run([str(TOOLS / "libvirt-ns.sh"), "start", "/var/tmp/npvm-x", "nplab-x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "npvm-" in proc.stderr


def test_routed_stateful_has_a_router_and_a_stateful_firewall():
    spec = load_scenario("routed-stateful")
    assert [r.name for r in spec.routers] == ["core"] and len(spec.hosts) == 2
    nft = spec.host("node1").firewall.nft
    rules = [line for line in nft.splitlines() if not line.strip().startswith("#")]
    assert any("policy drop" in line for line in rules)
    assert not any("established" in line for line in rules)
