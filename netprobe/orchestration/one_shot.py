"""One-shot probing from this host (``netprobe probe``): the sender alone, no responder."""

from __future__ import annotations

import os
import socket as socket_mod
from collections.abc import Sequence

from netprobe.core.checks import Check
from netprobe.core.result import Cell
from netprobe.core.keys import probe_key
from netprobe.core.events import Outcome, ProbeTarget
from netprobe.core.verdict import classify_cell


def outcome_cell(outcome: Outcome, src_name: str, dst_name: str) -> Cell:
    """A cell from the sender's evidence alone (reach unknown where the sender can't know)."""
    t = outcome.target
    return classify_cell(t.check, src_name, dst_name, t.address, outcome.evidence, outcome.rtt_ms)


def run_probe(target: str, checks: Sequence[Check], *, timeout: float, retries: int, vni: int = 1,
              token: str | None = None, address: str | None = None, mtu: int | None = None) -> tuple[list[Cell], dict]:
    """Resolve ``target`` (unless ``address`` is its address already), pick the source the kernel
    would use, probe every check once (an mtu check at ``mtu`` bytes, else this host's interface
    MTU towards the target)."""
    import trio

    from netprobe.net.route import resolve_target, route_to

    address = address or resolve_target(target)
    route = route_to(address)
    key = probe_key(token) if token else os.urandom(32)
    targets = [ProbeTarget(c, address, target) for c in checks]
    from netprobe.core import queues
    from netprobe.net.prober import probe_targets
    from netprobe.net.queues import read_counters

    before = read_counters()
    outcomes, stats = trio.run(lambda: probe_targets(route.source, targets, key=key, window=timeout,
                                                     retries=retries, vni=vni, mtu=mtu))
    stats.update(queues.moved(before, read_counters()))  # this host's own drops meanwhile
    src_name = socket_mod.gethostname()
    cells = [outcome_cell(o, src_name, target) for o in outcomes]
    stats.update(source=route.source, address=address)
    return cells, stats
