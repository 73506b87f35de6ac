"""The responder daemon: the real ``AgentService`` behind the control API.

It owns the capture sockets (per family AF_PACKET taps and raw sockets, each behind a BPF filter
that passes only probes and this host's answers to them: over IPv4 taps bound to ETH_P_ALL --
probes arriving, its answers leaving -- and to ETH_P_IP, raw TCP/UDP/IPIP sockets; over IPv6 a
tap bound to ETH_P_IPV6, raw TCP/UDP sockets), feeds them to the pure ``ResponderCore``, sends its
echoes, and runs the prober when an authenticated caller asks. A host without IPv6 (the kernel
refuses AF_INET6 sockets) keeps its IPv4 captures.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence

import trio

from netprobe.agent.protocol import (MAX_PROBES, MAX_TARGETS, ArmRequest, CollectReply, CollectRequest, ProbeRequest,
                                     Refused, ResendReply, ResendRequest)
from netprobe.agent.traces import ArmedTraces
from netprobe.core import bpf, queues, templates
from netprobe.core.budget import NotAllowed, OverBudget, ProbeBudget
from netprobe.core.compact_wire import compact_outcomes, compact_records
from netprobe.core.keys import probe_key
from netprobe.core.mtu import BUDGET_WEIGHT
from netprobe.core.events import ProbeTarget, Via
from netprobe.core.parse import ip_bytes, ip_str
from netprobe.core.responder import ResponderCore
from netprobe.core.wire import IPPROTO_IPIP
from netprobe.net import sockets
from netprobe.net.capture import CaptureSet, open_captures, open_captures6
from netprobe.net.queues import read_counters
from netprobe.net.rulefinder import sweep_leftovers

RUN_MEMORY = 256          # run ids remembered (for observations since a run started)
RUN_LOOKBACK = 2.0        # seconds before a run's start whose observations still belong to it
UNKNOWN_RUN_WINDOW = 120  # an unknown run id gets the last two minutes
QUEUE = 2                 # run_probes requests that may wait behind the one probing; beyond: 429
# probes remembered until the coordinator asks: what two runs of the largest full mesh send this
# host at once (1,023 peers x 18 checks each); probes whose answer (it leaves at once) can still
# be matched to them: a few seconds' worth (an unmatched answer only leaves the observation's
# `answered` unset). ~0.3 KB a probe a table (bench/responder_rss.py)
MAX_OBSERVATIONS = 2 * MAX_PROBES
MAX_PENDING = 8192
log = logging.getLogger("netprobe.agent.responder")


class OwnAddresses:
    """Which addresses are this host's own unicast addresses (``route.is_local_unicast``), each
    answer kept ``ttl`` seconds; at most ``limit`` kept (an echo's source is the address a probe
    was sent to, so these are few)."""

    def __init__(self, *, ttl: float = 10.0, limit: int = 256):
        self.ttl, self.limit = ttl, limit
        self._known: dict[bytes, tuple[bool, float]] = {}

    def is_own(self, addr: bytes) -> bool:
        now = time.monotonic()
        known = self._known.get(addr)
        if known is not None and now - known[1] < self.ttl:
            return known[0]
        from netprobe.net.route import is_local_unicast

        if len(self._known) >= self.limit:
            self._known.clear()
        own = is_local_unicast(ip_str(addr))
        self._known[addr] = (own, now)
        return own


class Responder:
    """One per host. ``await nursery.start(responder.run)`` returns once every capture is open."""

    def __init__(self, token: str, *, name: str | None = None, budget: ProbeBudget | None = None):
        self.key = probe_key(token)  # the secret itself never keys a probe
        self.budget = budget or default_budget()
        self._waiting = 0  # run_probes requests queued behind the one probing
        self.name = name or socket.gethostname()
        # a raw socket also gets what was sent to a broadcast address: an echo leaves only from
        # this host's own unicast address (docs/design.md, "Probes")
        self.own = OwnAddresses()
        self.core = ResponderCore(self.key, is_own_address=self.own.is_own, max_observations=MAX_OBSERVATIONS,
                                  max_pending=MAX_PENDING)
        self.started_at = time.monotonic()
        self._runs: OrderedDict[str, float] = OrderedDict()
        self._drops_at_start: dict[str, dict[str, int]] = {}  # run id -> drop counters when it began
        self._compact_runs: set[str] = set()  # runs whose probe request asked for the compact form
        self._probe_lock = trio.Lock()
        self._sender: socket.socket | None = None
        self._sender6: socket.socket | None = None
        self._captures = CaptureSet([])
        self.echo_send_errors = 0
        self.echo_send_dropped = 0  # of those, the ones the kernel had no room for (ENOBUFS)
        self.traces = ArmedTraces()  # the explain round's ingress traces (agent/traces.py)

    # ------------------------------------------------------------ capture loop

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        swept = sweep_leftovers()  # trace tables an agent killed while naming a rule left behind
        log.log(logging.WARNING if swept else logging.INFO, "swept %d leftover nftables trace table(s)", swept)
        self._sender = sockets.open_sender()
        try:
            marker = self.core.marker
            self._captures = open_captures(functools.partial(bpf.responder_filter, marker=marker),
                                           (socket.IPPROTO_TCP, socket.IPPROTO_UDP, IPPROTO_IPIP),
                                           leaving=bpf.answers_filter(marker=marker), ip_tap=True)
            self._open_ipv6()
            templates.load_designer()  # scapy's import (~0.4 s) now, not inside the first mesh
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._captures.drain_all, self._on_packet)
                await nursery.start(self.traces.serve)
                task_status.started()
        finally:
            self._sender.close()
            if self._sender6 is not None:
                self._sender6.close()
            self._captures.close()

    def _open_ipv6(self) -> None:
        """IPv6 captures and echo sender next to the IPv4 ones, unless this kernel has no IPv6."""
        try:
            self._sender6 = sockets.open_sender6()
            six = open_captures6(functools.partial(bpf.responder_filter6, marker=self.core.marker),
                                 (socket.IPPROTO_TCP, socket.IPPROTO_UDP))
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                raise
            log.warning("no IPv6 on this host (%s): IPv6 probes are not captured", exc.strerror)
            if self._sender6 is not None:
                self._sender6.close()
                self._sender6 = None
            return
        self._captures = CaptureSet([*self._captures.captures, *six.captures])

    def _on_packet(self, data: bytes, via: Via, outgoing: bool, now: float, wall_ns: int) -> None:
        echo = self.core.on_packet(data, via=via, outgoing=outgoing, now=now, wall_ns=wall_ns)
        if echo is None:
            return
        sender = self._sender6 if ":" in echo.address else self._sender
        err = errno.EBADF if sender is None else sockets.send_packet(sender, echo.data, echo.address)
        if err is not None:
            self.echo_send_errors += 1  # e.g. this host's OUTPUT refused it
            self.echo_send_dropped += err in (errno.ENOBUFS, errno.EAGAIN)

    def drop_counters(self) -> dict[str, int]:
        """This host's packet-drop counters now (core/queues.py), with the echoes it had no room for."""
        return {**read_counters(), "echo_send_dropped": self.echo_send_dropped}

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
        self._drops_at_start[run_id] = self.drop_counters()
        while len(self._runs) > RUN_MEMORY:
            gone = self._runs.popitem(last=False)[0]
            self._compact_runs.discard(gone)
            self._drops_at_start.pop(gone, None)

    async def run_probes(self, request: ProbeRequest) -> dict:
        """Probe the requested targets from this host (one session per source address)."""
        from netprobe.net.route import route_to
        from netprobe.net.prober import probe_targets

        checks = request.check_map()  # an mtu check's search costs BUDGET_WEIGHT probes
        cost = sum(BUDGET_WEIGHT if checks[c].pmtu else 1 for t in request.targets for c, _a, _f in t.targets())
        async with self._probing([a for t in request.targets for a in (t.address, t.address6) if a is not None], cost):
            return await self._run_probes(request, route_to, probe_targets)

    @contextlib.asynccontextmanager
    async def _probing(self, addresses: Sequence[str], probes: int) -> AsyncIterator[None]:
        """Admit a run that sends ``probes`` to ``addresses``: one run probes at a time, QUEUE more
        wait; beyond, over the budget (charged here) or outside the allow-list, refused at once."""
        if self._probe_lock.locked() and self._waiting >= QUEUE:
            raise Refused(f"busy: a run is probing and {self._waiting} wait", retry_after=1)
        try:
            self.budget.admit(list(addresses), probes, now=trio.current_time())
        except OverBudget as exc:
            raise Refused(str(exc), retry_after=exc.retry_after) from None
        except NotAllowed as exc:
            raise Refused(str(exc), status=403) from None
        self._waiting += 1
        try:
            await self._probe_lock.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._probe_lock.release()

    async def _run_probes(self, request: ProbeRequest, route_to, probe_targets) -> dict:
        self._remember_run(request.run_id)
        began = trio.current_time()
        checks = request.check_map()
        by_source: dict[str, list[ProbeTarget]] = {}
        sources: dict[str, str] = {}
        for t in request.targets:
            for cid, address, _family in t.targets():  # a dual-stack peer: one source per family
                if address not in sources:
                    sources[address] = route_to(address).source
                by_source.setdefault(sources[address], []).append(ProbeTarget(checks[cid], address, t.name))
        outcomes, stats = [], {"kernel_drops": 0, "matched": 0, "ignored": 0, "malformed": 0}
        results: list = []

        async def one(source, targets):
            pace = {} if request.rate is None else {"rate": request.rate}
            results.append(await probe_targets(source, targets, key=self.key, window=request.timeout,
                                               retries=request.retries, vni=request.vni, mtu=request.mtu, **pace))

        async with trio.open_nursery() as nursery:
            for source, targets in by_source.items():
                nursery.start_soon(one, source, targets)
        for outs, st in results:
            outcomes.extend(o.to_dict() for o in outs)
            for k in stats:
                stats[k] += st.get(k, 0)
        stats["seconds"] = round(trio.current_time() - began, 4)
        # what this host's own queues dropped meanwhile: an unanswered probe may be one of them
        stats.update(queues.moved(self._drops_at_start[request.run_id], self.drop_counters()))
        if request.compact:  # plain outcomes as rows, and this run's observations too (core/compact_wire.py)
            self._compact_runs.add(request.run_id)
            outcomes, plain = compact_outcomes(outcomes, [t.name for t in request.targets])
            return {"run_id": request.run_id, "host": self.name, "outcomes": outcomes, "plain": plain, "stats": stats}
        return {"run_id": request.run_id, "host": self.name, "outcomes": outcomes, "stats": stats}

    async def observations(self, run_id: str) -> dict:
        since = self._runs.get(run_id, trio.current_time() - UNKNOWN_RUN_WINDOW)
        extra = {}
        if run_id in self._compact_runs:
            observations, extra["plain"] = compact_records(self.core.records(since))
        else:
            observations = self.core.observations(since)
        at_start = self._drops_at_start.get(run_id)
        drops = {} if at_start is None else queues.moved(at_start, self.drop_counters())  # the whole run so far
        return {"run_id": run_id, "host": self.name, "observations": observations, **extra,
                "stats": {**self.core.stats, "echo_send_errors": self.echo_send_errors, **drops,
                          "kernel_drops": self.kernel_drops()}}

    # ------------------------------------------------------------ the explain round

    async def explain_arm(self, request: ArmRequest) -> dict:
        """Trace the flows on this host's ingress until they are collected (agent/traces.py)."""
        for i, flow in enumerate(request.flows):
            if not self.own.is_own(ip_bytes(flow.dst)):
                raise ValueError(f"flows[{i}].dst: {flow.dst} is not one of this host's addresses")
        armed = await self.traces.arm(request.run_id, request.flows, request.hold)
        return {"run_id": request.run_id, "host": self.name, "armed": armed}

    async def explain_resend(self, request: ResendRequest) -> dict:
        """Send the blocked probes again, exactly, with this host's egress trace and TTL-limited
        copies where asked; admitted and charged like a probing run."""
        from netprobe.core.events import ProbeTarget
        from netprobe.net.explain_send import ResendItem, resend

        checks = request.check_map()
        items = [ResendItem(ProbeTarget(checks[p.check], p.address, p.name), p.probe_id, p.trace, p.hops)
                 for p in request.probes]
        async with self._probing([p.address for p in request.probes], request.packets()):
            probes = await resend(items, key=self.key, window=request.timeout, vni=request.vni,
                                  max_ttl=request.max_ttl)
        return ResendReply(request.run_id, self.name, tuple(probes)).to_dict()

    async def explain_collect(self, request: CollectRequest) -> dict:
        """Name the rule of each armed flow and remove the trace."""
        rules = await self.traces.collect(request.run_id, dict(request.expected), request.timeout)
        return CollectReply(request.run_id, self.name, tuple(rules.items())).to_dict()

    async def preflight(self, params: dict) -> dict:
        from netprobe.preflight import collect

        options = {k: params[k] for k in ("requirements", "dataplane", "wireguard", "vxlan_port") if k in params}
        report = collect("/", pool_cidrs=params.get("pool_cidrs"), service_cidr=params.get("service_cidr"),
                         profile=params.get("profile", "calico"), **options)
        return report.to_dict()


def default_budget(allow=()) -> ProbeBudget:
    """Room for two full meshes of the largest inventory a minute (a watch and a manual run),
    each with an mtu check (charged ``BUDGET_WEIGHT`` probes) towards every peer."""
    per_mesh = MAX_PROBES + MAX_TARGETS * (BUDGET_WEIGHT - 1)
    return ProbeBudget(probes_per_minute=2 * per_mesh, targets_per_minute=2 * MAX_TARGETS, allow=tuple(allow))


async def serve_responder(token: str, listen: str, *, name: str | None = None, tls_cert=None, tls_key=None,
                          allow=(), task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Captures first, then the control API; ``started(url)`` once both are ready."""
    from netprobe.agent.api import build_app
    from netprobe.agent.server import serve_api

    responder = Responder(token, name=name, budget=default_budget(allow))
    async with trio.open_nursery() as nursery:
        await nursery.start(responder.run)
        app = build_app(responder, token=token)
        url = await nursery.start(lambda task_status: serve_api(app, listen, tls_cert=tls_cert, tls_key=tls_key,
                                                                 task_status=task_status))
        task_status.started(url)

