"""One-shot probing from this host (``netprobe probe``): the sender alone, no responder."""

from __future__ import annotations

import os
import socket as socket_mod
from collections.abc import Sequence

from netprobe.core.checks import Check
from netprobe.core.result import Cell
from netprobe.core.session import Outcome, ProbeSession, Target, key_from_token
from netprobe.core.verdict import classify_cell


def random_probe_id_base() -> int:
    return int.from_bytes(os.urandom(4), "big")


async def probe_targets(
    source: str,
    targets: Sequence[Target],
    *,
    key: bytes,
    window: float,
    retries: int,
    vni: int = 1,
    io=None,
) -> tuple[list[Outcome], dict]:
    """Probe ``targets`` from ``source``; returns the sender outcomes and capture statistics."""
    from netprobe.net.prober import open_probe_io, run_session

    session = ProbeSession(key, source, targets, window=window, retries=retries,
                           first_id=random_probe_id_base(), vni=vni)
    own_io = io is None
    io = io or open_probe_io()
    try:
        outcomes = await run_session(session, io)
        stats = dict(session.stats)
        stats["kernel_drops"] = io.kernel_drops() if own_io else 0
    finally:
        if own_io:
            io.close()
    return outcomes, stats


def outcome_cell(outcome: Outcome, src_name: str, dst_name: str) -> Cell:
    """A cell from the sender's evidence alone (reach unknown where the sender can't know)."""
    t = outcome.target
    return classify_cell(t.check, src_name, dst_name, t.address, outcome.evidence, outcome.rtt_ms)


def run_probe(target: str, checks: Sequence[Check], *, timeout: float, retries: int, vni: int = 1,
              token: str | None = None) -> tuple[list[Cell], dict]:
    """Resolve ``target``, pick the source the kernel would use, probe every check once."""
    import trio

    from netprobe.net.route import resolve_target, route_to

    address = resolve_target(target)
    route = route_to(address)
    key = key_from_token(token) if token else os.urandom(32)
    targets = [Target(c, address, target) for c in checks]
    outcomes, stats = trio.run(lambda: probe_targets(route.source, targets, key=key, window=timeout,
                                                     retries=retries, vni=vni))
    src_name = socket_mod.gethostname()
    cells = [outcome_cell(o, src_name, target) for o in outcomes]
    stats.update(source=route.source, address=address)
    return cells, stats
