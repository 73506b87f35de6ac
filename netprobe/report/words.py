"""Plain words for cells, shared by every renderer so a flow reads the same in a table, a JUnit
message and a Markdown summary.

Pure functions of the result model: no I/O, no clock, no styling.
"""

from __future__ import annotations

from collections.abc import Iterable

from netprobe.core.checks import lane_label
from netprobe.core.mtu import mtu_words
from netprobe.core.result import Cell, Icmp, Reach, ReplyKind, Result, Where

WHERE_LETTER: dict[Where, str] = {
    Where.SOURCE_EGRESS: "S",
    Where.NETWORK: "N",
    Where.DESTINATION_INGRESS: "D",
    Where.RETURN_PATH: "R",
}

# Names for the ICMP errors a firewall or router sends back (type 3 and 11 cover them all).
_ICMP_NAMES: dict[tuple[int, int], str] = {
    (3, 0): "net unreachable",
    (3, 1): "host unreachable",
    (3, 2): "protocol unreachable",
    (3, 3): "port unreachable",
    (3, 9): "net prohibited",
    (3, 10): "host prohibited",
    (3, 13): "administratively prohibited",
    (11, 0): "TTL exceeded",
}
# ICMPv6 (RFC 4443): destination unreachable is type 1, time exceeded type 3.
_ICMP6_NAMES: dict[tuple[int, int], str] = {
    (1, 0): "no route",
    (1, 1): "administratively prohibited",
    (1, 2): "beyond scope",
    (1, 3): "address unreachable",
    (1, 4): "port unreachable",
    (1, 5): "source address failed policy",
    (1, 6): "reject route",
    (3, 0): "hop limit exceeded",
}


def where_letter(where: Where | None) -> str:
    """S, N, D or R for a blocked cell's place; empty when unknown."""
    return "" if where is None else WHERE_LETTER[where]


def icmp_words(icmp: Icmp, family: int = 4) -> str:
    """E.g. ``ICMP 3/13 administratively prohibited from 192.0.2.12``, ``ICMPv6 1/1 administratively
    prohibited from 2001:db8::12``."""
    if family == 6:
        name, text = _ICMP6_NAMES.get((icmp.type, icmp.code)), f"ICMPv6 {icmp.type}/{icmp.code}"
    else:
        name, text = _ICMP_NAMES.get((icmp.type, icmp.code)), f"ICMP {icmp.type}/{icmp.code}"
    text += f" {name}" if name else ""
    return text + (f" from {icmp.sender}" if icmp.sender else "")


def _what_came_back(cell: Cell) -> str:
    """The verdict, with the ICMP or RST that made it when there was one."""
    ev = cell.evidence
    if ev.icmp is not None:
        return f"{cell.verdict}: {icmp_words(ev.icmp, cell.family)}"
    if ev.reply is ReplyKind.RST and cell.reach is Reach.BLOCKED:
        return f"{cell.verdict}: TCP RST"
    return str(cell.verdict)


def _blocked(cell: Cell) -> str:
    ev = cell.evidence
    src, dst = cell.src, cell.dst
    if ev.mtu is not None and ev.path_mtu is not None:  # an mtu cell with its figure
        if cell.where is Where.SOURCE_EGRESS:
            return f"blocked at {src} ({mtu_words(ev.overlay, ev.path_mtu, ev.mtu)}; send refused: {ev.send_error})"
        if cell.where is Where.NETWORK:
            return f"blocked in the network between {src} and {dst} ({mtu_words(ev.overlay, ev.path_mtu, ev.mtu)})"
    if cell.where is Where.SOURCE_EGRESS:
        if ev.sent and ev.left is False:
            return f"blocked at {src} on the way out (sent, never left: dropped below IP, tc/netdev egress)"
        refused = "send refused" + (f": {ev.send_error}" if ev.send_error else "")
        return f"blocked at {src}'s OUTPUT ({refused})"
    if cell.where is Where.NETWORK:
        why = _what_came_back(cell) if ev.icmp is not None else "never arrived"
        return f"blocked in the network between {src} and {dst} ({why})"
    if cell.where is Where.DESTINATION_INGRESS:
        if ev.reached_ip is False:
            return f"blocked at {dst} on the way in, below IP (tc/netdev ingress: {_what_came_back(cell)})"
        return f"blocked at {dst}'s INPUT ({_what_came_back(cell)})"
    if cell.where is Where.RETURN_PATH:
        if ev.answered and not ev.reply_arrived:
            return f"blocked on the return path: {dst} answered, the reply never reached {src}"
        return f"blocked on the return path: {dst} answered, {src} never accepted the reply"
    return f"blocked ({_what_came_back(cell)})"


