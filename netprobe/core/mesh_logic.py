"""The mesh's decisions, pure: whom each host probes, and what both ends' reports add up to.

The orchestrator only carries data between these functions and the agents (mitmproxy's
layers decide, the server executes): ``plan_mesh`` says what every agent is asked,
``join_cells`` turns the typed replies into classified cells, ``mesh_errors`` lists what made
the run partial.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from netprobe.core import queues
from netprobe.core.checks import Check, HostRef, PlannedCell, Skipped, family_of, plan_cells
from netprobe.core.matrix_store import DECODED, MatrixStore
from netprobe.core.inventory import MAX_FULL_MESH, Inventory
from netprobe.core.reports import ObservationReport, OutcomeReport
from netprobe.core.result import Cell, Evidence, Reach, Verdict, Where
from netprobe.core.verdict import classify_cell
from netprobe.errors import ConfigError


@dataclass(frozen=True)
class Peer:
    """A host to probe: its name, and per family its address and the ids of the checks wanted
    towards that address (``address``/``checks``: IPv4; ``address6``/``checks6``: IPv6)."""

    name: str
    address: str | None
    checks: tuple[str, ...]
    address6: str | None = None
    checks6: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return self._dict  # built once: one Peer is shared by every host that probes it (core/sampling.py)

    @functools.cached_property
    def _dict(self) -> dict:
        out: dict = {"name": self.name}
        if self.address is not None:  # an IPv4-only peer is what an agent older than IPv6 knows
            out.update(address=self.address, checks=list(self.checks))
        if self.address6 is not None:
            out.update(address6=self.address6, checks6=list(self.checks6))
        return out

    def targets(self) -> tuple[tuple[str, str, int], ...]:
        """(check id, address, family) of every probe towards this peer."""
        return (tuple((c, self.address, 4) for c in self.checks if self.address is not None)
                + tuple((c, self.address6, 6) for c in self.checks6 if self.address6 is not None))

    @property
    def probes(self) -> int:
        return len(self.checks) + len(self.checks6)


@dataclass(frozen=True)
class MeshPlan:
    skipped: tuple[Skipped, ...]
    peers: Mapping[str, tuple[Peer, ...]]  # every host, in inventory order -> whom it probes (maybe nobody)
    refs: tuple[HostRef, ...] = ()
    checks: tuple[Check, ...] = ()

    @property
    def cells(self) -> tuple[PlannedCell, ...]:
        """Every planned cell as an object: for small meshes and tests (``peers`` is what runs use)."""
        return tuple(plan_cells(self.refs, self.checks)[0])


def plan_mesh(inventory: Inventory, checks: Sequence[Check], *, sample: tuple[int, int] | None = None) -> MeshPlan:
    """Per host the peers (with check ids) it must probe, in inventory order; with ``sample``
    (k, run) only that run's k peers of each host (core/sampling.py)."""
    from netprobe.core.sampling import plan_peers

    most = MAX_FULL_MESH - 1  # the peers one agent probes at most (its cap, docs/design.md "Caps")
    if sample is None and len(inventory.hosts) > MAX_FULL_MESH:
        raise ConfigError(f"{len(inventory.hosts)} hosts: a full mesh asks each agent for more than its "
                          f"{most} peers; probe a rotating sample with --sample K (K <= {most})", field="--sample")
    if sample is not None and sample[0] > most:
        raise ConfigError(f"at most {most} peers per host and run, got {sample[0]}", field="--sample")
    hosts = [(h.name, h.address4, frozenset(h.roles), h.address6) for h in inventory.hosts]
    peers, skipped = plan_peers(hosts, checks, Peer, sample)
    refs = tuple(HostRef(h.name, h.address, h.roles, h.address6) for h in inventory.hosts)
    return MeshPlan(tuple(skipped), peers, refs, tuple(checks))


