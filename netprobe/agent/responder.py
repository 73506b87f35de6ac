"""The responder daemon: the real ``AgentService`` behind the control API.

It owns the capture sockets (an AF_PACKET tap and raw TCP/UDP/IPIP sockets, each behind a BPF
filter that passes only probes and this host's answers to them), feeds them to the pure
``ResponderCore``, sends its echoes, and runs the prober when an authenticated caller asks.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict

import trio

from netprobe.agent.protocol import ProbeRequest
from netprobe.core import bpf, templates
from netprobe.core.compact_wire import compact_observations, compact_outcomes
from netprobe.core.cookies import key_from_token
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.responder import ResponderCore
from netprobe.core.wire import IPPROTO_IPIP
from netprobe.net import sockets
from netprobe.net.capture import CaptureSet, open_captures

RUN_MEMORY = 256          # run ids remembered (for observations since a run started)
RUN_LOOKBACK = 2.0        # seconds before a run's start whose observations still belong to it
UNKNOWN_RUN_WINDOW = 120  # an unknown run id gets the last two minutes


class Responder:
    """One per host. ``await nursery.start(responder.run)`` returns once every capture is open."""

    def __init__(self, token: str, *, name: str | None = None):
        self.key = key_from_token(token)
        self.name = name or socket.gethostname()
        self.core = ResponderCore(self.key)
        self.started_at = time.monotonic()
        self._runs: OrderedDict[str, float] = OrderedDict()
        self._compact_runs: set[str] = set()  # runs whose probe request asked for the compact form
        self._probe_lock = trio.Lock()
        self._sender: socket.socket | None = None
        self._captures = CaptureSet([])
        self.echo_send_errors = 0

    # ------------------------------------------------------------ capture loop

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._sender = sockets.open_sender()
        try:
            self._captures = open_captures(bpf.responder_filter, (socket.IPPROTO_TCP, socket.IPPROTO_UDP, IPPROTO_IPIP),
                                           outgoing_too=True)
            templates.load_designer()  # scapy's import (~0.4 s) now, not inside the first mesh
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._captures.drain_all, self._on_packet)
                task_status.started()
        finally:
            self._sender.close()
            self._captures.close()

    def _on_packet(self, data: bytes, via: Via, outgoing: bool, now: float, wall_ns: int) -> None:
        echo = self.core.on_packet(data, via=via, outgoing=outgoing, now=now, wall_ns=wall_ns)
        if echo is not None and sockets.send_packet(self._sender, echo.data, echo.address) is not None:
            self.echo_send_errors += 1  # e.g. this host's OUTPUT refused it

    def kernel_drops(self) -> int:
        """Captured packets the kernel dropped since the last call (the mesh reports them)."""
        return self._captures.kernel_drops()

    # ------------------------------------------------------------ AgentService

    async def health(self) -> dict:
        return {
            "host": self.name,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "captures": len(self._captures),
            "stats": {**self.core.stats, "echo_send_errors": self.echo_send_errors},
            "kernel_drops": self.kernel_drops(),
        }

    def _remember_run(self, run_id: str) -> None:
        self._runs[run_id] = trio.current_time() - RUN_LOOKBACK
        self._runs.move_to_end(run_id)
        while len(self._runs) > RUN_MEMORY:
            self._compact_runs.discard(self._runs.popitem(last=False)[0])

    async def run_probes(self, request: ProbeRequest) -> dict:
        """Probe the requested targets from this host (one session per source address)."""
        from netprobe.net.route import route_to
        from netprobe.net.prober import probe_targets

        self._remember_run(request.run_id)
        began = trio.current_time()
        checks = request.check_map()
        by_source: dict[str, list[ProbeTarget]] = {}
        for t in request.targets:
            source = route_to(t.address).source
            by_source.setdefault(source, []).extend(ProbeTarget(checks[c], t.address, t.name) for c in t.checks)
        outcomes, stats = [], {"kernel_drops": 0, "matched": 0, "ignored": 0, "malformed": 0}
        async with self._probe_lock:
            results: list = []

            async def one(source, targets):
                pace = {} if request.rate is None else {"rate": request.rate}
                results.append(await probe_targets(source, targets, key=self.key, window=request.timeout,
                                                   retries=request.retries, vni=request.vni, **pace))

            async with trio.open_nursery() as nursery:
                for source, targets in by_source.items():
                    nursery.start_soon(one, source, targets)
        for outs, st in results:
            outcomes.extend(o.to_dict() for o in outs)
            for k in stats:
                stats[k] += st.get(k, 0)
        stats["seconds"] = round(trio.current_time() - began, 4)
        if request.compact:  # plain outcomes as rows, and this run's observations too (core/compact_wire.py)
            self._compact_runs.add(request.run_id)
            outcomes, plain = compact_outcomes(outcomes, [t.name for t in request.targets])
            return {"run_id": request.run_id, "host": self.name, "outcomes": outcomes, "plain": plain, "stats": stats}
        return {"run_id": request.run_id, "host": self.name, "outcomes": outcomes, "stats": stats}

    async def observations(self, run_id: str) -> dict:
        since = self._runs.get(run_id, trio.current_time() - UNKNOWN_RUN_WINDOW)
        observations = self.core.observations(since)
        extra = {}
        if run_id in self._compact_runs:
            observations, extra["plain"] = compact_observations(observations)
        return {"run_id": run_id, "host": self.name, "observations": observations, **extra,
                "stats": {**self.core.stats, "echo_send_errors": self.echo_send_errors,
                          "kernel_drops": self.kernel_drops()}}

    async def preflight(self, params: dict) -> dict:
        from netprobe.preflight import collect

        report = collect("/", pool_cidrs=params.get("pool_cidrs"), service_cidr=params.get("service_cidr"),
                         profile=params.get("profile", "calico"))
        return report.to_dict()


async def serve_responder(token: str, listen: str, *, name: str | None = None, tls_cert=None, tls_key=None,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Captures first, then the control API; ``started(url)`` once both are ready."""
    from netprobe.agent.api import build_app
    from netprobe.agent.server import serve_api

    responder = Responder(token, name=name)
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.run)
        app = build_app(responder, token=token)
        url = await nursery.start(lambda task_status: serve_api(app, listen, tls_cert=tls_cert, tls_key=tls_key,
                                                                 task_status=task_status))
        task_status.started(url)

