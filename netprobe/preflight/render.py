"""Render preflight reports: one host as a table of requirements, many hosts as a matrix
(rows = hosts, columns = requirements), or JSON. Pure: returns renderables and strings."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.table import Table
from rich.text import Text

from netprobe.preflight.model import Report, Status

GLYPHS = {Status.OK: "✓", Status.FAIL: "✗", Status.WARN: "!", Status.UNKNOWN: "?"}
STYLES = {Status.OK: "green", Status.FAIL: "bold red", Status.WARN: "yellow", Status.UNKNOWN: "magenta"}
LEGEND = "  ".join(f"{GLYPHS[s]} {s}" for s in Status)
HOSTS_SCHEMA = "netprobe.preflight-hosts/v1"


def status_text(status: Status, *, word: bool = True) -> Text:
    return Text(f"{GLYPHS[status]} {status}" if word else GLYPHS[status], style=STYLES[status])


def summary(report: Report) -> str:
    counts = report.counts()
    verdict = "FAIL" if report.exit_code else "OK"
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"preflight {verdict}: {parts}"


def render_report_table(report: Report) -> Table:
    """One line per requirement: status, what is required, the evidence read."""
    title = f"preflight {report.host or ''} (profile {report.profile}".strip()
    if report.requirements:
        title += f", requirements {report.requirements}"
    if report.dataplane != "iptables":
        title += f", dataplane {report.dataplane}"
    if report.wireguard:
        title += ", WireGuard on"
    if report.root != "/":
        title += f", root {report.root}"
    table = Table(title=title + ")", caption=summary(report), show_lines=False, expand=False)
    table.add_column("status", no_wrap=True)
    table.add_column("requirement", overflow="fold")
    table.add_column("set", no_wrap=True)  # which requirement set states the line
    table.add_column("evidence", overflow="fold")
    group = None
    for item in report.items:
        if group is not None and item.group != group:
            table.add_section()
        group = item.group
        table.add_row(status_text(item.status), item.title, item.requirements or "-", item.evidence)
    return table


SHORT = {"nf_conntrack_netlink": "ct_netlink", "ipt_rpfilter": "rpfilter", "ipt_REJECT": "REJECT",
         "service-range": "services", "kube-proxy": "proxy"}


def column_label(item_id: str) -> str:
    """Short headers: "module:ip_tables" -> "ip_tables", "port:179/tcp" -> "179/tcp"."""
    rest = item_id.partition(":")[2] or item_id
    return SHORT.get(rest, rest)


def render_hosts_table(reports: Mapping[str, Report]) -> Table:
    """Rows = hosts, columns = requirements (union in first-seen order); a glyph per cell and,
    last, the ids that failed or warned so the row says what to look at."""
    columns: list[str] = []
    for report in reports.values():
        for item in report.items:
            if item.id not in columns:
                columns.append(item.id)
    table = Table(title="preflight", caption=LEGEND + "   (- not checked on that host)")
    table.add_column("host", no_wrap=True)
    for col in columns:
        table.add_column(column_label(col), justify="center", overflow="fold")
    table.add_column("to look at", overflow="fold", min_width=12)
    for host in sorted(reports):
        report = reports[host]
        by_id = {i.id: i for i in report.items}
        cells = [status_text(by_id[c].status, word=False) if c in by_id else Text("-") for c in columns]
        bad = [column_label(i.id) for i in report.items if i.status in (Status.FAIL, Status.WARN)]
        table.add_row(Text(host, style="bold red" if report.exit_code else ""), *cells, ", ".join(bad))
    return table


def _fits(renderable, width: int) -> bool:
    """Whether ``renderable`` shows whole (nothing folded) in ``width`` columns."""
    import io

    from rich.console import Console
    from rich.measure import Measurement

    console = Console(file=io.StringIO(), width=10_000, color_system=None, legacy_windows=False)
    return Measurement.get(console, console.options, renderable).maximum <= width


def _hosts_matrix(reports: Mapping[str, Report], columns: list[str], *, hidden: int = 0) -> Table:
    """Rows = hosts, a glyph per requirement in ``columns`` (``hidden`` more are ok everywhere)."""
    caption = LEGEND + "   (- not checked on that host)"
    if hidden:
        caption += f"\n{hidden} more requirements are ok on every host (--format json lists them)"
    table = Table(title="preflight", caption=caption, caption_justify="left", title_justify="left")
    table.add_column("host", no_wrap=True)
    for col in columns:
        table.add_column(column_label(col), justify="center", no_wrap=True)
    for host in sorted(reports):
        report = reports[host]
        by_id = {i.id: i for i in report.items}
        cells = [status_text(by_id[c].status, word=False) if c in by_id else Text("-") for c in columns]
        table.add_row(Text(host, style="bold red" if report.exit_code else ""), *cells)
    return table


def _hosts_list(reports: Mapping[str, Report]):
    """A paragraph per host: its counts, then each requirement that fails or warns, with evidence."""
    from rich.console import Group
    from rich.padding import Padding

    parts: list = [Text("preflight", style="bold"), Text(LEGEND, style="dim")]
    for host in sorted(reports):
        report = reports[host]
        line = Text(host, style="bold red" if report.exit_code else "bold")
        for status, n in report.counts().items():
            if n:
                line.append("  ").append_text(status_text(Status(status), word=False)).append(f" {n} {status}")
        parts += [Text(""), line]
        for item in report.items:
            if item.status in (Status.FAIL, Status.WARN):
                text = status_text(item.status, word=False).append(f" {column_label(item.id)}: {item.title}")
                text.append(f" ({item.evidence})" if item.evidence else "", style="dim")
                parts.append(Padding(text, (0, 0, 0, 2)))
    return Group(*parts)


def render_hosts(reports: Mapping[str, Report], *, width: int = 80):
    """What `preflight --inventory` prints, readable in ``width`` columns: the whole matrix when it
    fits; else only the requirements not ok on some host, when those fit; else a per-host list
    of what fails or warns."""
    columns: list[str] = []
    for report in reports.values():
        for item in report.items:
            if item.id not in columns:
                columns.append(item.id)
    full = render_hosts_table(reports)
    if _fits(full, width):
        return full
    status = {(h, i.id): i.status for h, r in reports.items() for i in r.items}
    bad = [c for c in columns if any(status.get((h, c), Status.OK) is not Status.OK for h in reports)]
    some = _hosts_matrix(reports, bad, hidden=len(columns) - len(bad))
    if bad and _fits(some, width):
        return some
    return _hosts_list(reports)


def render_report_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2)


def render_hosts_json(reports: Mapping[str, Report]) -> str:
    return json.dumps({"schema": HOSTS_SCHEMA,
                       "status": "fail" if any(r.exit_code for r in reports.values()) else "ok",
                       "hosts": {h: reports[h].to_dict() for h in sorted(reports)}}, indent=2)


def to_text(renderable, *, width: int = 120) -> str:
    """A renderable as plain text (tests, and callers that want a string)."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, legacy_windows=False).print(renderable)
    return buffer.getvalue()
