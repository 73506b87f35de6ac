#!/usr/bin/env python3
"""Mesh wall time at 4, 8, 16 and 32 lab hosts (calico profile), side by side with nmap scanning
the same cells from every host at once (where nmap is installed); responder RSS and idle CPU.

Run as root:  .venv/bin/python bench/mesh_scale.py [--sizes 4,8,16,32]
Every lab is a bounded set of namespaces made and removed here; all traffic stays inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

WINDOW = 1.0
RETRIES = 1
IDLE_SECONDS = 5.0
LOAD_BYTES = 4 << 30  # the bounded unrelated load during the idle measurement (and IDLE_SECONDS)

DROP_BGP = """
      nft: |
        table inet filter {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp dport 179 drop comment "this host's BGP is firewalled: the filtered cells cost a window"
          }
        }"""


def scenario_text(n: int) -> str:
    hosts = []
    for i in range(n):
        roles = ["node"] + (["apiserver", "etcd"] if i == 0 else []) + (["typha"] if i == 1 else [])
        fw = f"\n    firewall:{DROP_BGP}" if i == n - 1 else ""
        hosts.append(f"  - name: h{i}\n    roles: [{', '.join(roles)}]\n    address: 198.18.100.{10 + i}{fw}")
    names = ", ".join(f"h{i}" for i in range(n))
    return (f"name: scale{n}\nprofile: calico\nsegments:\n  - {{name: lan, subnet: 198.18.100.0/24, hosts: [{names}]}}\n"
            "hosts:\n" + "\n".join(hosts) + "\n"
            f"expect:\n  default: allowed\n  rules:\n    - {{check: bgp, from: '*', to: h{n - 1}, reach: blocked}}\n")


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, VmHWM KiB) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                hwm = int(line.split()[1])
    return cpu, hwm


def responder_pid(lab, host: str) -> int:
    """The python process of a host's responder (the pid spawned is `ip netns exec`, which execs it)."""
    return lab.processes()[f"responder-{host}"][0]


def nmap_all(lab, n: int) -> float:
    """Every host scans the cells it owns, all at once: TCP SYN for the ports, -sO for IPIP."""
    procs = []
    t0 = time.perf_counter()
    for i in range(n):
        others = [lab.address(f"h{j}") for j in range(n) if j != i]
        base = ["nmap", "-n", "-Pn", "-T4", "--max-retries", str(RETRIES), "-oX", "-"]
        procs.append(lab_popen(lab, f"h{i}", base + ["-sS", "-p", "179,5473,6443,2379", *others]))
        procs.append(lab_popen(lab, f"h{i}", base + ["-sO", "-p", "4", *others]))
    for p in procs:
        p.wait(timeout=600)
    return time.perf_counter() - t0


def lab_popen(lab, host: str, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.netns(host), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def idle_cpu(lab, n: int) -> dict:
    """Responder CPU while two hosts move LOAD_BYTES of unrelated TCP between them (bounded)."""
    pid = responder_pid(lab, "h2" if n > 2 else "h0")
    sink = lab_popen(lab, "h0", [sys.executable, "-c",
                                 "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                 "s.bind(('0.0.0.0',5001));s.listen();c,_=s.accept()\n"
                                 "while c.recv(1<<16): pass"])
    time.sleep(0.5)
    cpu0, _ = proc_stat(pid)
    t0 = time.perf_counter()
    lab.exec("h2" if n > 2 else "h1", [sys.executable, "-c",
             f"import socket,time\nc=socket.create_connection(('{lab.address('h0')}',5001))\n"
             f"b=b'x'*65536\nend=time.time()+{IDLE_SECONDS}\nsent=0\n"
             f"while sent<{LOAD_BYTES} and time.time()<end: c.sendall(b); sent+=len(b)\nc.close()"],
             timeout=IDLE_SECONDS + 10)
    elapsed = time.perf_counter() - t0
    cpu1, _ = proc_stat(pid)
    sink.kill()
    return {"load_seconds": round(elapsed, 2), "responder_cpu_seconds": round(cpu1 - cpu0, 3),
            "responder_cpu_percent": round((cpu1 - cpu0) / elapsed * 100, 2)}


def run_size(n: int, with_nmap: bool) -> dict:
    import trio

    from netprobe.core.checks import select_checks
    from netprobe.core.expect import compare
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import parse_scenario
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.config import inventory_token, load_inventory
    from netprobe.orchestration.mesh_run import run_mesh

    scenario = parse_scenario(scenario_text(n), source=f"bench scale{n}")
    out: dict = {"hosts": n}
    t0 = time.perf_counter()
    with running_lab(scenario, f"scale{n}") as lab:
        out["lab_up_s"] = round(time.perf_counter() - t0, 2)
        inventory = load_inventory(str(lab.inventory_path))
        token = inventory_token(inventory)
        start_responders(lab, [h.name for h in scenario.hosts])
        trio.run(wait_for_agents, inventory, token, 120)
        checks = select_checks("calico")
        t0 = time.perf_counter()
        result = trio.run(lambda: run_mesh(inventory, checks, token=token, timeout=WINDOW, retries=RETRIES,
                                           profile="calico"))
        out["mesh_wall_s"] = round(time.perf_counter() - t0, 3)
        out["target_s"] = WINDOW * (RETRIES + 1) + 0.5
        out["cells"] = len(result.cells)
        out["unknown_cells"] = sum(1 for c in result.cells if c.reach == "unknown")
        out["mismatches"] = len(compare(scenario.expect, result))
        out["errors"] = len(result.errors)
        _cpu, hwm = proc_stat(responder_pid(lab, "h0"))
        out["responder_rss_mb"] = round(hwm / 1024, 1)
        if n == 4:
            out["idle"] = idle_cpu(lab, n)
        if with_nmap:
            out["nmap_wall_s"] = round(nmap_all(lab, n), 3)
            out["nmap_over_mesh"] = round(out["nmap_wall_s"] / out["mesh_wall_s"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4,8,16,32", help="comma-separated lab sizes (2-64)")
    parser.add_argument("--no-nmap", action="store_true", help="skip the nmap comparison")
    args = parser.parse_args()
    sizes = [max(2, min(64, int(s))) for s in args.sizes.split(",")]
    with_nmap = not args.no_nmap and shutil.which("nmap") is not None
    if not with_nmap:
        print("nmap not installed (or --no-nmap): mesh figures only")
    rows = []
    for n in sizes:
        row = run_size(n, with_nmap)
        rows.append(row)
        nm = f", nmap {row['nmap_wall_s']} s (x{row['nmap_over_mesh']})" if "nmap_wall_s" in row else ""
        print(f"{n:>3} hosts: {row['cells']} cells, mesh {row['mesh_wall_s']} s (target <= {row['target_s']} s){nm}; "
              f"unknown {row['unknown_cells']}, mismatches {row['mismatches']}, errors {row['errors']}; "
              f"responder RSS {row['responder_rss_mb']} MB; lab up {row['lab_up_s']} s", flush=True)
        if "idle" in row:
            idle = row["idle"]
            print(f"     responder CPU under {idle['load_seconds']} s of unrelated TCP load: "
                  f"{idle['responder_cpu_seconds']} s ({idle['responder_cpu_percent']} %)", flush=True)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
