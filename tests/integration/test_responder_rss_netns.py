"""A real responder facing 1,000 peers stays under 100 MB (#12): bench/responder_rss.py's
namespaces, 1,000 peer addresses each sending the calico probes plus vxlan and wireguard through
netprobe's prober, the responder's RSS read from /proc (the bench prints the figures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

BENCH = Path(__file__).resolve().parents[2] / "bench" / "responder_rss.py"


def test_a_responder_facing_1000_peers_stays_under_100_mb():
    spec = importlib.util.spec_from_file_location("responder_rss", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.measure(peers=1000, rounds=1, prefix="nptest-rss")
    print(f"\nresponder RSS ready {figures['rss_ready_mb']} MB, peak {figures['rss_peak_mb']} MB after 1,000 peers")
    assert figures["observations_per_run"] == 1000 * len(bench.CHECK_IDS)
    assert figures["observed_sources"] == 1000  # every peer's probes reached it: the load was real
    last = figures["milestones"][-1]
    assert last["answered"] == last["sent"] == 1000 * len(bench.CHECK_IDS)
    assert figures["rss_peak_mb"] <= 100
