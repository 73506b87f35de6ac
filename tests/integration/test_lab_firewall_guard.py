"""`netprobe lab firewall` on a host that is not a lab host: refused, and nothing changes.

Runs in scratch namespaces of its own (never the root namespace): one standing in for a cluster
node with tables of its own, one named like a lab namespace.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from conftest import run

pytestmark = pytest.mark.netns

NODE_RULES = """\
table inet calico-like {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 179 accept comment "bgp"
    }
}
table ip kube-proxy-like {
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
    }
}
"""


@pytest.fixture
def scratch_netns(request):
    made = []

    def make(name):
        run(["ip", "netns", "add", name])
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


def ruleset(ns: str) -> str:
    return run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"]).stdout


def lab_firewall(ns: str, *extra: str):
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "netprobe", "lab", "firewall", "demo",
                           "--host", "node2", *extra], capture_output=True, text=True, timeout=60)


def test_refused_on_a_host_that_is_not_a_lab_host_and_its_tables_stay(scratch_netns):
    ns = scratch_netns(f"hbfw-{uuid.uuid4().hex[:6]}")
    run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=NODE_RULES)
    before = ruleset(ns)
    proc = lab_firewall(ns)
    assert proc.returncode == 2, proc.stderr
    assert ruleset(ns) == before  # byte for byte
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "not a lab host" in line and "--replace-firewall" in line
    assert "nft table inet calico-like" in line and "nft table ip kube-proxy-like" in line


def test_told_explicitly_it_replaces_and_says_what(scratch_netns):
    ns = scratch_netns(f"hbfw-{uuid.uuid4().hex[:6]}")
    run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=NODE_RULES)
    proc = lab_firewall(ns, "--replace-firewall")
    assert proc.returncode == 0, proc.stderr
    assert "node2: replacing nft table inet calico-like (`flush ruleset`)" in proc.stderr
    after = ruleset(ns)
    assert "calico-like" not in after and "cluster_hosts" in after


def test_a_lab_namespace_is_a_lab_host(scratch_netns):
    ns = scratch_netns(f"nplab-hbfw{uuid.uuid4().hex[:4]}.node2")
    proc = lab_firewall(ns)
    assert proc.returncode == 0, proc.stderr
    assert "cluster_hosts" in ruleset(ns)
