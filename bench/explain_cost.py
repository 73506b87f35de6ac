#!/usr/bin/env python3
"""What explaining blocked cells costs: a lab mesh with 0, 1, 10 and all (one check's) blocked
cells, and a routed lab whose router drops one check between two racks, each meshed without and
with the explain round; the extra wall time against the reply window (the target: at most one
window, whatever the number of blocked cells; nothing when none is blocked).

Run as root:  .venv/bin/python bench/explain_cost.py [--repeats 3] [--window 1.0]
Every lab is a bounded set of namespaces (named npex-cost*) made and removed here; all traffic
stays inside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

HOSTS = 8


def _nft_input(rule: str) -> str:
    return ("\n    firewall:\n      nft: |\n        table inet filter {\n          chain input {\n"
            "            type filter hook input priority 0; policy accept;\n"
            f"            {rule}\n          }}\n        }}")


def _nft_output(rule: str) -> str:
    return ("\n    firewall:\n      nft: |\n        table inet filter {\n          chain output {\n"
            "            type filter hook output priority 0; policy accept;\n"
            f"            {rule}\n          }}\n        }}")


def flat(blocked: str) -> str:
    """HOSTS hosts on one segment; ``blocked``: none, one (h0 -> h7 bgp), ten (bgp into h7 from
    the 7 others at h7's ingress, and h6's bgp to h0-h2 at its own egress), all (bgp into every
    host: 56 cells)."""
    hosts = []
    for i in range(HOSTS):
        roles = ["node"] + (["apiserver", "etcd"] if i == 0 else []) + (["typha"] if i == 1 else [])
        fw = ""
        if blocked == "one" and i == HOSTS - 1:
            fw = _nft_input('ip saddr 198.18.100.10 tcp dport 179 drop comment "one"')
        elif blocked == "ten" and i == HOSTS - 1:
            fw = _nft_input('tcp dport 179 drop comment "bgp into h7"')
        elif blocked == "ten" and i == HOSTS - 2:
            fw = _nft_output('ip daddr { 198.18.100.10, 198.18.100.11, 198.18.100.12 } tcp dport 179 drop')
        elif blocked == "all":
            fw = _nft_input('tcp dport 179 drop comment "no bgp at all"')
        hosts.append(f"  - name: h{i}\n    roles: [{', '.join(roles)}]\n    address: 198.18.100.{10 + i}{fw}")
    names = ", ".join(f"h{i}" for i in range(HOSTS))
    return (f"name: cost-{blocked}\nprofile: calico\nsegments:\n"
            f"  - {{name: lan, subnet: 198.18.100.0/24, hosts: [{names}]}}\nhosts:\n" + "\n".join(hosts) + "\n")


def routed() -> str:
    """Two racks of HOSTS/2 hosts; the router between them drops bgp: 2 x 4 x 4 = 32 network cells."""
    half = HOSTS // 2
    rack1 = [f"h{i}" for i in range(half)]
    rack2 = [f"h{i}" for i in range(half, HOSTS)]
    hosts = []
    for i in range(HOSTS):
        roles = ["node"] + (["apiserver", "etcd"] if i == 0 else []) + (["typha"] if i == 1 else [])
        addr = f"198.18.101.{10 + i}" if i < half else f"198.18.102.{10 + i}"
        hosts.append(f"  - {{name: h{i}, roles: [{', '.join(roles)}], address: {addr}}}")
    return ("name: cost-routed\nprofile: calico\nsegments:\n"
            f"  - {{name: rack1, subnet: 198.18.101.0/24, hosts: [{', '.join(rack1)}]}}\n"
            f"  - {{name: rack2, subnet: 198.18.102.0/24, hosts: [{', '.join(rack2)}]}}\n"
            "routers:\n  - name: core\n    segments: [rack1, rack2]\n"
            "    addresses: {rack1: 198.18.101.1, rack2: 198.18.102.1}\n"
            "    firewall:\n      nft: |\n        table inet core {\n          chain forward {\n"
            "            type filter hook forward priority 0; policy accept;\n"
            "            tcp dport 179 drop comment \"bgp stays in its rack\"\n          }\n        }\n"
            "hosts:\n" + "\n".join(hosts) + "\n")


def measure(name: str, text: str, repeats: int, window: float) -> dict:
    import trio

    from netprobe.config import inventory_token, load_inventory
    from netprobe.core.checks import select_checks
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.orchestration.mesh_run import run_mesh

    scenario = parse_scenario(text, source=f"bench {name}")
    out: dict = {"case": name}
    with running_lab(scenario, f"npex-cost{name[:8]}") as lab:
        inventory = load_inventory(str(lab.inventory_path))
        token = inventory_token(inventory)
        start_responders(lab, [h.name for h in scenario.hosts])
        trio.run(wait_for_agents, inventory, token, 120)
        checks = select_checks("calico")
        routers = {a: r.name for r in scenario.routers for _s, a in r.addresses}
        walls: dict[bool, list[float]] = {False: [], True: []}
        hops = []  # per explained run: routers' ICMP budget per sender refills 1/s between runs
        for _ in range(repeats):
            for explain in (True, False):
                t0 = time.perf_counter()
                result = trio.run(lambda: run_mesh(inventory, checks, token=token, timeout=window, retries=1,
                                                   explain=explain, hop_names=routers))
                walls[explain].append(time.perf_counter() - t0)
                blocked = [c for c in result.cells if c.reach == "blocked"]
                if explain:
                    hops.append(sum(1 for c in blocked if c.explain is not None and c.explain.hop is not None))
                    out.update(cells=len(result.cells), blocked=len(blocked),
                               explained=sum(1 for c in blocked if c.explain is not None), errors=len(result.errors))
        out["hops_named_per_run"] = hops
    plain, explained = statistics.median(walls[False]), statistics.median(walls[True])
    out.update(mesh_s=round(plain, 3), mesh_explain_s=round(explained, 3), extra_s=round(explained - plain, 3),
               window_s=window, extra_windows=round((explained - plain) / window, 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=1.0)
    args = parser.parse_args()
    cases = [("none", flat("none")), ("one", flat("one")), ("ten", flat("ten")), ("all-bgp", flat("all")),
             ("routed-bgp", routed())]
    for name, text in cases:
        print(json.dumps(measure(name, text, args.repeats, args.window)), flush=True)


if __name__ == "__main__":
    main()
