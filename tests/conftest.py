"""Shared fixtures. Integration tests (marker ``netns``) build hosts in network namespaces
with unique names and always remove them, on failure and Ctrl-C too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import stop_processes

REPO = Path(__file__).resolve().parent.parent
NETPROBE = [sys.executable, "-m", "netprobe"]
# What test namespaces and labs are named after (a session sharing the machine sets its own).
TEST_PREFIX = os.environ.get("NETPROBE_TEST_PREFIX", "nptest")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root to create network namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


def run(cmd: list[str], *, check: bool = True, input: str | None = None, timeout: float = 60):
    """Run a command, fail the test with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class NetnsPair:
    """Two hosts, ``a`` and ``b``, on one veth pair: 198.18.<n>.1 and 198.18.<n>.2."""

    a: str
    b: str
    addr_a: str
    addr_b: str
    made: list[str] = field(default_factory=list)

    def exec(self, ns: str, cmd: list[str], **kw):
        return run(["ip", "netns", "exec", ns, *cmd], **kw)

    def nft(self, ns: str, ruleset: str) -> None:
        self.exec(ns, ["nft", "-f", "-"], input=ruleset)

    def netprobe(self, ns: str, args: list[str], **kw):
        kw.setdefault("check", False)
        return self.exec(ns, [*NETPROBE, *args], **kw)


@pytest.fixture
def netns_pair():
    from pyroute2 import IPRoute, NetNS, netns

    tag = uuid.uuid4().hex[:6]
    n = int(tag[:2], 16)
    pair = NetnsPair(a=f"{TEST_PREFIX}-{tag}-a", b=f"{TEST_PREFIX}-{tag}-b", addr_a=f"198.18.{n}.1",
                     addr_b=f"198.18.{n}.2")
    try:
        for name in (pair.a, pair.b):
            netns.create(name)
            pair.made.append(name)
        with IPRoute() as ipr:
            ipr.link("add", ifname=f"npv{tag}a", kind="veth", peer={"ifname": f"npv{tag}b", "net_ns_fd": pair.b})
            ipr.link("set", index=ipr.link_lookup(ifname=f"npv{tag}a")[0], net_ns_fd=pair.a)
        for name, ifname, addr in ((pair.a, f"npv{tag}a", pair.addr_a), (pair.b, f"npv{tag}b", pair.addr_b)):
            with NetNS(name) as ns:
                idx = ns.link_lookup(ifname=ifname)[0]
                ns.link("set", index=idx, ifname="eth0")
                ns.addr("add", index=idx, address=addr, prefixlen=24)
                ns.link("set", index=idx, state="up")
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        yield pair
    finally:
        for name in pair.made:
            # killing leftover processes first: a namespace with a live process stays alive
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            netns.remove(name)


@pytest.fixture
def mesh_pair(netns_pair, tmp_path):
    """``netns_pair`` with a responder in each namespace (unix sockets) and an inventory of both
    (``.inventory``; hosts a and b hold every role)."""
    token = tmp_path / "token"
    token.write_text("integration-token-0123456789\n")
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
    stop_processes(procs)
