#!/usr/bin/env python3
"""Probe rate between two lab namespaces: probes/s sent and classified, kernel drops, the cost
of filtered probes in reply windows, and the RSS of `netprobe probe`.

Run as root:  .venv/bin/python bench/probe_rate.py [--probes 100000] [--family 6]
Bounded: a fixed number of probes, to addresses of the two namespaces it makes, then it stops.
``--family 6``: the same over IPv6 (the namespaces are dual stack either way).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SCENARIO = """
name: bench-rate
profile: calico
segments:
  - {name: lan, subnet: 198.18.200.0/24, subnet6: "2001:db8:200::/64", hosts: [a, b]}
hosts:
  - {name: a, roles: [node], address: 198.18.200.1}
  - name: b
    roles: [node]
    address: 198.18.200.2
    firewall:
      nft: |
        table inet filter {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp dport 9 drop
          }
        }
"""
CLOSED_PORTS = range(20000, 20100)
FILTERED_PORT = 9


def inner(args) -> None:
    """Inside namespace a: the measurements, printed as one JSON line."""
    import trio

    from netprobe.core import templates
    from netprobe.core.checks import Check, Direction, Proto
    from netprobe.core.events import ProbeTarget
    from netprobe.core.prober import Prober
    from netprobe.core.verdict import classify
    from netprobe.net.prober import open_probe_io, open_probe_io6, run_prober

    if args.rps:
        os.sched_setaffinity(0, {0})  # the prober on CPU 0; the "other host's" kernel work elsewhere
    key = os.urandom(32)
    checks = [Check(f"p{p}", "closed port", Proto.TCP, p, Direction.BOTH) for p in CLOSED_PORTS]
    figures = {}
    io = (open_probe_io6 if ":" in args.src else open_probe_io)(key)
    try:
        io.kernel_drops()  # reset the tap's counters
        targets = [ProbeTarget(checks[i % len(checks)], args.dst) for i in range(args.probes)]
        t0 = time.perf_counter()  # designing the templates counts, as it did when the run made them
        prober = Prober(key, args.src, targets, templates.for_targets(args.src, targets), window=1.0, retries=0,
                        first_id=1)
        outcomes = trio.run(run_prober, prober, io)
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        cells = [classify(o.target.check.proto, o.evidence, o.target.address) for o in outcomes]
        classify_s = time.perf_counter() - t1
        answered = sum(1 for o in outcomes if o.evidence.reply is not None)
        figures["closed_port_run"] = {
            "probes": args.probes,
            "wall_s": round(wall, 3),
            "probes_per_s": round(args.probes / wall),
            "replies_classified": answered,
            "replies_per_s": round(answered / (wall + classify_s)),
            "classify_us_per_cell": round(classify_s / len(cells) * 1e6, 2),
            "kernel_drops": io.kernel_drops(),
            "prober": dict(prober.stats),
            "unanswered": args.probes - answered,
        }
        filtered = Check("filtered", "dropped port", Proto.TCP, FILTERED_PORT, Direction.BOTH)
        targets = [ProbeTarget(filtered, args.dst)] * 1000
        t0 = time.perf_counter()
        prober = Prober(key, args.src, targets, templates.for_targets(args.src, targets), window=1.0, retries=0,
                        first_id=10_000_000)
        outcomes = trio.run(run_prober, prober, io)
        wall = time.perf_counter() - t0
        figures["filtered_1000"] = {"window_s": 1.0, "wall_s": round(wall, 3), "windows": round(wall / 1.0, 2),
                                    "all_filtered": all(o.evidence.reply is None for o in outcomes)}
    finally:
        io.close()
    # the child reports its own peak RSS (VmHWM of its own address space): ru_maxrss would
    # keep the peak of this large process, inherited through fork and kept across exec
    wrapper = ("import atexit, sys\n"
               "atexit.register(lambda: print('RSS_KB', [l.split()[1] for l in open('/proc/self/status')"
               " if l.startswith('VmHWM')][0], file=sys.stderr))\n"
               "from netprobe.cli import main\nmain(sys.argv[1:])\n")
    checks = "bgp,vxlan" if ":" in args.dst else "bgp,ipip,vxlan"  # no IP-in-IP over IPv6
    proc = subprocess.run([sys.executable, "-c", wrapper, "probe", args.dst, "--checks", checks,
                           "--timeout", "0.2", "--format", "json"], capture_output=True, text=True)
    rss = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("RSS_KB")]
    figures["netprobe_probe_rss_mb"] = round(int(rss[-1]) / 1024, 1) if rss else None
    figures["netprobe_probe_exit"] = proc.returncode
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=100_000, help="probes in the closed-port run (max 1,000,000)")
    parser.add_argument("--no-rps", dest="rps", action="store_false",
                        help="keep the receive path of both namespaces on the sender's CPU (by default RPS moves "
                             "it to the other CPUs, as separate hosts would have it)")
    parser.add_argument("--family", type=int, choices=(4, 6), default=4, help="probe over IPv4 (default) or IPv6")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.probes = max(1, min(args.probes, 1_000_000))
    if args.inner:
        inner(args)
        return
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario

    scenario = parse_scenario(SCENARIO, source="bench/probe_rate.py")
    cpus = os.cpu_count() or 1
    rps = args.rps and cpus > 1
    with running_lab(scenario, f"{os.environ.get('NETPROBE_BENCH_LAB_PREFIX', 'rate')}{os.getpid() % 10000}") as lab:
        if rps:  # steer both namespaces' receive processing away from the prober's CPU 0
            mask = format(((1 << cpus) - 1) & ~1, "x")
            for host in ("a", "b"):
                lab.exec(host, ["sh", "-c", f"for f in /sys/class/net/*/queues/rx-*/rps_cpus; do echo {mask} > $f; done"],
                         check=True)
        proc = lab.exec("a", [sys.executable, os.path.abspath(__file__), "--inner", "--probes", str(args.probes),
                              *([] if rps else ["--no-rps"]),
                              "--src", lab.address("a", args.family), "--dst", lab.address("b", args.family)],
                        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"bench failed:\n{proc.stderr}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"IPv{args.family}; receive path steered to other CPUs (RPS): {rps}")
    run = figures["closed_port_run"]
    print(f"closed-port run: {run['probes']} probes in {run['wall_s']} s = {run['probes_per_s']:,} probes/s "
          f"sent and answered; {run['replies_per_s']:,} replies/s classified "
          f"({run['classify_us_per_cell']} us/cell); kernel drops {run['kernel_drops']}; "
          f"unanswered {run['unanswered']}")
    f = figures["filtered_1000"]
    print(f"1,000 probes to a filtered port: {f['wall_s']} s = {f['windows']} reply windows of {f['window_s']} s "
          f"(all filtered: {f['all_filtered']})")
    print(f"netprobe probe RSS: {figures['netprobe_probe_rss_mb']} MB")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
