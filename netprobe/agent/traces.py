"""The destination's half of the explain round: traces armed on this host's ingress, each held
by a task of its own from ``arm`` until ``collect`` (or until ``hold`` seconds pass, or the agent
stops), so its rule finder's table never outlives the round (docs/design.md "The explain round").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import trio

from netprobe.agent.protocol import Refused, UnknownRun
from netprobe.core.trace import Flow, NotNamed, RuleFound
from netprobe.errors import AgentError
from netprobe.net.rulefinder import RuleFinder

MAX_ARMED = 4  # runs whose traces are armed at once on one agent; beyond: 429
log = logging.getLogger("netprobe.agent.traces")


class _Armed:
    def __init__(self, flows: Sequence[Flow]):
        self.flows = tuple(flows)
        self.asked = trio.Event()
        self.done = trio.Event()
        self.expected: Mapping[Flow, int] = {}
        self.timeout = 0.5
        self.rules: dict[Flow, RuleFound | NotNamed] = {}


class ArmedTraces:
    """``await nursery.start(traces.serve)`` first: every armed trace is a task in its nursery,
    so stopping the agent removes them all (the rule finder's exit runs on cancel too)."""

    def __init__(self, finder: Callable = RuleFinder, *, limit: int = MAX_ARMED):
        self.finder = finder
        self.limit = limit
        self._armed: dict[str, _Armed] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def __len__(self) -> int:
        return len(self._armed)

    async def arm(self, run_id: str, flows: Sequence[Flow], hold: float) -> int:
        """Trace ``flows`` on ingress until collected or ``hold`` seconds pass; returns how many."""
        if self._nursery is None:
            raise AgentError("this agent is not serving traces")
        if run_id in self._armed:
            raise AgentError(f"run {run_id}: its traces are armed already")
        if len(self._armed) >= self.limit:
            raise Refused(f"busy: traces of {len(self._armed)} runs are armed (at most {self.limit})", retry_after=1)
        try:
            await self._nursery.start(self._hold, run_id, _Armed(flows), hold)
        except Exception as exc:  # the rule finder could not start: nothing is armed
            log.warning("cannot arm traces for run %s: %s", run_id, exc)
            raise AgentError(f"cannot arm the trace: {exc}") from None
        return len(flows)

    async def _hold(self, run_id: str, armed: _Armed, hold: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with self.finder([(f, "ingress") for f in armed.flows]) as finder:
                self._armed[run_id] = armed
                started = True
                task_status.started()
                with trio.move_on_after(hold):
                    await armed.asked.wait()
                if armed.asked.is_set():
                    armed.rules = dict(await finder.results(expected_packets=armed.expected, timeout=armed.timeout))
        except Exception as exc:
            if not started:
                raise
            log.warning("the trace of run %s failed: %s", run_id, exc)  # never into the agent's nursery
            armed.rules = armed.rules or {f: NotNamed(f"the rule finder failed: {exc}") for f in armed.flows}
        finally:
            if self._armed.get(run_id) is armed:
                del self._armed[run_id]
            armed.done.set()

    async def collect(self, run_id: str, expected: Mapping[Flow, int],
                      timeout: float) -> dict[Flow, RuleFound | NotNamed]:
        """The rule of each armed flow (``expected``: copies its source sent); the trace is removed
        before this returns."""
        armed = self._armed.get(run_id)
        if armed is None:
            raise UnknownRun(f"no trace armed for run {run_id} (never armed, or its hold time passed)")
        if armed.asked.is_set():
            raise AgentError(f"run {run_id}: its traces are being collected already")
        armed.expected = {f: n for f, n in expected.items() if f in set(armed.flows)}
        armed.timeout = timeout
        armed.asked.set()
        await armed.done.wait()
        return {f: armed.rules.get(f, NotNamed("the rule finder gave no answer for this flow")) for f in armed.flows}


__all__ = ["ArmedTraces", "MAX_ARMED"]
