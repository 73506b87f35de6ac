"""The mesh's join at any size: agents' replies (full records and compact rows) straight into a
``MatrixStore``, without a ``Cell`` per plain cell (``mesh_logic.join_cells`` is the same join
into a list, for small meshes and tests; both classify through ``core/verdict.py``).

``sent[host]`` has ``outcomes`` (``OutcomeReport``s) and ``plain`` (``PlainOutcomes`` groups);
``seen[host]`` has ``observations`` (``ObservationReport``s) and ``plain`` ({source: probe ids}).
Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from netprobe.core.cells import Cell, Evidence, ReplyKind
from netprobe.core.checks import Check, family_of
from netprobe.core.compact_wire import PLAIN_REPLIES
from netprobe.core.matrix_store import MatrixStore, pack, plain_evidence
from netprobe.core.mesh_logic import Peer
from netprobe.core.verdict import classify, classify_cell

_REPLY_KIND = tuple(ReplyKind(r) for r in PLAIN_REPLIES)
_SEEN_PLAIN = dict(arrived=True, accepted=True, answered=True)


def join_store(hosts: Sequence[tuple[str, str | None, str | None]], checks: Sequence[Check],
               peers: Mapping[str, Sequence[Peer]], sent: Mapping[str, object], seen: Mapping[str, object],
               failed: Mapping[str, str], *, sparse: bool = False) -> MatrixStore:
    """Every planned cell (``peers``: whom each host probes, with check ids per family), classified.

    ``hosts`` are (name, IPv4 address or None, IPv6 address or None) in inventory order; the store
    has a lane per check and family some host has an address of. A cell whose sender gave no
    outcome is ``unknown`` (with ``failed``'s reason); one whose destination gave no observations
    keeps the sender's evidence alone. Outcomes for cells nobody asked for are ignored; an
    outcome's family is its address's (a plain row's, its source's).
    """
    present = {f for _name, a4, a6 in hosts for f, a in ((4, a4), (6, a6)) if a}
    lanes = [(c.id, f) for c in checks for f in c.families if f in present]
    store = MatrixStore([name for name, _a4, _a6 in hosts], lanes, sparse=sparse)
    n, index, kindex = store.n, store.index, store.check_index
    address = {(name, f): a for name, a4, a6 in hosts for f, a in ((4, a4), (6, a6)) if a}
    by_id = {c.id: c for c in checks}
    planned = [bytearray(n * n) for _ in lanes]
    for src, wanted in peers.items():
        base = index[src] * n
        for peer in wanted:
            pos = base + index[peer.name]
            for cid, _address, family in peer.targets():
                planned[kindex[(cid, family)]][pos] = 1
    full_seen = {host: {(o.src, o.probe_id): o for o in reply.observations}  # type: ignore[attr-defined]
                 for host, reply in seen.items()}
    # the plain observations as keys (destination index << 32 | probe id), by source address
    by_source: dict[str, list[int]] = {}
    for dst, reply in seen.items():
        d = index[dst] << 32
        plain, at = reply.plain, 0  # type: ignore[attr-defined]
        for source, count in zip(plain.sources, plain.counts):
            keys = by_source.get(source)
            if keys is None:
                keys = by_source[source] = []
            keys.extend([d | pid for pid in plain.ids[at:at + count]])
            at += count
    observed: dict[str, set[int]] = {}

    def observed_from(source: str) -> set[int]:
        keys = observed.get(source)
        if keys is None:
            keys = observed[source] = set(by_source.pop(source, ()))
        return keys

    memo: dict[tuple[str, int], int | None] = {}

    def plain_code(cid: str, reply: int) -> int | None:
        """The code of a cell plain at both ends, or None when that evidence is not plain after all."""
        key = (cid, reply)
        if key not in memo:
            ev = Evidence(sent=True, reply=_REPLY_KIND[reply], reply_arrived=True, reply_accepted=True, attempts=1,
                          **_SEEN_PLAIN)
            c = classify(by_id[cid].proto, ev)
            code = pack(c.reach, c.where, c.verdict)
            memo[key] = code if plain_evidence(code) == ev else None
        return memo[key]

    def full(src: str, dst: str, cid: str, family: int, ev: Evidence, source: str, probe_id: int, rtt_ms) -> Cell:
        if dst in seen:
            obs = full_seen[dst].get((source, probe_id))
            if obs is None and (index[dst] << 32 | probe_id) in observed_from(source):
                ev = dataclasses.replace(ev, **_SEEN_PLAIN)
            else:
                ev = dataclasses.replace(ev, arrived=bool(obs and obs.arrived), accepted=bool(obs and obs.accepted),
                                         answered=bool(obs and obs.answered))
        return classify_cell(by_id[cid], src, dst, address[(dst, family)], ev, rtt_ms)

    for src, reply in sent.items():
        i = index[src]
        base = i * n
        targets = [index[p.name] for p in peers.get(src, ())]
        for group in reply.plain:  # type: ignore[attr-defined]
            family = family_of(group.source)
            k = kindex.get((group.check, family))
            if k is None or max(group.targets, default=-1) >= len(targets):
                continue  # a check nobody asked for, or targets beyond the request (an agent gone wrong)
            code = plain_code(group.check, group.reply)
            keys = observed_from(group.source) if code is not None else set()
            wanted, codes, rtts = planned[k], store.codes[k], store.rtt[k]
            for t, pid, rtt in zip(group.targets, group.probe_ids, group.rtt_us):
                j = targets[t]
                pos = base + j
                if not wanted[pos]:
                    continue
                if (j << 32 | pid) in keys:
                    codes[pos] = code  # type: ignore[assignment]
                    rtts[pos] = rtt  # microseconds, as the store keeps them
                    continue
                ev = Evidence(sent=True, reply=_REPLY_KIND[group.reply], reply_arrived=True, reply_accepted=True,
                              attempts=1)
                store.put(full(src, store.hosts[j], group.check, family, ev, group.source, pid, rtt / 1000))
        for o in reply.outcomes:  # type: ignore[attr-defined]
            family = family_of(o.address)
            k, j = kindex.get((o.check, family)), index.get(o.name)
            if k is None or j is None or not planned[k][base + j]:
                continue
            store.put(full(src, o.name, o.check, family, o.evidence, o.source, o.probe_id, o.rtt_ms))
    store.recount()
    for k in range(len(lanes)):
        codes, wanted = store.codes[k], planned[k]
        if codes.count(b"\x00") == wanted.count(b"\x00"):
            continue  # every planned cell has its outcome
        for pos in range(n * n):
            if wanted[pos] and not codes[pos]:
                reason = failed.get(store.hosts[pos // n], "the agent returned no outcome for this cell")
                store.put_not_probed(k, pos, reason)
    store.recount()
    return store


__all__ = ["join_store"]
