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


SIM_WINDOW = 0.2  # the shared measurement's setting: --timeout 0.2 --retries 0
SIM_RUN = 7        # --sample-run of sampled runs (the simulator precomputes that run's replies)


def _time_v(argv: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Run argv under /usr/bin/time -v: wall seconds, CPU seconds (user + system), peak RSS MB, exit code."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *argv], stdout=stdout, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0

    def field(label: str) -> float:
        return next((float(line.split()[-1]) for line in p.stderr.splitlines() if label in line), 0.0)

    return {"wall_s": round(wall, 2), "cpu_s": round(field("User time") + field("System time"), 2),
            "rss_mb": round(field("Maximum resident") / 1024, 1), "rc": p.returncode,
            "stderr": "\n".join(line for line in p.stderr.splitlines()[:3] if not line.startswith("\t"))}


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 2)


def run_simulated(n: int, sample: int | None = None, repeat: int = 1) -> dict:
    """The coordinator alone at N hosts: N simulated agents (bench/sim_agents.py, one process, a
    unix socket each, the real signed API) answer after the reply window; mesh runs as a user
    runs it, ``repeat`` times (wall, CPU and RSS: the median and the best; the load average said)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sim_agents

    netprobe = os.path.join(os.path.dirname(sys.executable), "netprobe")
    out: dict = {"hosts": n, "sample": sample, "load_before": round(os.getloadavg()[0], 2)}
    with sim_agents.running(n, (sample, SIM_RUN) if sample else None) as (inv, sim_pid):
        d = os.path.dirname(inv)
        sim_cpu0 = proc_stat(sim_pid)[0]
        res = os.path.join(d, "out.json")
        scope = ["--sample", str(sample), "--sample-run", str(SIM_RUN)] if sample else []
        argv = [netprobe, "mesh", "-i", inv, "--timeout", str(SIM_WINDOW), "--retries", "0", *scope]
        runs = [_time_v([*argv, "-o", res]) for _ in range(repeat)]
        walls, cpus, rsss = [r["wall_s"] for r in runs], [r["cpu_s"] for r in runs], [r["rss_mb"] for r in runs]
        out.update(mesh_wall_s=_median(walls), mesh_wall_best_s=min(walls),
                   overhead_s=round(_median(walls) - SIM_WINDOW, 2), overhead_best_s=round(min(walls) - SIM_WINDOW, 2),
                   mesh_cpu_s=_median(cpus), mesh_rss_mb=max(rsss), mesh_rc=runs[-1]["rc"], runs=len(runs))
        out["simulator_cpu_s_per_run"] = round((proc_stat(sim_pid)[0] - sim_cpu0) / repeat, 2)
        out["result_mb"] = round(os.path.getsize(res) / 1e6, 2)
        render = _time_v([netprobe, "diff", res, res])
        out.update(diff_s=render["wall_s"], diff_rss_mb=render["rss_mb"])
        page_path = os.path.join(d, "page.html")
        with open(page_path, "w") as f:
            page = _time_v([netprobe, "verify", "--result", res, "--baseline", res, "--format", "html"], stdout=f)
        out.update(html_build_s=page["wall_s"], html_mb=round(os.path.getsize(page_path) / 1e6, 2))
        import gzip
        import shutil as _shutil
        with open(res, "rb") as src, gzip.open(res + ".gz", "wb", compresslevel=6) as dst:
            _shutil.copyfileobj(src, dst)
        out["result_gz_mb"] = round(os.path.getsize(res + ".gz") / 1e6, 2)
        with open(os.path.join(d, "table.txt"), "w") as f:
            table = _time_v(argv, stdout=f)
        out.update(table_mesh_wall_s=table["wall_s"])
        with open(os.path.join(d, "table.txt")) as f:
            text = f.read()
        out["table_lines"] = text.count("\n")
        out["table_widest"] = max(map(len, text.splitlines()), default=0)
        out["correct"] = check_simulated(res, n, sample)
        out["browser_s"] = browser_time(page_path)
    out["load_after"] = round(os.getloadavg()[0], 2)
    return out


def browser_time(page: str) -> float | None:
    """Seconds for headless Chromium to load and draw the page (None without chromium/selenium)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1200"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        t0 = time.perf_counter()
        driver.get("file://" + os.path.abspath(page))
        while not driver.execute_script("return window.netprobeReady || null"):
            if time.perf_counter() - t0 > 60:
                return None
            time.sleep(0.05)
        return round(time.perf_counter() - t0, 2)
    finally:
        driver.quit()


def check_simulated(path: str, n: int, sample: int | None) -> bool:
    """Every planted blocked cell reported blocked at its place, every other cell allowed."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sim_agents

    from netprobe.config import load_result

    result = load_result(path)
    store = result.store
    planted = sim_agents.blocked_cells(n)
    problems = {(c.check, c.src, c.dst): c for c in store.problems() if c.family == 4}
    for key, fate in planted.items():
        cell = problems.pop(key, None)
        if cell is None:
            if sample and store.code(*key) == 0:
                continue  # not in this run's sample
            print(f"  planted {key} not reported blocked", flush=True)
            return False
        want = "destination-ingress" if fate == "ingress" else "network"
        if str(cell.where) != want:
            print(f"  {key}: where {cell.where}, want {want}", flush=True)
            return False
    if problems:
        print(f"  {len(problems)} cells reported not allowed that were: {list(problems)[:3]}", flush=True)
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4,8,16,32", help="comma-separated lab sizes (2-64)")
    parser.add_argument("--no-nmap", action="store_true", help="skip the nmap comparison")
    parser.add_argument("--simulated", default=None, metavar="SIZES",
                        help="measure the coordinator alone against simulated agents, e.g. 100,300,1000 (no root)")
    parser.add_argument("--sample", type=int, default=None, help="with --simulated: mesh --sample K")
    parser.add_argument("--repeat", type=int, default=3, help="with --simulated: mesh runs per size (median, best)")
    args = parser.parse_args()
    if args.simulated:
        for n in [int(s) for s in args.simulated.split(",")]:
            row = run_simulated(n, args.sample, max(1, args.repeat))
            print(f"{n:>5} hosts{f' --sample {args.sample}' if args.sample else ''}: mesh {row['mesh_wall_s']} s "
                  f"(best {row['mesh_wall_best_s']}), overhead beyond the window {row['overhead_s']} s "
                  f"(best {row['overhead_best_s']}), CPU {row['mesh_cpu_s']} s, peak RSS {row['mesh_rss_mb']} MB, "
                  f"result {row['result_mb']} MB ({row['result_gz_mb']} MB gzipped), HTML page "
                  f"{row['html_build_s']} s to build, {row['browser_s']} s in Chromium; correct: {row['correct']}; "
                  f"load {row['load_before']} -> {row['load_after']}", flush=True)
            print(json.dumps(row), flush=True)
        return
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
