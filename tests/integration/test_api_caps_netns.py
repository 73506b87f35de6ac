"""The control API is no scanner (#9 item 2): a real responder, a token holder's requests, and
the SYNs that actually leave, counted by a capture.

Everything happens inside one namespace of our own (``npctl-...``): the responder, a dummy
veth pair whose both ends stay in it (npd0 holds 10.231.0.0/16 with ARP off, so a packet to any
address of it leaves at once; npd1, without an address, drops it) and tcpdump on npd0. Nothing is sent anywhere else.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest
import trio
from helpers import stop_processes

from netprobe.agent.client import AgentClient, AgentRequestError
from netprobe.agent.protocol import MAX_TARGETS, ProbeRequest
from netprobe.core.checks import CHECKS
from netprobe.core.mesh_logic import Peer

pytestmark = pytest.mark.netns

TOKEN = "scanner-test-token-0123456789abcdef"
BGP = CHECKS["bgp"]


@pytest.fixture
def caged(tmp_path):
    """A namespace with a responder (--allow 10.231.0.0/20) and tcpdump counting its SYNs."""
    from pyroute2 import netns

    ns = f"npctl-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen] = []
    netns.create(ns)
    try:
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "npd0", "type", "veth", "peer", "name", "npd1"],  # both ends in ns
                    ["link", "set", "npd0", "arp", "off"],   # no neighbour lookup: SYNs leave at once
                    ["addr", "add", "10.231.0.1/16", "dev", "npd0"],
                    ["link", "set", "npd1", "up"], ["link", "set", "npd0", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True, capture_output=True)
        (tmp_path / "token").write_text(TOKEN + "\n")
        pcap = tmp_path / "syn.pcap"
        dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "npd0", "-n", "-U", "-B", "8192",
                                 "-w", str(pcap), "tcp[tcpflags] & tcp-syn != 0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(dump)
        sock = tmp_path / "agent.sock"
        log = open(tmp_path / "responder.log", "w")
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "netprobe", "responder", "--listen", f"unix:{sock}",
             "--token-file", str(tmp_path / "token"), "--allow", "10.231.0.0/20"],
            stdout=subprocess.DEVNULL, stderr=log))
        deadline = time.monotonic() + 30
        while not sock.exists() or not pcap.exists():
            assert time.monotonic() < deadline and procs[-1].poll() is None, (tmp_path / "responder.log").read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # tcpdump's filter attached

        def syns() -> int:
            # tcpdump writes each packet as it reads it (-U): stop it once the file stops growing
            size, still = -1, 0
            while still < 10:
                now = pcap.stat().st_size
                still = still + 1 if now == size else 0
                size = now
                time.sleep(0.1)
            dump.send_signal(signal.SIGINT)
            _, err = dump.communicate(timeout=10)
            assert "\n0 packets dropped by kernel" in err, err
            out = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True, check=True)
            return len(out.stdout.splitlines())

        yield f"unix:{sock}", syns
    finally:
        stop_processes(procs)
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)
        netns.remove(ns)


def request(run_id: str, addresses: list[str]) -> ProbeRequest:
    targets = tuple(Peer(f"t{i}", a, ("bgp",)) for i, a in enumerate(addresses))
    return ProbeRequest(run_id, targets, (BGP,), timeout=0.05, retries=0)


def block(first: int, n: int = MAX_TARGETS) -> list[str]:
    """``n`` addresses of 10.231.0.0/16 from host number ``first`` on."""
    return [f"10.231.{(first + i) >> 8}.{(first + i) & 255}" for i in range(n)]


def test_a_token_holder_cannot_make_a_scanner_of_the_responder(caged):
    url, syns = caged
    began = time.monotonic()

    async def main():
        statuses = []
        async with AgentClient(url, token=TOKEN, timeout=30) as agent:
            async def ask(req):
                try:
                    reply = await agent.run_probes(req)
                    statuses.append((200, len(reply.outcomes)))
                except AgentRequestError as exc:
                    statuses.append((exc.status, str(exc)))

            # the request: thousands of targets outside any inventory, in one POST
            await ask(request("huge", block(2, 4096)))
            await ask(request("outside", ["10.232.0.5", "192.0.2.1"]))       # outside --allow
            await ask(request("r1", block(2)))                              # 1,023 new targets
            await ask(request("r2", block(2 + MAX_TARGETS)))                # 1,023 more: 2,046 a minute
            await ask(request("r3", block(2 + 2 * MAX_TARGETS)))            # over: 429
            await ask(request("r4", block(2)))                              # the same peers again: allowed
        return statuses

    statuses = trio.run(main)
    assert statuses[0][0] == 400 and "targets: at most 1023" in statuses[0][1]
    assert statuses[1][0] == 403 and "10.232.0.5 is outside" in statuses[1][1]
    assert statuses[2] == (200, MAX_TARGETS) and statuses[3] == (200, MAX_TARGETS)
    assert statuses[4][0] == 429 and "distinct targets a minute" in statuses[4][1]
    assert statuses[5] == (200, MAX_TARGETS)
    assert syns() == 3 * MAX_TARGETS  # r1, r2, r4: one SYN per probe, and nothing else
    assert time.monotonic() - began < 60
