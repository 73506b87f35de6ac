"""The compact wire form of an agent's replies (asked for with ``"compact": true`` in a probe
request; docs/design.md "Processes and the control API").

At 1,000 hosts each agent sends ~2,000 outcomes and receives ~2,000 probes; as full records that
is ~1 GB of JSON for the coordinator to parse. Almost all of them are *plain* -- answered at the
first attempt and accepted at both ends -- so they travel as short rows, and only the rest as
full records:

- probe reply ``plain``: ``[{"source": IP, "check": ID, "reply": R, "targets": [i, ...], "ids":
  [probe id, ...], "rtt_us": [...]}]``, columns per (source, check, reply), ``targets`` indexing
  the request's targets, for outcomes that were sent and seen leaving, answered (``syn-ack``,
  ``rst`` or ``echo``) at the first attempt, and whose answer arrived and was accepted (an mtu
  probe: the echo of its full size, so its figures say nothing more); everything else stays in
  ``outcomes``.
- observations reply ``plain``: ``{"sources": [IP, ...], "counts": [n, ...], "ids": [...]}`` for
  probes that arrived, reached IP, were accepted and answered (``counts[i]`` ids in turn from
  ``sources[i]``); everything else stays in ``observations``.

Pure: dicts in, dicts out (the agent builds them); ``parse_*`` check them strictly (the coordinator).
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from netprobe.core.fields import MAX_PROBE_ID, InvalidReport, ip, items, name, obj
from netprobe.core.parse import ip_str

PLAIN_REPLIES = ("syn-ack", "rst", "echo")
MAX_RTT_US = 1 << 40


def _plain_outcome(o: dict) -> bool:
    ev = o["evidence"]
    return (ev["sent"] and ev["left"] is True and ev["reply"] in PLAIN_REPLIES and ev["reply_arrived"]
            and ev["reply_accepted"] and ev["attempts"] == 1 and ev["icmp"] is None and ev["send_error"] is None
            and ev["arrived"] is None and o["rtt_ms"] is not None
            and ev.get("path_mtu") == ev.get("mtu"))  # an mtu probe: its full size came back


def compact_outcomes(outcomes: Iterable[dict], targets: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(full outcomes, plain groups) from ``OutcomeReport.to_dict()``-shaped records; ``targets``
    are the request's target names (a plain row names its target by index into them)."""
    where = {name: i for i, name in enumerate(targets)}
    full: list[dict] = []
    groups: dict[tuple[str, str, str], dict] = {}
    for o in outcomes:
        t = where.get(o["name"])
        if t is None or not _plain_outcome(o):
            full.append(o)
            continue
        key = (o["source"], o["check"], o["evidence"]["reply"])
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"source": key[0], "check": key[1], "reply": key[2], "targets": [], "ids": [],
                               "rtt_us": []}
        g["targets"].append(t)
        g["ids"].append(o["probe_id"])
        g["rtt_us"].append(round(o["rtt_ms"] * 1000))
    return full, list(groups.values())


def compact_records(records: Iterable) -> tuple[list[dict], dict[str, list]]:
    """(full observations, {"sources": [...], "counts": [...], "ids": [...]} of the plain ones:
    ``counts[i]`` ids of ``ids`` in turn came from ``sources[i]``), from the responder's
    ``Observation`` records: only the records that are not plain become dicts (a responder
    facing 1,000 peers keeps tens of thousands)."""
    full: list[dict] = []
    by_source: dict[bytes, list[int]] = {}
    for o in records:
        if o.arrived and o.reached_ip and o.accepted and o.answered:
            ids = by_source.get(o.src)
            if ids is None:
                ids = by_source[o.src] = []
            ids.append(o.probe_id)
        else:
            full.append(o.to_dict())
    return full, {"sources": [ip_str(src) for src in by_source], "counts": [len(v) for v in by_source.values()],
                  "ids": [pid for v in by_source.values() for pid in v]}


@dataclass(frozen=True)
class PlainOutcomes:
    """One (source address, check, reply)'s plain outcomes, as columns (parsed, checked)."""

    source: str
    check: str
    reply: int           # index into PLAIN_REPLIES
    targets: array       # 'l': indexes into the request's targets
    probe_ids: array     # 'q'
    rtt_us: array        # 'q'

    def __len__(self) -> int:
        return len(self.probe_ids)

    def to_dict(self) -> dict:
        """The wire form ``compact_outcomes`` makes and ``parse_plain_outcomes`` reads."""
        return {"source": self.source, "check": self.check, "reply": PLAIN_REPLIES[self.reply],
                "targets": list(self.targets), "ids": list(self.probe_ids), "rtt_us": list(self.rtt_us)}


