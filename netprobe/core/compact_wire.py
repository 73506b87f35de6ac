"""The compact wire form of an agent's replies (asked for with ``"compact": true`` in a probe
request; docs/design.md "Processes and the control API").

At 1,000 hosts each agent sends ~2,000 outcomes and receives ~2,000 probes; as full records that
is ~1 GB of JSON for the coordinator to parse. Almost all of them are *plain* -- answered at the
first attempt and accepted at both ends -- so they travel as short rows, and only the rest as
full records:

- probe reply ``plain``: ``[{"source": IP, "rows": [[probe_id, check, name, reply, rtt_us], ...]}]``
  for outcomes that were sent, answered (``syn-ack``, ``rst`` or ``echo``) at the first attempt,
  and whose answer arrived and was accepted; everything else stays in ``outcomes``.
- observations reply ``plain``: ``{SOURCE_IP: [probe_id, ...]}`` for probes that arrived, were
  accepted and answered; everything else stays in ``observations``.

Pure: dicts in, dicts out (the agent builds them); ``parse_*`` check them strictly (the coordinator).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from netprobe.core.fields import MAX_PROBE_ID, InvalidReport, ipv4, items, name, obj

PLAIN_REPLIES = ("syn-ack", "rst", "echo")
MAX_RTT_US = 1 << 40


def _plain_outcome(o: dict) -> bool:
    ev = o["evidence"]
    return (ev["sent"] and ev["reply"] in PLAIN_REPLIES and ev["reply_arrived"] and ev["reply_accepted"]
            and ev["attempts"] == 1 and ev["icmp"] is None and ev["send_error"] is None and ev["arrived"] is None
            and o["rtt_ms"] is not None)


def compact_outcomes(outcomes: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """(full outcomes, plain groups) from ``OutcomeReport.to_dict()``-shaped records."""
    full: list[dict] = []
    groups: dict[str, list[list]] = {}
    for o in outcomes:
        if _plain_outcome(o):
            groups.setdefault(o["source"], []).append(
                [o["probe_id"], o["check"], o["name"], o["evidence"]["reply"], round(o["rtt_ms"] * 1000)])
        else:
            full.append(o)
    return full, [{"source": s, "rows": rows} for s, rows in groups.items()]


def compact_observations(observations: Iterable[dict]) -> tuple[list[dict], dict[str, list[int]]]:
    """(full observations, {source: [probe ids]} of the plain ones)."""
    full: list[dict] = []
    plain: dict[str, list[int]] = {}
    for o in observations:
        if o["arrived"] and o["accepted"] and o["answered"]:
            plain.setdefault(o["src"], []).append(o["probe_id"])
        else:
            full.append(o)
    return full, plain


@dataclass(frozen=True)
class PlainOutcomes:
    """One source address's plain outcomes, as columns (parsed, checked)."""

    source: str
    probe_ids: array          # 'q'
    checks: tuple[str, ...]   # per row
    names: tuple[str, ...]    # per row
    replies: bytes            # per row: index into PLAIN_REPLIES
    rtt_us: array             # 'q'

    def __len__(self) -> int:
        return len(self.probe_ids)


_REPLY_INDEX = {r: i for i, r in enumerate(PLAIN_REPLIES)}


def _ipv4(raw: Any, field: str, known: dict[str, str]) -> str:
    """``fields.ipv4``, once per distinct string (the same peers' addresses recur in every reply)."""
    if isinstance(raw, str):
        hit = known.get(raw)
        if hit is not None:
            return hit
    value = ipv4(raw, field)
    if len(known) < 1 << 16:
        known[raw] = value
    return value


_KNOWN_IPS: dict[str, str] = {}


