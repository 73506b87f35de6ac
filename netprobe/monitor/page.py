"""The live page of `netprobe watch`: the heatmaps of the last run (``report.html``) and the
timeline of changes, refreshed in place by a few lines of script polling ``/live``. No external
assets: it works on an air-gapped cluster.

A table per check reads up to a few dozen hosts; above ``TABLE_HOSTS`` the page shows the
rollup instead (per check its counts, per host the flows that fail: ``report/rollup.py``, read
from the store's tables) and links ``/heatmap``, the canvas page of ``--format html``, made once
per run when asked for: a 1,000-host table would be 2 million DOM nodes and hundreds of MB."""

from __future__ import annotations

from html import escape

from netprobe.core.result import Result
from netprobe.monitor.state import WatchState
from netprobe.report.html import render_heatmaps, render_html

TABLE_HOSTS = 40  # above this many hosts, the rollup and a link to the canvas heatmap

SCRIPT = """<script>
(function () {
  var every = %(poll_ms)d, last = -1;
  function refresh() {
    fetch("live", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (d) {
      if (d.version !== last) {
        last = d.version;
        document.getElementById("heatmaps").innerHTML = d.heatmaps;
        document.getElementById("timeline").innerHTML = d.timeline;
        document.getElementById("when").textContent = d.when;
      }
      document.getElementById("status").textContent = d.status;
    }).catch(function (e) {
      document.getElementById("status").textContent = "netprobe watch is not answering: " + e;
    }).finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
</script>"""


def render_timeline(state: WatchState, limit: int = 200) -> str:
    events = list(state.timeline)[-limit:]
    if not events:
        return "<li>no changes yet</li>"
    return "\n".join(f'<li class="{escape(e.kind)}" title="{escape(e.when.isoformat(), quote=True)}">'
                     f"{escape(e.line())}</li>" for e in reversed(events))


def status_line(state: WatchState) -> str:
    if state.last is None and state.last_error is None:
        return f"waiting for the first run (every {state.interval:g} s, {state.source})"
    parts = [f"run {state.runs}"]
    if state.last_finished is not None:
        parts.append(f"last finished {state.last_finished:%H:%M:%S} UTC")
    if state.last_duration is not None:
        parts.append(f"took {state.last_duration:.2f} s")
    parts.append(f"every {state.interval:g} s from {state.source}")
    line = ", ".join(parts)
    if state.last_error:
        line += f"; last attempt failed: {state.last_error}"
    return line


def heatmaps(result: Result) -> str:
    """The heatmap tables of a small run; the rollup and a link to the canvas page of a big one."""
    if len(result.hosts) <= TABLE_HOSTS:
        return render_heatmaps(result)
    from netprobe.report.rollup import rollup_lines

    lines = "\n".join(escape(line) for line in rollup_lines(result))
    errors = "".join(f"<li>{escape(str(e.get('host', '?')))}: {escape(str(e.get('message', '')))}</li>"
                     for e in result.errors)
    return (f'<p class="summary">{len(result.hosts)} hosts: too many for tables. '
            f'<a href="heatmap">The heatmap of every cell</a> (canvas, made on request).</p>\n'
            f'<pre class="rollup">{lines}</pre>' + (f'<ul class="errors">{errors}</ul>' if errors else ""))


def live(state: WatchState, version: int) -> dict:
    """What the page's script swaps in."""
    finished = state.last.finished or state.last.started or "" if state.last is not None else ""
    return {"version": version, "status": status_line(state), "when": f"run finished {finished}",
            "heatmaps": heatmaps(state.last) if state.last is not None else "<p>no run yet</p>",
            "timeline": render_timeline(state)}


def render_page(state: WatchState, *, poll_seconds: float) -> str:
    result = state.last or Result(cells=[])
    body_top = f'<p id="status" class="summary">{escape(status_line(state))}</p>\n'
    links = '<p class="summary"><a href="metrics">metrics</a> &middot; <a href="result.json">last result (JSON)</a></p>'
    body_bottom = (f'<h2>Timeline</h2>\n<ol class="timeline" id="timeline">\n{render_timeline(state)}\n</ol>\n'
                   f"{links}\n{SCRIPT % {'poll_ms': int(poll_seconds * 1000)}}\n")
    page = render_html(result, title="netprobe watch", body_top=body_top, body_bottom=body_bottom,
                       heatmaps=heatmaps(result))
    if state.last is None:
        page = page.replace("<p>no cells</p>", "<p>no run yet</p>")
    return page
