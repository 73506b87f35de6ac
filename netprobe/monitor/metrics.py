"""Prometheus metrics of a WatchState, with prometheus-client.

Per-flow series exist only for flows that are blocked or unknown (``netprobe_flow_blocked``), so
a healthy cluster of N hosts costs a handful of series, not N^2 per check, and a fixed flow's
series disappears at the next scrape after the run that saw it fixed. RTTs go into one
histogram per check, never per pair.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from netprobe.core.result import Reach, Result
from netprobe.monitor.state import WatchState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RTT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StateCollector(Collector):
    """Gauges read from the state at scrape time: what the last run saw, nothing older."""

    def __init__(self, state: WatchState):
        self.state = state

    def collect(self):
        state = self.state
        blocked = GaugeMetricFamily("netprobe_flow_blocked",
                                    "1 for each flow the last run found blocked (where: where it died) or unknown "
                                    "(where=unknown); allowed flows have no series; family: 4 or 6, the "
                                    "address family it was probed over",
                                    labels=["check", "family", "src", "dst", "where"])
        cells = GaugeMetricFamily("netprobe_cells", "Cells of the last run by check, family and reach",
                                  labels=["check", "family", "reach"])
        up = GaugeMetricFamily("netprobe_agent_up", "1 when the host's responder answered both rounds of the last run",
                               labels=["host"])
        last = state.last
        if last is not None:
            counts: dict[tuple[str, int], dict[str, int]] = {}
            for lane in [(c.get("id"), 4) for c in last.checks if c.get("family", 4) == 4] \
                    + [(c.check, c.family) for c in last.cells]:
                counts.setdefault(lane, {str(r): 0 for r in Reach})
            for c in last.cells:
                counts[(c.check, c.family)][str(c.reach)] += 1
                if c.reach is not Reach.ALLOWED:
                    where = str(c.where) if c.reach is Reach.BLOCKED and c.where else "unknown"
                    blocked.add_metric([c.check, str(c.family), c.src, c.dst, where], 1)
            for (check, family), by_reach in counts.items():
                for reach, n in by_reach.items():
                    cells.add_metric([check, str(family), reach], n)
            for host, ok in state.agents_up().items():
                up.add_metric([host], 1 if ok else 0)
        yield blocked
        yield cells
        yield up
        hosts = GaugeMetricFamily("netprobe_hosts", "Hosts in the last run's inventory")
        hosts.add_metric([], 0 if last is None else len(last.hosts))
        yield hosts
        if state.last_finished is not None:
            ts = GaugeMetricFamily("netprobe_last_run_timestamp_seconds",
                                   "Unix time the last run (complete or partial) finished")
            ts.add_metric([], state.last_finished.timestamp())
            yield ts
        if state.last_duration is not None:
            dur = GaugeMetricFamily("netprobe_run_duration_seconds", "How long the last run took")
            dur.add_metric([], state.last_duration)
            yield dur
        interval = GaugeMetricFamily("netprobe_watch_interval_seconds", "The configured --interval")
        interval.add_metric([], state.interval)
        yield interval


class WatchMetrics:
    """The registry `netprobe watch` serves on /metrics."""

    def __init__(self, state: WatchState):
        disable_created_metrics()  # no *_created series: they double the count and alert on nothing
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(state))
        self.runs = Counter("netprobe_runs", "Runs by outcome: complete, partial (an agent failed), failed (no result)",
                            ["outcome"], registry=self.registry)
        for outcome in ("complete", "partial", "failed"):
            self.runs.labels(outcome)  # every outcome exported from the start, at 0
        self.rtt = Histogram("netprobe_flow_rtt_seconds", "Round-trip time of allowed flows' probes, per check",
                             ["check"], buckets=RTT_BUCKETS, registry=self.registry)

    def observe_run(self, result: Result) -> None:
        self.runs.labels("partial" if result.errors else "complete").inc()
        for c in result.cells:
            if c.reach is Reach.ALLOWED and c.rtt_ms is not None:
                self.rtt.labels(c.check).observe(c.rtt_ms / 1000.0)

    def observe_failure(self) -> None:
        self.runs.labels("failed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
