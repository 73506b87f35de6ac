"""Render the cluster section of preflight: the host table's layout, titled with the cluster and
the requirement set its lines were judged against; JSON with the reads that failed. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table

from netprobe.preflight.model import Report
from netprobe.preflight.render import render_report_table, summary

CLUSTER_SCHEMA = "netprobe.preflight-cluster/v1"


def requirement_names(report: Report) -> str:
    names = list(dict.fromkeys(i.requirements for i in report.items if i.requirements))
    return ", ".join(names) or "-"


def render_cluster_table(report: Report, errors: Mapping[str, str] | None = None) -> Table:
    table = render_report_table(report)
    table.title = f"preflight {report.host} (profile {report.profile}, requirements {requirement_names(report)})"
    if errors:
        table.caption = f"{summary(report)}; partial: {len(errors)} read(s) failed"
    return table


def cluster_dict(report: Report, *, server: str, requirements: str, errors: Mapping[str, str]) -> dict:
    """The report's JSON (``netprobe.preflight/v1`` fields) under the cluster schema, with the
    server, the requirement set and the reads that failed (key -> one line)."""
    out = report.to_dict()
    out.update({"schema": CLUSTER_SCHEMA, "server": server, "requirements": requirements,
                "errors": dict(errors)})
    if errors:
        out["status"] = "partial"
    return out
