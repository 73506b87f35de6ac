#!/usr/bin/env python3
"""What the mtu check adds to a mesh in the 5-host labs: mesh wall time with the calico profile's
checks, with and without ``mtu``, on the mtu-black-hole scenario (six cells each way across the
1400-byte link: the search runs) and on the same lab with that link at 1500 (clean: the full size
arrives in the first window). Medians of interleaved runs; never pass/fail.

Run as root:  .venv/bin/python bench/mtu_cost.py [--repeats 7] [--prefix mtucost]
Both labs are namespaces made and removed here; all traffic stays inside them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINDOW = 1.0
RETRIES = 1


def scenarios() -> dict[str, str]:
    text = (REPO / "scenarios" / "mtu-black-hole.yaml").read_text()
    clean = re.sub(r"\n    mtu: \{link: 1400\}", "", text)
    assert clean != text
    return {"black hole": text, "clean": clean}


def measure(label: str, text: str, lab_name: str, repeats: int) -> dict:
    import trio

    from netprobe.config import inventory_token, load_inventory
    from netprobe.core.checks import select_checks
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.orchestration.mesh_run import run_mesh

    scenario = parse_scenario(text, source=f"bench {label}")
    with_mtu = select_checks("calico")
    without = [c for c in with_mtu if not c.pmtu]
    walls: dict[str, list[float]] = {"with mtu": [], "without mtu": []}
    blocked = 0
    with running_lab(scenario, lab_name) as lab:
        inventory = load_inventory(str(lab.inventory_path))
        token = inventory_token(inventory)
        start_responders(lab, [h.name for h in scenario.hosts])
        trio.run(wait_for_agents, inventory, token, 120)
        for _ in range(repeats):
            for key, checks in (("without mtu", without), ("with mtu", with_mtu)):
                t0 = time.perf_counter()
                result = trio.run(lambda: run_mesh(inventory, checks, token=token, timeout=WINDOW, retries=RETRIES,
                                                   profile="calico"))
                walls[key].append(time.perf_counter() - t0)
                if key == "with mtu":
                    blocked = sum(1 for c in result.cells if c.check == "mtu" and c.reach == "blocked")
    med = {k: round(statistics.median(v), 3) for k, v in walls.items()}
    return {"lab": label, "hosts": len(scenario.hosts), "mtu_cells_blocked": blocked, "median_s": med,
            "extra_s": round(med["with mtu"] - med["without mtu"], 3), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--prefix", default="mtucost", help="lab names start with this")
    args = ap.parse_args()
    rows = [measure(label, text, f"{args.prefix}{i}", args.repeats) for i, (label, text) in enumerate(scenarios().items())]
    for row in rows:
        print(f"{row['lab']:>10}: {row['hosts']} hosts, {row['mtu_cells_blocked']} mtu cells blocked; mesh "
              f"{row['median_s']['without mtu']} s without mtu, {row['median_s']['with mtu']} s with "
              f"(+{row['extra_s']} s, median of {row['repeats']})", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
