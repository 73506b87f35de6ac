"""HTML: one heatmap table per check from a Result, and a standalone page around them.

Pure string building (html.escape on every name). ``render_heatmaps`` is the fragment the live
page of `netprobe watch` swaps in on every run; ``render_html`` is a whole document (what a
``--format html`` writes). Every cell carries ``data-check/-src/-dst/-reach/-where`` so a browser
test or a script can find a flow without parsing the text.
"""

from __future__ import annotations

from html import escape

from netprobe.core.result import Reach, Result
from netprobe.report.matrix import matrices
from netprobe.report.words import count_reach, describe_cell, where_letter

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
#heatmaps { display: flex; flex-wrap: wrap; column-gap: 2.5em; align-items: flex-start; }
table.heatmap { border-collapse: collapse; margin-bottom: .5em; }
table.heatmap th, table.heatmap td { border: 1px solid #ccc; padding: .25em .55em; text-align: center;
  font-family: ui-monospace, monospace; }
table.heatmap th { background: #f4f4f4; font-weight: normal; }
td.allowed { background: #c8ecc8; } td.blocked { background: #f3a3a3; font-weight: bold; }
td.unknown { background: #f6e29c; } td.self, td.none { background: #fafafa; color: #bbb; }
.legend span { display: inline-block; padding: 0 .5em; margin-right: .4em; border: 1px solid #ccc; }
.summary { color: #555; } .errors { color: #a00; }
ol.timeline { list-style: none; padding-left: 0; font-family: ui-monospace, monospace; }
ol.timeline li.blocked { color: #a00; } ol.timeline li.allowed { color: #070; } ol.timeline li.unknown { color: #850; }
"""

LEGEND = ('<p class="legend"><span class="allowed">&#10003; allowed</span><span class="blocked">&#10007; blocked</span>'
          '<span class="unknown">? unknown</span> where: S source-egress, N network, D destination-ingress, '
          'R return-path</p>')


def _symbol(reach: Reach, where) -> str:
    if reach is Reach.ALLOWED:
        return "&#10003;"
    if reach is Reach.BLOCKED:
        return "&#10007;" + where_letter(where)
    return "?"


def render_heatmaps(result: Result) -> str:
    """One ``<section class="check">`` per check: a table, rows = sources, columns = destinations."""
    parts = []
    for m in matrices(result):
        counts = count_reach(m.cells.values())
        summary = ", ".join(f"{n} {r}" for r, n in counts.items() if n)
        parts.append(f'<section class="check" data-check="{escape(m.check)}" data-family="{m.family}">')
        parts.append(f"<h2>{escape(m.title)}</h2>")
        parts.append(f'<table class="heatmap" data-check="{escape(m.check)}" data-family="{m.family}">')
        parts.append("<tr><th>from \\ to</th>" + "".join(f"<th>{escape(c)}</th>" for c in m.cols) + "</tr>")
        for src in m.rows:
            row = [f"<th>{escape(src)}</th>"]
            for dst in m.cols:
                cell = m.get(src, dst)
                if cell is None:
                    kind = "self" if src == dst else "none"
                    row.append(f'<td class="{kind}">&middot;</td>')
                    continue
                where = "" if cell.where is None else str(cell.where)
                rtt = "" if cell.rtt_ms is None else f"{cell.rtt_ms:.2f} ms"
                title = escape(describe_cell(cell) + (f" ({rtt})" if rtt else ""), quote=True)
                row.append(
                    f'<td class="{cell.reach}" data-check="{escape(cell.check)}" data-src="{escape(src)}" '
                    f'data-dst="{escape(dst)}" data-reach="{cell.reach}" data-where="{where}" '
                    f'data-family="{cell.family}" '
                    f'title="{title}">{_symbol(cell.reach, cell.where)}</td>')
            parts.append("<tr>" + "".join(row) + "</tr>")
        parts.append("</table>")
        parts.append(f'<p class="summary">{escape(summary)}</p>')
        parts.append("</section>")
    if result.errors:
        parts.append('<ul class="errors">' + "".join(
            f"<li>{escape(str(e.get('host', '?')))}: {escape(str(e.get('message', '')))}</li>"
            for e in result.errors) + "</ul>")
    if not parts:
        parts.append("<p>no cells</p>")
    return "\n".join(parts)


def render_html(result: Result, *, title: str = "netprobe", head: str = "", body_top: str = "",
                body_bottom: str = "") -> str:
    """A whole HTML document: the heatmaps of ``result`` with a legend (and extra parts around)."""
    when = escape(result.finished or result.started or "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>{STYLE}</style>{head}</head>
<body>
<h1>{escape(title)}</h1>
{body_top}<p class="summary" id="when">run finished {when}</p>
{LEGEND}
<div id="heatmaps">
{render_heatmaps(result)}
</div>
{body_bottom}</body></html>
"""


__all__ = ["render_heatmaps", "render_html", "STYLE", "LEGEND"]