def join_cells(cells: Sequence[PlannedCell], sent: Mapping[str, Sequence[OutcomeReport]],
               seen: Mapping[str, Sequence[ObservationReport]], failed: Mapping[str, str]) -> list[Cell]:
    """Join each planned cell with its sender's outcome and its destination's observation.

    ``sent``/``seen`` hold the hosts whose agent answered that round; a cell whose sender gave
    no outcome is ``unknown`` (with ``failed``'s reason), one whose destination gave no
    observations keeps the sender's evidence alone. An outcome's family is its address's.
    """
    outcomes = {(host, o.check, o.name, family_of(o.address)): o for host, reports in sent.items() for o in reports}
    observed = {(host, o.src, o.probe_id): o for host, reports in seen.items() for o in reports}
    out = []
    for pc in cells:
        check, src, dst = pc.check, pc.src.name, pc.dst.name
        outcome = outcomes.get((src, check.id, dst, pc.family))
        if outcome is None:
            reason = failed.get(src, "the agent returned no outcome for this cell")
            ev = Evidence(sent=False, attempts=0, send_error=f"not probed: {reason}")
            out.append(Cell(check.id, src, dst, Reach.UNKNOWN, None, Verdict.ERROR, None, ev, pc.family))
            continue
        ev = outcome.evidence
        if dst in seen:
            ev = seen_at_destination(ev, observed.get((dst, outcome.source, outcome.probe_id)))
        out.append(classify_cell(check, src, dst, pc.dst_address, ev, outcome.rtt_ms))
    return out


def seen_at_destination(ev: Evidence, obs: ObservationReport | None) -> Evidence:
    """The sender's evidence with what the destination's agent saw of the probe (nothing at all:
    ``obs`` None). An older agent does not say ``reached_ip`` (None), unless it saw nothing."""
    if obs is None:
        return dataclasses.replace(ev, arrived=False, reached_ip=False, accepted=False, answered=False)
    return dataclasses.replace(ev, arrived=obs.arrived, reached_ip=obs.reached_ip, accepted=obs.accepted,
                               answered=obs.answered)


def mesh_errors(hosts: Sequence[str], failures: Mapping[str, tuple[str, str]],
                probe_drops: Mapping[str, int], observe_drops: Mapping[str, int],
                queue_drops: Mapping[str, tuple[str, Mapping[str, int]]] | None = None,
                unanswered: Set[str] = frozenset()) -> list[dict]:
    """The run's error lines in inventory order: each failed agent (``failures[host] = (stage,
    message)``), then each agent whose kernel dropped captured packets (its verdicts may be wrong),
    then each host in ``unanswered`` (an end of a blocked or unknown cell) whose own queues
    dropped packets while the run was on (``queue_drops[host] = (stage, counters moved)``,
    core/queues.py): the cell may be a lost packet, not a firewall."""
    errors = [{"host": h, "stage": failures[h][0], "message": failures[h][1]} for h in hosts if h in failures]
    for stage, drops, side in (("probe", probe_drops, "its probes' replies"),
                               ("observe", observe_drops, "what arrived at it")):
        errors += [{"host": h, "stage": stage,
                    "message": f"the kernel dropped {drops[h]} captured packets ({side}): its verdicts may be wrong"}
                   for h in hosts if drops.get(h)]
    for h in hosts:
        stage, moved = (queue_drops or {}).get(h, ("", {}))
        if h in unanswered and moved.get(queues.TOTAL):
            errors.append({"host": h, "stage": stage, "message": (
                f"its own queues dropped {queues.describe(moved)} while the run was on: a probe to or from it "
                "without an answer may be a lost packet, not a firewall")})
    return errors



def unanswered_hosts(store: MatrixStore) -> set[str]:
    """The hosts at either end of a cell a lost packet could explain: blocked in the network
    (never arrived) or on the return path (its answer never got back), or unknown."""
    ends: set[int] = set()
    for k in range(len(store.checks)):
        codes = store.codes[k]
        for pos in store.problem_positions(k):
            reach, where, _verdict = DECODED[codes[pos]]
            if reach is Reach.UNKNOWN or where in (Where.NETWORK, Where.RETURN_PATH):
                ends.update(divmod(pos, store.n))
    return {store.hosts[i] for i in ends}