@dataclass(frozen=True)
class PlainObservations:
    """Probe ids that arrived, reached IP, were accepted and answered, by source address (flat columns)."""

    sources: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()
    ids: array = dataclasses.field(default_factory=lambda: array("q"))

    def by_source(self) -> Iterator[tuple[str, array]]:
        at = 0
        for source, count in zip(self.sources, self.counts):
            yield source, self.ids[at:at + count]
            at += count

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict:
        """The wire form ``compact_records`` makes and ``parse_plain_observations`` reads."""
        return {"sources": list(self.sources), "counts": list(self.counts), "ids": list(self.ids)}


_KNOWN_IPS: dict[str, str] = {}


def _ip(raw: Any, field: str) -> str:
    """``fields.ip``, once per distinct string (the same peers' addresses recur in every reply)."""
    if isinstance(raw, str):
        hit = _KNOWN_IPS.get(raw)
        if hit is not None:
            return hit
    value = ip(raw, field)
    if len(_KNOWN_IPS) < 1 << 16:
        _KNOWN_IPS[raw] = value
    return value


def _ints(raw: Any, field: str, hi: int, limit: int) -> array:
    """A list of whole numbers in 0..hi, checked in C-speed passes (one by one only to name a bad one)."""
    values = items(raw, field, limit)
    if values and (set(map(type, values)) != {int} or min(values) < 0 or max(values) > hi):
        for i, v in enumerate(values):
            if type(v) is not int or not 0 <= v <= hi:
                raise InvalidReport(f"{field}[{i}]", f"must be a whole number in 0..{hi}, got {v!r:.40}")
    return array("q", values)


def parse_plain_outcomes(raw: Any, field: str, limit: int, targets: int) -> tuple[PlainOutcomes, ...]:
    """``targets``: how many targets the request named (every index must point into them)."""
    groups = items(raw, field, 4096)
    out = []
    total = 0
    for g, group in enumerate(groups):
        at = f"{field}[{g}]"
        obj(group, at, ("source", "check", "reply", "targets", "ids", "rtt_us"))
        source = _ip(group["source"], f"{at}.source")
        check = name(group["check"], f"{at}.check")
        if group["reply"] not in PLAIN_REPLIES:
            raise InvalidReport(f"{at}.reply", f"must be one of {', '.join(PLAIN_REPLIES)}")
        idx = _ints(group["targets"], f"{at}.targets", max(targets - 1, 0), limit)
        if idx and targets == 0:
            raise InvalidReport(f"{at}.targets", "the request named no targets")
        ids = _ints(group["ids"], f"{at}.ids", MAX_PROBE_ID, limit)
        rtts = _ints(group["rtt_us"], f"{at}.rtt_us", MAX_RTT_US, limit)
        if not len(idx) == len(ids) == len(rtts):
            raise InvalidReport(at, "targets, ids and rtt_us must be of one length")
        total += len(ids)
        if total > limit:
            raise InvalidReport(field, f"more than {limit} rows")
        out.append(PlainOutcomes(source, check, PLAIN_REPLIES.index(group["reply"]), idx, ids, rtts))
    return tuple(out)


def parse_plain_observations(raw: Any, field: str, limit: int) -> PlainObservations:
    d = obj(raw, field, ("sources", "counts", "ids"))
    sources = items(d["sources"], f"{field}.sources", limit)
    if len(set(map(type, sources))) > 1 or (sources and type(sources[0]) is not str):
        raise InvalidReport(f"{field}.sources", "must be IP addresses")
    unique = set(sources)
    if len(unique) != len(sources):
        raise InvalidReport(f"{field}.sources", "names a source twice")
    for source in unique.difference(_KNOWN_IPS):  # each new address checked once per process
        i = sources.index(source)
        if _ip(source, f"{field}.sources[{i}]") != source:
            raise InvalidReport(f"{field}.sources[{i}]", f"must be an IP address as written canonically, got {source!r:.40}")
    counts = _ints(d["counts"], f"{field}.counts", limit, limit)
    ids = _ints(d["ids"], f"{field}.ids", MAX_PROBE_ID, limit)
    if len(counts) != len(sources) or sum(counts) != len(ids):
        raise InvalidReport(field, "counts must give one count per source, adding up to the ids")
    return PlainObservations(tuple(sources), tuple(counts), ids)


__all__ = ["compact_outcomes", "compact_records", "PlainOutcomes", "PlainObservations", "parse_plain_outcomes",
           "parse_plain_observations", "PLAIN_REPLIES"]
