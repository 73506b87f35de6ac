"""Responders in two namespaces and `netprobe mesh` over unix sockets: both ends' evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.netns


@pytest.fixture
def mesh_pair(netns_pair, tmp_path):
    token = tmp_path / "token"
    token.write_text("integration-token\n")
    procs = []
    hosts = []
    for name, ns, addr in (("a", netns_pair.a, netns_pair.addr_a), ("b", netns_pair.b, netns_pair.addr_b)):
        sock = tmp_path / f"{name}.sock"
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "netprobe", "responder",
             "--listen", f"unix:{sock}", "--token-file", str(token), "--name", name],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{name}.log", "w")))
        hosts.append(f"  - {{name: {name}, address: {addr}, roles: [node, etcd, apiserver, typha], agent: 'unix:{sock}'}}")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("token_file: token\nhosts:\n" + "\n".join(hosts) + "\n")
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"{n}.sock").exists() for n in "ab"):
        assert time.monotonic() < deadline, (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
        assert all(p.poll() is None for p in procs), (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
        time.sleep(0.1)
    netns_pair.inventory = inventory
    netns_pair.procs = procs
    yield netns_pair
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def mesh(pair, *args) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "netprobe", "mesh", "-i", str(pair.inventory), "--format", "json",
                           "--timeout", "0.5", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1, 3), proc.stderr
    result = json.loads(proc.stdout)
    return proc.returncode, {(c["check"], c["src"], c["dst"]): c for c in result["cells"]}


def test_forged_reset_and_return_path_and_encapsulation(mesh_pair):
    mesh_pair.nft(mesh_pair.b, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 2379 reject with tcp reset
  }
}
""")
    mesh_pair.nft(mesh_pair.a, """
table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp sport 5473 tcp flags & (syn|ack|rst) != 0 drop
  }
}
""")
    code, cells = mesh(mesh_pair, "--checks", "bgp,etcd,typha,ipip,vxlan")
    assert code == 1
    etcd = cells[("etcd", "a", "b")]
    assert (etcd["reach"], etcd["where"], etcd["verdict"]) == ("blocked", "destination-ingress", "rejected")
    assert etcd["evidence"]["arrived"] is True and etcd["evidence"]["accepted"] is False
    assert cells[("etcd", "b", "a")]["reach"] == "allowed"  # a closed port, but the flow passes
    assert cells[("etcd", "b", "a")]["verdict"] == "closed"
    typha = cells[("typha", "a", "b")]
    assert (typha["reach"], typha["where"]) == ("blocked", "return-path")
    for check in ("ipip", "vxlan"):
        for src, dst in (("a", "b"), ("b", "a")):
            cell = cells[(check, src, dst)]
            assert cell["reach"] == "allowed", cell
            assert cell["verdict"] == "answered", cell
    assert cells[("bgp", "a", "b")]["reach"] == "allowed"