def describe_cell(cell: Cell) -> str:
    """One sentence for a cell, e.g. ``bgp node2 -> node3 blocked at node3's INPUT (filtered)``
    (``bgp (IPv6) node2 -> node3 ...`` for a cell probed over IPv6), with its explanation when it
    has one (``: inet filter input handle 7 `tcp dport 179 drop```)."""
    head = f"{lane_label(cell.check, cell.family)} {cell.src} -> {cell.dst}"
    ev = cell.evidence
    why = cell.explain.words(mtu=ev.path_mtu is None) if cell.explain is not None else ""  # an mtu cell says it
    why = f": {why}" if why else ""
    if cell.reach is Reach.BLOCKED:
        return f"{head} {_blocked(cell)}{why}"
    if cell.reach is Reach.UNKNOWN:  # `probe` explains how far a probe that met silence got
        if ev.send_error:
            return f"{head} unknown ({cell.verdict}: {ev.send_error}){why}"
        if not ev.has_responder:
            return f"{head} unknown (no responder evidence: {_what_came_back(cell)}){why}"
        return f"{head} unknown ({_what_came_back(cell)}){why}"
    return f"{head} allowed ({cell.verdict})"


def fix_lines(cell: Cell) -> list[str]:
    """The fix of a cell blocked at a host, as lines to print under its sentence (not applied)."""
    return cell.explain.fix_words() if cell.explain is not None else []


def describe_with_fix(cell: Cell) -> str:
    """The sentence and its fix lines, one per line (a JUnit body, a heatmap cell's detail)."""
    return "\n".join([describe_cell(cell), *fix_lines(cell)])


def count_reach(cells: Iterable[Cell]) -> dict[Reach, int]:
    counts = {r: 0 for r in Reach}
    for c in cells:
        counts[c.reach] += 1
    return counts


def total_line(result: Result) -> str:
    """E.g. ``12 allowed, 2 blocked, 0 unknown``."""
    if isinstance(result.cells, list):
        n = count_reach(result.cells)
    else:  # the compact store: counted in its byte tables
        store = result.store
        n = {r: 0 for r in Reach}
        for k in range(len(store.checks)):
            for r, v in store.counts(k).items():
                n[r] += v
    return f"{n[Reach.ALLOWED]} allowed, {n[Reach.BLOCKED]} blocked, {n[Reach.UNKNOWN]} unknown"


def skipped_line(skipped: dict) -> str:
    """E.g. ``typha: skipped, no host has role 'typha'``."""
    return f"{skipped.get('check', '?')}: skipped, {skipped.get('reason', 'no reason given')}"


def error_line(error: dict) -> str:
    """E.g. ``node4: agent unreachable: connection refused``."""
    host = error.get("host")
    message = error.get("message", "")
    return f"{host}: {message}" if host else str(message)


def change_side(cell: Cell | None) -> str:
    """One side of a diff row: ``absent``, ``allowed (open)``, ``blocked at network (filtered)``."""
    if cell is None:
        return "absent"
    where = f" at {cell.where}" if cell.where is not None else ""
    return f"{cell.reach}{where} ({cell.verdict})"


__all__ = [
    "WHERE_LETTER", "where_letter", "icmp_words", "describe_cell", "fix_lines", "describe_with_fix", "count_reach",
    "total_line",
    "skipped_line", "error_line", "change_side",
]
