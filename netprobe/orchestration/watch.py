"""`netprobe watch`: the mesh again and again, every ``interval`` seconds, while serving the
state (metrics, live page, last result) over HTTP.

Each run re-reads its inventory from its source (a file, or the cluster's API), so nodes that
join are probed from their first run on and Typha moving moves the typha column. A run that
cannot read its inventory counts as ``failed`` and the watch goes on with the next one.

Sampling for big clusters plugs in at ``RunPlanner``: it gets the whole inventory and the run
number and returns what this run probes. Today's planner is the full mesh.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import trio

from netprobe.core.inventory import Inventory
from netprobe.errors import NetprobeError

log = logging.getLogger("netprobe.watch")

InventorySource = Callable[[], Awaitable[Inventory]]


class RunPlanner(Protocol):
    """What one run probes, from the whole inventory (the seam for sampling big clusters)."""

    def __call__(self, inventory: Inventory, run: int) -> Inventory: ...


def full_mesh(inventory: Inventory, run: int) -> Inventory:
    return inventory


def file_source(path: str) -> InventorySource:
    """The inventory file, re-read every run (an edit takes effect at the next run)."""
    async def read() -> Inventory:
        from netprobe.config import load_inventory

        return load_inventory(path)

    return read


def cluster_source(settings: dict, token_file: str | None) -> InventorySource:
    """The inventory from the Kubernetes API, rebuilt every run (in a thread: the client blocks).
    Notes (a node skipped, ...) are logged when they change, not every run."""
    said: list[list[str]] = [[]]

    async def read() -> Inventory:
        from netprobe.kube.build import to_inventory
        from netprobe.kube.client import build_from_cluster

        built, _server = await trio.to_thread.run_sync(lambda: build_from_cluster(settings, token_file))
        if built.notes != said[0]:
            for note in built.notes:
                log.warning("%s", note)
            said[0] = list(built.notes)
        return to_inventory(built)

    return read


@dataclass
class WatchConfig:
    source: InventorySource
    source_name: str
    interval: float
    profile: str = "calico"
    checks: str | None = None
    token_file: str | None = None
    timeout: float = 1.0
    retries: int = 1
    webhook: str | None = None
    planner: RunPlanner = full_mesh
    max_runs: int | None = None  # None: until cancelled
    run_mesh: Callable | None = None  # injectable for tests; default orchestration.mesh_run.run_mesh
    on_run: Callable | None = None   # called after every attempt (tests, logging)
    version: list[int] = field(default_factory=lambda: [0])


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def one_run(cfg: WatchConfig, state, metrics) -> None:
    """Read the inventory, run the mesh, record it; a failure to get a result is recorded too."""
    from netprobe.config import inventory_token, parse_checks

    started = time.monotonic()
    try:
        inventory = cfg.planner(await cfg.source(), state.runs + 1)
        selected = parse_checks(cfg.profile, cfg.checks, apiserver_port=inventory.apiserver_port,
                                vxlan_port=inventory.vxlan_port, custom=inventory.custom_checks)
        token = inventory_token(inventory, cfg.token_file)
        if cfg.run_mesh is None:
            from netprobe.orchestration.mesh_run import run_mesh
        else:
            run_mesh = cfg.run_mesh
        result = await run_mesh(inventory, selected, token=token, timeout=cfg.timeout, retries=cfg.retries,
                                profile=None if cfg.checks else cfg.profile)
    except Exception as exc:  # a watch outlives a bad run: count it, say it, go on (Cancelled is not caught)
        message = str(exc) if isinstance(exc, NetprobeError) else f"{type(exc).__name__}: {exc}"
        state.record_failure(message, when=_now(), duration=time.monotonic() - started)
        metrics.observe_failure()
        cfg.version[0] += 1
        if isinstance(exc, NetprobeError):
            log.error("run failed: %s", message)
        else:
            log.exception("run failed: %s", message)
        return
    duration = time.monotonic() - started
    events = state.record(result, when=_now(), duration=duration)
    metrics.observe_run(result)
    cfg.version[0] += 1
    counts = result.counts()  # from the store's tables: no Cell per cell
    log.info("run %d: %d hosts, %d cells: %d allowed, %d blocked, %d unknown, %d errors, %.2f s", state.runs,
             len(result.hosts), counts["cells"], counts["allowed"], counts["blocked"], counts["unknown"],
             len(result.errors), duration)
    for e in events:
        log.info("%s", e.text)
    if events and cfg.webhook:
        from netprobe.monitor.webhook import post_changes

        await post_changes(cfg.webhook, events, run=state.runs, source=cfg.source_name)


async def watch_loop(cfg: WatchConfig, state, metrics) -> None:
    """Run every ``interval`` seconds from the start of the previous run (at once if it overran)."""
    n = 0
    while cfg.max_runs is None or n < cfg.max_runs:
        n += 1
        started = trio.current_time()
        await one_run(cfg, state, metrics)
        if cfg.on_run is not None:
            cfg.on_run(state)
        if cfg.max_runs is not None and n >= cfg.max_runs:
            break
        await trio.sleep_until(started + cfg.interval)


async def serve_http(app, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` with hypercorn on host:port; ``started(binds)`` once listening.

    The socket is bound here, not by hypercorn, so a port in use is one ``ConfigError`` line
    (exit 2) instead of a traceback from inside hypercorn's nurseries.
    """
    import socket

    from hypercorn.config import Config
    from hypercorn.trio import serve

    from netprobe.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--listen") from None
    real_host, real_port = sock.getsockname()[:2]
    shown = f"[{real_host}]" if family == socket.AF_INET6 else real_host
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket from here on
    config.errorlog = logging.getLogger("netprobe.watch.http")
    config.errorlog.setLevel(logging.WARNING)  # not hypercorn's "Running on ...": the command says it
    config.accesslog = None
    config.include_server_header = False
    config.graceful_timeout = 1.0

    class _Started:
        def started(self, binds=None):
            task_status.started([f"http://{shown}:{real_port}"])

    await serve(app, config, task_status=_Started())


async def run_watch(cfg: WatchConfig, host: str, port: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve and loop until cancelled (or ``max_runs`` done, then keep serving until cancelled)."""
    from netprobe.monitor.app import build_watch_app
    from netprobe.monitor.metrics import WatchMetrics
    from netprobe.monitor.state import WatchState

    state = WatchState(interval=cfg.interval, source=cfg.source_name)
    metrics = WatchMetrics(state)
    app = build_watch_app(state, metrics, version=lambda: cfg.version[0])
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_http, app, host, port)
        task_status.started((binds, state))
        await watch_loop(cfg, state, metrics)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("netprobe.watch")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
