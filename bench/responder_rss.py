#!/usr/bin/env python3
"""A real responder facing 1,000 peers: its memory (RSS) before, while and after authenticated
probes from 1,000 distinct source addresses, and how it grows per peer.

Two namespaces of our own, a veth between them: PREFIX-r runs ``netprobe responder`` (its real
captures) on 198.18.250.1/30; PREFIX-p holds 198.18.250.2/30 and the peers' addresses
(198.19.200.0/22, one /32 each) and sends, from each of them in turn, the calico profile's probes
(bgp, typha, apiserver, etcd: TCP SYNs the responder's kernel answers with RSTs; ipip: an
authenticated payload the responder echoes) plus vxlan and wireguard (echoed payloads), through
netprobe's own prober and templates. The responder routes the peers' /22 through one neighbour
(no ARP entry per peer). Bounded: PEERS x 7 probes x ROUNDS, each with one retry, then it stops;
everything made here is removed on exit, error or Ctrl-C. Each round is a mesh run as the responder
sees it: a compact probe request first (its own one probe), the peers' probes, then the request
for that run's observations (6 rounds of 1,000 peers pass the number of probes a responder
remembers, ``agent/responder.py`` MAX_OBSERVATIONS).

Run as root:  .venv/bin/python bench/responder_rss.py [--peers 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

RESPONDER_ADDR, PEER_GATEWAY = "198.18.250.1", "198.18.250.2"
CHECK_IDS = ("bgp", "ipip", "typha", "apiserver", "etcd", "vxlan", "wireguard")
MAX_PEERS = 1024  # the /22
MILESTONES = (0, 100, 300, 1000)
TOKEN = "responder-rss-bench-token-0123456789"
RUN = "responder-rss"


def peer_address(i: int) -> str:
    return f"198.19.{200 + i // 256}.{i % 256}"


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def _ip(*args: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, input=stdin)


def inner(args) -> None:
    """In the peers' namespace: probe the responder from each peer address in turn; after each
    milestone, say so on stdout and wait for a line on stdin (the outer process reads RSS then)."""
    import trio

    from netprobe.core import templates
    from netprobe.core.checks import CHECKS
    from netprobe.core.events import ProbeTarget
    from netprobe.core.keys import probe_key
    from netprobe.core.prober import Prober
    from netprobe.net.prober import open_probe_io, random_probe_id_base, run_prober

    key = probe_key(TOKEN)
    checks = [CHECKS[c] for c in CHECK_IDS]
    io = open_probe_io(key)
    answered = sent = 0
    try:
        for rnd in range(args.rounds):
            for i in range(args.peers):
                source = peer_address(i)
                targets = [ProbeTarget(c, RESPONDER_ADDR, "responder") for c in checks]
                prober = Prober(key, source, targets, templates.for_targets(source, targets), window=0.5,
                                retries=1, first_id=random_probe_id_base())
                outcomes = trio.run(run_prober, prober, io)
                sent += len(outcomes)
                answered += sum(o.evidence.reply is not None for o in outcomes)
                if i + 1 in MILESTONES or i + 1 == args.peers:
                    print(json.dumps({"round": rnd, "peers": i + 1, "sent": sent, "answered": answered}), flush=True)
                    sys.stdin.readline()
    finally:
        io.close()


def measure(peers: int = 1000, rounds: int = 2, prefix: str | None = None) -> dict:
    """Set up, probe, measure, tear down; the figures as a dict (also used by the integration test)."""
    prefix = prefix or os.environ.get("NETPROBE_BENCH_PREFIX", "nprss")
    tag = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ns_r, ns_p = f"{tag}-r", f"{tag}-p"
    made: list[str] = []
    procs: list[subprocess.Popen] = []
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"{tag}-")
    try:
        for ns in (ns_r, ns_p):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns_r, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", ns_p)
        _ip("-n", ns_r, "addr", "add", f"{RESPONDER_ADDR}/30", "dev", "eth0")
        _ip("-n", ns_p, "addr", "add", f"{PEER_GATEWAY}/30", "dev", "eth0")
        _ip("-n", ns_p, "-batch", "-", stdin="".join(f"addr add {peer_address(i)}/32 dev eth0\n" for i in range(peers)))
        for ns in (ns_r, ns_p):
            _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns_r, "route", "add", "198.19.200.0/22", "via", PEER_GATEWAY)  # one neighbour for every peer
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        sock = os.path.join(tmp, "r.sock")
        log = open(os.path.join(tmp, "responder.log"), "w")
        responder = subprocess.Popen(["ip", "netns", "exec", ns_r, sys.executable, "-m", "netprobe", "responder",
                                      "--listen", f"unix:{sock}", "--token-file", token, "--name", "responder"],
                                     stdout=subprocess.DEVNULL, stderr=log)
        procs.append(responder)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if time.monotonic() > deadline or responder.poll() is not None:
                raise RuntimeError(f"responder did not start: {open(log.name).read()}")
            time.sleep(0.1)
        time.sleep(0.5)  # its captures are open once the socket is (serve_responder), settle anyway
        run = f"{RUN}-1"
        _start_run(sock, run)  # each round is a mesh run: its first round, then its observations, compact
        out: dict = {"peers": peers, "rounds": rounds, "probes_per_peer": len(CHECK_IDS),
                     "ready": rss_kb(responder.pid), "milestones": []}
        prober = subprocess.Popen(["ip", "netns", "exec", ns_p, sys.executable, os.path.abspath(__file__), "--inner",
                                   "--peers", str(peers), "--rounds", str(rounds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(prober)
        t0 = time.monotonic()
        for line in prober.stdout:
            step = json.loads(line)
            time.sleep(0.2)  # the last echoes and observations land
            row = {**step, **rss_kb(responder.pid), "s": round(time.monotonic() - t0, 1)}
            if step["peers"] == peers:  # the round is over: the coordinator asks what the responder saw
                row["observed_sources"], row["observations"], row["plain"] = _observed(sock, run)
                row["after_observations"] = rss_kb(responder.pid)
                run = f"{RUN}-{step['round'] + 2}"
                if step["round"] + 1 < rounds:
                    _start_run(sock, run)
            out["milestones"].append(row)
            prober.stdin.write("\n")
            prober.stdin.flush()
        if prober.wait(timeout=60) != 0:
            raise RuntimeError("the prober failed")
        out["probing_s"] = round(time.monotonic() - t0, 1)
        ends = [m for m in out["milestones"] if "observations" in m]
        out["observed_sources"] = min(m["observed_sources"] for m in ends)
        out["observations_per_run"] = ends[-1]["observations"]
        out["plain_observations"] = ends[-1]["plain"]
        ready = out["ready"]["VmRSS"]
        out["rss_ready_mb"] = round(ready / 1024, 1)
        out["rss_steady_mb"] = round(ends[-1]["after_observations"]["VmRSS"] / 1024, 1)
        out["rss_peak_mb"] = round(ends[-1]["after_observations"]["VmHWM"] / 1024, 1)
        out["growth_per_peer_kb"] = round((ends[0]["VmRSS"] - ready) / peers, 2)
        _observed(sock, "an-unknown-run")  # everything it keeps at once, in the full form: the worst request
        out["rss_peak_whole_window_mb"] = round(rss_kb(responder.pid)["VmHWM"] / 1024, 1)
        return out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ns in made:  # a namespace with a live process in it stays alive: those go first
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _start_run(sock: str, run: str) -> None:
    """Ask the responder for a one-probe compact run (to the peers' gateway), as a mesh's first
    round does: the run's observations are then asked for in the compact form."""
    import trio

    from netprobe.agent.client import AgentClient
    from netprobe.agent.protocol import ProbeRequest
    from netprobe.core.checks import CHECKS
    from netprobe.core.mesh_logic import Peer

    request = ProbeRequest(run, (Peer("gateway", PEER_GATEWAY, ("bgp",)),), (CHECKS["bgp"],), 0.2, 0, compact=True)

    async def ask():
        async with AgentClient(f"unix:{sock}", token=TOKEN, timeout=30) as agent:
            await agent.run_probes(request)

    trio.run(ask)


def _observed(sock: str, run: str) -> tuple[int, int, int]:
    """Distinct sources, observations and plain ones the responder reports for ``run`` (an
    unknown run: the last two minutes, in the full form)."""
    import trio

    from netprobe.agent.client import AgentClient

    async def ask():
        async with AgentClient(f"unix:{sock}", token=TOKEN, timeout=30) as agent:
            return await agent.observations(run)

    reply = trio.run(ask)
    sources = {o.src for o in reply.observations} | set(reply.plain.sources)
    return len(sources), len(reply.observations) + len(reply.plain), len(reply.plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, default=1000, help=f"peer addresses (1-{MAX_PEERS})")
    parser.add_argument("--rounds", type=int, default=2, help="runs, each peer probing once in each (1-12)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.peers = max(1, min(args.peers, MAX_PEERS))
    args.rounds = max(1, min(args.rounds, 12))
    if args.inner:
        inner(args)
        return
    from netprobe.agent.responder import MAX_OBSERVATIONS

    figures = measure(args.peers, args.rounds)
    print(f"responder RSS ready {figures['rss_ready_mb']} MB; after {figures['rounds']} runs of {figures['peers']} peers x "
          f"{figures['probes_per_peer']} probes ({figures['probing_s']} s): {figures['rss_steady_mb']} MB, peak "
          f"{figures['rss_peak_mb']} MB; ~{figures['growth_per_peer_kb']} KB per peer in the first run; each run's "
          f"observations named {figures['observed_sources']} distinct sources, {figures['observations_per_run']} probes "
          f"({figures['plain_observations']} plain); it keeps at most {MAX_OBSERVATIONS:,} probes, and one full-form "
          f"request for all of them peaks at {figures['rss_peak_whole_window_mb']} MB")
    for m in figures["milestones"]:
        seen = (f"; its observations asked: RSS {m['after_observations']['VmRSS'] / 1024:.1f} MB" if "observations" in m
                else "")
        print(f"  run {m['round'] + 1}, {m['peers']:>4} peers: RSS {m['VmRSS'] / 1024:.1f} MB "
              f"(peak {m['VmHWM'] / 1024:.1f} MB), {m['answered']}/{m['sent']} probes answered{seen}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