def _bulk_rows(rows: list) -> tuple | None:
    """The five columns of ``rows`` when every row is well-formed (checked with C-speed passes),
    else None: the caller then walks the rows one by one to name the bad field."""
    if not rows:
        return (), (), (), (), ()
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {5}:
        return None
    pids, checks, names, replies, rtts = zip(*rows)
    if set(map(type, pids)) != {int} or set(map(type, rtts)) != {int}:
        return None
    if min(pids) < 0 or max(pids) > MAX_PROBE_ID or min(rtts) < 0 or max(rtts) > MAX_RTT_US:
        return None
    if not set(replies) <= _REPLY_INDEX.keys():
        return None
    for value in set(checks) | set(names):
        if not isinstance(value, str):
            return None
        try:
            name(value, "")
        except InvalidReport:
            return None
    return pids, checks, names, replies, rtts


def parse_plain_outcomes(raw: Any, field: str, limit: int) -> tuple[PlainOutcomes, ...]:
    groups = items(raw, field, 256)
    out = []
    total = 0
    for g, group in enumerate(groups):
        at = f"{field}[{g}]"
        obj(group, at, ("source", "rows"))
        source = _ipv4(group["source"], f"{at}.source", _KNOWN_IPS)
        rows = items(group["rows"], f"{at}.rows", limit)
        total += len(rows)
        if total > limit:
            raise InvalidReport(field, f"more than {limit} rows")
        bulk = _bulk_rows(rows)
        if bulk is not None:
            pids, checks_, names_, replies_, rtts_ = bulk
            out.append(PlainOutcomes(source, array("q", pids), checks_, names_,
                                     bytes(_REPLY_INDEX[r] for r in replies_), array("q", rtts_)))
            continue
        ids, rtts, replies = array("q"), array("q"), bytearray()
        checks, names = [], []
        seen_names: set[str] = set()
        for r, row in enumerate(rows):
            if type(row) is not list or len(row) != 5:
                raise InvalidReport(f"{at}.rows[{r}]", "must be [probe_id, check, name, reply, rtt_us]")
            pid, check, host, reply, rtt = row
            if type(pid) is not int or not 0 <= pid <= MAX_PROBE_ID:
                raise InvalidReport(f"{at}.rows[{r}][0]", f"must be a probe id, got {pid!r:.40}")
            if type(rtt) is not int or not 0 <= rtt <= MAX_RTT_US:
                raise InvalidReport(f"{at}.rows[{r}][4]", f"must be microseconds, got {rtt!r:.40}")
            try:
                replies.append(PLAIN_REPLIES.index(reply))
            except ValueError:
                raise InvalidReport(f"{at}.rows[{r}][3]", f"must be one of {', '.join(PLAIN_REPLIES)}") from None
            if host not in seen_names:
                name(host, f"{at}.rows[{r}][2]")
                seen_names.add(host)
            if check not in seen_names:
                name(check, f"{at}.rows[{r}][1]")
                seen_names.add(check)
            ids.append(pid)
            rtts.append(rtt)
            checks.append(check)
            names.append(host)
        out.append(PlainOutcomes(source, ids, tuple(checks), tuple(names), bytes(replies), rtts))
    return tuple(out)


def parse_plain_observations(raw: Any, field: str, limit: int) -> dict[str, frozenset[int]]:
    d = obj(raw, field)
    out = {}
    total = 0
    for src, ids in d.items():
        at = f"{field}.{src:.20}"
        _ipv4(src, at, _KNOWN_IPS)
        ids = items(ids, at, limit)
        total += len(ids)
        if total > limit:
            raise InvalidReport(field, f"more than {limit} probe ids")
        if not ids or (set(map(type, ids)) == {int} and min(ids) >= 0 and max(ids) <= MAX_PROBE_ID):
            out[src] = frozenset(ids)
            continue
        for i, pid in enumerate(ids):
            if type(pid) is not int or not 0 <= pid <= MAX_PROBE_ID:
                raise InvalidReport(f"{at}[{i}]", f"must be a probe id, got {pid!r:.40}")
        out[src] = frozenset(ids)
    return out


__all__ = ["compact_outcomes", "compact_observations", "PlainOutcomes", "parse_plain_outcomes",
           "parse_plain_observations", "PLAIN_REPLIES"]
