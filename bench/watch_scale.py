#!/usr/bin/env python3
"""`netprobe watch` at N simulated hosts: what one watch cycle costs beyond its mesh.

The watch's own pieces run as `netprobe watch` runs them (orchestration/watch.py one_run, then a
Prometheus scrape of /metrics, the live page's /live fragment and the whole page), against N
simulated agents (bench/sim_agents.py: the real signed API over unix sockets, five planted
failures), for a few cycles: seconds per piece and the process's RSS after each.

    .venv/bin/python bench/watch_scale.py [--hosts 1000] [--runs 3]   (no root needed)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MB."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) / 1024
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)


def measure(hosts: int, runs: int) -> list[dict]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sim_agents
    import trio

    from netprobe.monitor import metrics as metrics_mod
    from netprobe.monitor import state as state_mod
    from netprobe.monitor.metrics import WatchMetrics
    from netprobe.monitor.page import live, render_page
    from netprobe.monitor.state import WatchState
    from netprobe.orchestration.watch import WatchConfig, file_source, one_run

    timings: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    rows = []
    with sim_agents.running(hosts) as (inventory, _pid):
        state = WatchState(interval=60, source="bench")
        metrics = WatchMetrics(state)
        state_mod.WatchState.record = timed("record_s", state_mod.WatchState.record)
        metrics_mod.WatchMetrics.observe_run = timed("observe_run_s", metrics_mod.WatchMetrics.observe_run)
        cfg = WatchConfig(source=file_source(inventory), source_name="bench", interval=60, timeout=0.2, retries=0)
        for run in range(1, runs + 1):
            timings.clear()
            t0 = time.perf_counter()
            trio.run(one_run, cfg, state, metrics)
            row: dict = {"hosts": hosts, "run": run, "cycle_s": round(time.perf_counter() - t0, 2)}
            row.update({k: round(v, 3) for k, v in timings.items()})
            row["rss_after_run_mb"] = rss_mb()[0]
            t0 = time.perf_counter()
            body = metrics.render()
            row["metrics_render_s"] = round(time.perf_counter() - t0, 3)
            row["metrics_kb"] = round(len(body) / 1024, 1)
            row["metrics_series"] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            t0 = time.perf_counter()
            fragment = live(state, run)
            row["live_s"] = round(time.perf_counter() - t0, 3)
            row["live_kb"] = round(len(json.dumps(fragment)) / 1024, 1)
            t0 = time.perf_counter()
            page = render_page(state, poll_seconds=5)
            row["page_s"] = round(time.perf_counter() - t0, 3)
            row["page_kb"] = round(len(page) / 1024, 1)
            row["rss_mb"], row["peak_rss_mb"] = rss_mb()
            row["cells"] = state.last.counts()["cells"] if state.last else 0
            row["blocked"] = state.last.counts()["blocked"] if state.last else 0
            row["timeline"] = len(state.timeline)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000, help="simulated hosts (3-1024)")
    parser.add_argument("--runs", type=int, default=3, help="watch cycles (1-10)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = measure(max(3, min(args.hosts, 1024)), max(1, min(args.runs, 10)))
    for r in rows:
        print(f"{r['hosts']} hosts, run {r['run']}: cycle {r['cycle_s']} s (record {r.get('record_s')} s, "
              f"metrics update {r.get('observe_run_s')} s); /metrics {r['metrics_render_s']} s "
              f"({r['metrics_series']} series, {r['metrics_kb']} KB); /live {r['live_s']} s ({r['live_kb']} KB); "
              f"page {r['page_s']} s ({r['page_kb']} KB); RSS {r['rss_mb']} MB, peak {r['peak_rss_mb']} MB; "
              f"{r['cells']} cells, {r['blocked']} blocked, timeline {r['timeline']}")
    print(f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
