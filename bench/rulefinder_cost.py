#!/usr/bin/env python3
"""What naming the rule costs (net/rulefinder.py): the time to arm (trace table in place, trace
socket joined, iptables-legacy counters saved), the time from the last probe sent to the answer,
and the time to disarm, for 1 and 100 flows, dropped by an nft rule and by an iptables-legacy
rule (counters).

Run as root:  .venv/bin/python bench/rulefinder_cost.py [--rounds 10]
Bounded: rounds x (1 + 100) SYNs per case, between the two namespaces of a lab it makes
(``nplab-nprf-rfc<pid>.a/.b``), which is taken down on every way out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

SCENARIO = """
name: bench-rulefinder
profile: calico
segments:
  - {name: lan, subnet: 198.18.210.0/24, hosts: [a, b]}
hosts:
  - {name: a, roles: [node], address: 198.18.210.1}
  - name: b
    roles: [node]
    address: 198.18.210.2
    firewall:
      nft: |
        table inet filter {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp dport 20000-20099 drop comment "bench: nft"
          }
        }
"""
LEGACY = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 30000:30099 -j DROP\nCOMMIT\n"
CASES = {"nft rule": 20000, "iptables-legacy rule": 30000}


async def measure(src: str, dst: str, sender_ns: str, base: int, flows: int, rounds: int) -> dict:
    import trio

    from netprobe.core import templates
    from netprobe.core.trace import Flow, RuleFound
    from netprobe.lab.apply import in_netns
    from netprobe.net import sockets
    from netprobe.net.rulefinder import RuleFinder

    with in_netns(sender_ns):
        sender = sockets.open_sender()
    wanted = [Flow("tcp", src, dst, None, base + i) for i in range(flows)]
    syns = [templates.TcpSynTemplate(src, dst, f.dport).build(40001, 1) for f in wanted]
    arm, answer, disarm, named = [], [], [], 0
    try:
        for _ in range(rounds):
            began = trio.current_time()
            async with RuleFinder([(f, "ingress") for f in wanted]) as finder:
                armed = trio.current_time()
                for data in syns:
                    sockets.send_packet(sender, data, dst)
                sent = trio.current_time()
                found = await finder.results(expected_packets=dict.fromkeys(wanted, 1), timeout=3)
                answered = trio.current_time()
            arm.append(armed - began)
            answer.append(answered - sent)
            disarm.append(trio.current_time() - answered)
            named += sum(isinstance(r, RuleFound) for r in found.values())
    finally:
        sender.close()

    def ms(xs):
        return {"median_ms": round(statistics.median(xs) * 1000, 1), "max_ms": round(max(xs) * 1000, 1)}

    return {"flows": flows, "rounds": rounds, "named": f"{named}/{flows * rounds}", "arm": ms(arm),
            "last_probe_to_answer": ms(answer), "disarm": ms(disarm)}


def inner(args) -> None:
    import trio

    figures = [trio.run(measure, args.src, args.dst, args.sender_ns, args.base, n, args.rounds) for n in (1, 100)]
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="repetitions per case (max 100)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    parser.add_argument("--sender-ns", help=argparse.SUPPRESS)
    parser.add_argument("--base", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds, 100))
    if args.inner:
        inner(args)
        return
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario

    scenario = parse_scenario(SCENARIO, source="bench/rulefinder_cost.py")
    results = {}
    with running_lab(scenario, f"nprf-rfc{os.getpid() % 10000}") as lab:
        for case, base in CASES.items():
            if base == CASES["iptables-legacy rule"]:
                lab.exec("b", ["iptables-legacy-restore"], input=LEGACY, text=True, check=True)
            proc = lab.exec("b", [sys.executable, os.path.abspath(__file__), "--inner", "--rounds", str(args.rounds),
                                  "--src", lab.address("a"), "--dst", lab.address("b"),
                                  "--sender-ns", lab.netns("a"), "--base", str(base)],
                            capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                sys.exit(f"bench failed ({case}):\n{proc.stderr}")
            results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    for case, figures in results.items():
        for f in figures:
            print(f"{case}, {f['flows']:>3} flow(s): arm {f['arm']['median_ms']} ms (max {f['arm']['max_ms']}), "
                  f"last probe -> answer {f['last_probe_to_answer']['median_ms']} ms "
                  f"(max {f['last_probe_to_answer']['max_ms']}), disarm {f['disarm']['median_ms']} ms; "
                  f"named {f['named']}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
