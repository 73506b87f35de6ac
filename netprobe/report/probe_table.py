"""Rendering of one-shot `netprobe probe` results (a list of cells from one source)."""

from __future__ import annotations

import io
import json

from netprobe.core.mtu import mtu_words
from netprobe.core.result import Reach
from netprobe.report.words import describe_cell, fix_lines, icmp_words


def _detail(cell) -> str:
    ev = cell.evidence
    if ev.mtu is not None and ev.path_mtu is not None:  # an mtu cell: its figure first
        words = mtu_words(ev.overlay, ev.path_mtu, ev.mtu)
        return words if ev.sent else f"{words}; send refused by this host: {ev.send_error}"
    if not ev.sent:
        return f"send refused by this host: {ev.send_error or 'EPERM'}"
    if ev.left is False and ev.reply is None:
        return "never left this host: dropped below IP on the way out (tc/netdev egress)"
    if ev.icmp is not None:
        return icmp_words(ev.icmp, cell.family)
    if ev.reply_arrived and not ev.reply_accepted and cell.reach is Reach.ALLOWED:  # an IPIP/VXLAN echo
        return f"{ev.reply} arrived but this host's INPUT dropped it: the overlay's reverse flow is blocked here"
    if ev.reply is not None and ev.reply_arrived and not ev.reply_accepted:
        return f"{ev.reply} arrived but this host's INPUT dropped it"
    if ev.reply is not None:
        return str(ev.reply)
    return f"no answer after {ev.attempts} attempt(s)"


def render_probe(cells, stats: dict, *, fmt: str, color: bool = False, width: int = 110) -> str:
    if fmt == "json":
        return json.dumps({"source": stats.get("source"), "target": stats.get("address"),
                           "cells": [c.to_dict() for c in cells],
                           "stats": {k: v for k, v in stats.items() if k not in ("source", "address")}},
                          indent=2) + "\n"
    from rich.console import Console
    from rich.table import Table

    colours = {"allowed": "green", "blocked": "red", "unknown": "yellow"}
    table = Table(title=f"{stats.get('source')} -> {stats.get('address')}", title_justify="left")
    for col in ("check", "verdict", "reach", "where", "rtt ms", "detail"):
        table.add_column(col)
    for c in cells:
        rtt = "" if c.rtt_ms is None else f"{c.rtt_ms:.2f}"
        reach = f"[{colours[str(c.reach)]}]{c.reach}[/]"
        table.add_row(c.check, str(c.verdict), reach, str(c.where or ""), rtt, _detail(c))
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=color, width=width, no_color=not color)
    console.print(table)
    for c in cells:
        if c.explain is not None:
            console.print(describe_cell(c), markup=False, highlight=False)
            for line in fix_lines(c):
                console.print(f"  {line}", markup=False, highlight=False)
    if any(str(c.reach) == "unknown" for c in cells):
        console.print("unknown: the sender alone cannot tell a firewall from the target here; "
                      "run a responder on the target and use `netprobe mesh`.")
    return buf.getvalue()
