"""``--format html``: one self-contained page that reads at any size -- a canvas heatmap per check
drawn from the result's compact rows (one character per cell), a cell's state and explanation
on hover and click, filters by host (name, glob, ``role:NAME``) and by check, and the failing
flows as a list. No CDN, no external file: the data rides in the page as JSON.

(``report/html.py``'s table heatmaps stay for the live page of ``netprobe watch``, where a
handful of hosts is the rule; a 1,000-host table would be 2 million DOM nodes.)
"""

from __future__ import annotations

import json
from html import escape

from netprobe.core.checks import lane_label
from netprobe.core.result import Result
from netprobe.core.result_v2 import cells_to_v2
from netprobe.report.matrix import check_title
from netprobe.report.words import describe_with_fix, total_line

MAX_LISTED = 1000  # failing flows listed in the DOM (every one is explained on the canvas)
MAX_EXPLAINED = 20000

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin: 1em 0 .3em; }}
#controls {{ position: sticky; top: 0; background: #fff; padding: .4em 0; border-bottom: 1px solid #ddd; z-index: 2; }}
#controls input[type=text] {{ width: 16em; }}
section.check {{ display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }}
canvas {{ image-rendering: pixelated; border: 1px solid #ccc; cursor: crosshair; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: .3em .5em; font: 12px ui-monospace, monospace;
  border-radius: 3px; display: none; max-width: 40em; z-index: 3; }}
#info {{ font-family: ui-monospace, monospace; white-space: pre-wrap; background: #f6f6f6; padding: .5em; min-height: 1.2em; }}
.legend span {{ display: inline-block; padding: 0 .5em; margin-right: .4em; }}
.summary {{ color: #555; }} ol#failing li {{ font-family: ui-monospace, monospace; white-space: pre-wrap; }}
ol#failing li.blocked {{ color: #a00; }} ol#failing li.unknown {{ color: #850; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
<div id="controls">
hosts: <input type="text" id="hostfilter" placeholder="name, glob (node-1*), role:etcd">
checks: {check_boxes}
<span class="legend"><span style="background:#3b3">allowed</span><span style="background:#e22;color:#fff">blocked</span><span style="background:#eb3">unknown</span><span style="background:#eee">no cell</span></span>
<div id="info">hover a cell for its flow; click to keep it here</div>
</div>
<div id="heatmaps"></div>
<h2>Failing flows</h2>
{failing}
<div id="tip"></div>
<script id="netprobe-data" type="application/json">{data}</script>
<script>
(function () {{
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("netprobe-data").textContent);
  const N = D.hosts.length;
  const COLORS = {{allowed: [51, 187, 51], blocked: [226, 34, 34], unknown: [238, 187, 51]}};
  const NONE = [238, 238, 238];
  const size = Math.max(1, Math.min(14, Math.floor(900 / Math.max(N, 1))));
  const tip = document.getElementById("tip"), info = document.getElementById("info");
  const views = [];
  function state(ch) {{ return ch === "." ? null : D.codes[ch]; }}
  // a matrix as at(i, j) -> character and each(f(i, j, ch)) over its cells; a sampled run's
  // matrix ([row, [columns], chars]) is read as it is, never expanded to N x N characters
  function cellsOf(m) {{
    if (m.rows) return {{
      at: (i, j) => m.rows[i][j],
      each: f => {{ for (let i = 0; i < N; i++) {{ const row = m.rows[i];
        for (let j = 0; j < N; j++) if (row.charCodeAt(j) !== 46) f(i, j, row[j]); }} }}}};
    const byRow = new Map(m.sparse.map(r => [r[0], r]));
    return {{
      at: (i, j) => {{ const r = byRow.get(i), k = r ? r[1].indexOf(j) : -1; return k < 0 ? "." : r[2][k]; }},
      each: f => {{ for (const [i, cols, chars] of m.sparse) for (let k = 0; k < cols.length; k++) f(i, cols[k], chars[k]); }}}};
  }}
  function pixel(c, alpha) {{  // RGBA bytes as one Uint32, whatever the byte order
    const b = new Uint8Array([c[0], c[1], c[2], alpha]);
    return new Uint32Array(b.buffer)[0];
  }}
  const ON = {{}}, OFF = {{}};
  for (const ch in D.codes) {{ ON[ch] = pixel(COLORS[D.codes[ch][0]], 255); OFF[ch] = pixel(COLORS[D.codes[ch][0]], 40); }}
  const NONE_ON = pixel(NONE, 255), NONE_OFF = pixel(NONE, 40);
  function describe(v, i, j) {{
    const pos = i * N + j, s = state(v.cells.at(i, j));
    if (!s) return D.hosts[i].name + " -> " + D.hosts[j].name + ": no cell";
    const head = v.lane + " " + D.hosts[i].name + " -> " + D.hosts[j].name + ": " + s[0] +
      (s[1] ? " at " + s[1] : "") + " (" + s[2] + ")";
    return v.explain[pos] ? head + "\\n" + v.explain[pos] : head;
  }}
  function hostMatcher(text) {{
    text = text.trim();
    if (!text) return null;
    if (text.startsWith("role:")) {{ const r = text.slice(5); return h => h.roles.includes(r); }}
    if (/[*?]/.test(text)) {{
      const re = new RegExp("^" + text.replace(/[.+^${{}}()|[\\]\\\\]/g, "\\\\$&").replace(/\\*/g, ".*").replace(/\\?/g, ".") + "$");
      return h => re.test(h.name);
    }}
    return h => h.name.includes(text);
  }}
  function draw(v, match) {{
    // one pixel per cell in a typed array: the background first (dimmed outside the filter), then the cells
    const img = v.small.createImageData(N, N), px = new Uint32Array(img.data.buffer);
    const on = D.hosts.map(h => !match || match(h));
    if (!match) px.fill(NONE_ON);
    else {{
      const cols = [];
      on.forEach((o, j) => {{ if (o) cols.push(j); }});
      for (let i = 0; i < N; i++) {{
        px.fill(on[i] ? NONE_ON : NONE_OFF, i * N, (i + 1) * N);
        if (!on[i]) for (const j of cols) px[i * N + j] = NONE_ON;
      }}
    }}
    v.cells.each((i, j, ch) => {{ px[i * N + j] = (on[i] || on[j]) ? ON[ch] : OFF[ch]; }});
    v.small.putImageData(img, 0, 0);
    const ctx = v.canvas.getContext("2d");
    if (v.small !== ctx) {{
      ctx.imageSmoothingEnabled = false;
      ctx.clearRect(0, 0, v.canvas.width, v.canvas.height);
      ctx.drawImage(v.smallCanvas, 0, 0, N * size, N * size);
    }}
    // a failing cell stays visible at any size: a marker at least 6 px wide around it
    const m = Math.max(size, 6);
    for (const pos of v.failing) {{
      const i = Math.floor(pos / N), j = pos % N, s = state(v.cells.at(i, j));
      if (match && !on[i] && !on[j]) continue;
      const c = COLORS[s[0]];
      ctx.fillStyle = "rgb(" + c.join(",") + ")";
      ctx.fillRect(j * size + size / 2 - m / 2, i * size + size / 2 - m / 2, m, m);
    }}
  }}
  const root = document.getElementById("heatmaps");
  for (const m of D.matrices) {{
    const sec = document.createElement("section");
    sec.className = "check"; sec.dataset.check = m.check; sec.dataset.lane = m.lane;
    const h = document.createElement("h2"); h.textContent = m.title; sec.appendChild(h);
    const p = document.createElement("p"); p.className = "summary"; p.textContent = m.summary; sec.appendChild(p);
    const canvas = document.createElement("canvas");
    canvas.width = N * size; canvas.height = N * size; canvas.dataset.check = m.check; canvas.dataset.lane = m.lane;
    canvas.dataset.cell = size;
    sec.appendChild(canvas); root.appendChild(sec);
    // at one pixel per cell the page draws straight on its canvas, else on a small one scaled up
    const smallCanvas = size === 1 ? canvas : document.createElement("canvas");
    smallCanvas.width = N; smallCanvas.height = N;
    const cells = cellsOf(m), failing = [];
    cells.each((i, j, ch) => {{ if (D.codes[ch][0] !== "allowed") failing.push(i * N + j); }});
    const v = {{check: m.check, lane: m.lane, cells, explain: m.explain, canvas, smallCanvas,
               small: smallCanvas.getContext("2d"), failing}};
    views.push(v);
    draw(v, null);
    function at(ev) {{
      const r = canvas.getBoundingClientRect();
      const j = Math.floor((ev.clientX - r.left) / size), i = Math.floor((ev.clientY - r.top) / size);
      return (i >= 0 && j >= 0 && i < N && j < N) ? [i, j] : null;
    }}
    canvas.addEventListener("mousemove", ev => {{
      const c = at(ev); if (!c) {{ tip.style.display = "none"; return; }}
      tip.textContent = describe(v, c[0], c[1]); tip.style.display = "block";
      tip.style.left = (ev.clientX + 14) + "px"; tip.style.top = (ev.clientY + 14) + "px";
    }});
    canvas.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
    canvas.addEventListener("click", ev => {{ const c = at(ev); if (c) info.textContent = describe(v, c[0], c[1]); }});
  }}
  document.getElementById("hostfilter").addEventListener("input", ev => {{
    const match = hostMatcher(ev.target.value);
    views.forEach(v => draw(v, match));
    document.querySelectorAll("ol#failing li").forEach(li => {{
      const show = !match || match(D.hosts[+li.dataset.i]) || match(D.hosts[+li.dataset.j]);
      li.style.display = show ? "" : "none";
    }});
  }});
  document.querySelectorAll("input.checkfilter").forEach(box => box.addEventListener("change", () => {{
    document.querySelectorAll('[data-lane="' + box.value + '"]').forEach(el => {{
      if (el.tagName === "SECTION" || el.tagName === "LI") el.style.display = box.checked ? "" : "none";
    }});
  }}));
  window.netprobeDescribe = (lane, i, j) => describe(views.find(v => v.lane === lane), i, j);
  window.netprobeReady = {{ms: performance.now() - t0, hosts: N, cell: size}};
  document.body.dataset.ready = "1";
}})();
</script>
</body></html>
"""


def render_page(result: Result, *, title: str = "netprobe mesh") -> str:
    store = result.store
    compact = cells_to_v2(store)
    declared = {c.get("id"): c for c in result.checks}
    roles = {h.name: list(h.roles) for h in result.hosts}
    explain: dict[str, dict[int, str]] = {}
    failing_items = []
    explained = 0
    for k, check in enumerate(store.checks):
        lane = lane_label(check, store.families[k])
        notes = explain.setdefault(lane, {})
        for pos in store.problem_positions(k):
            c = store.cell_at(k, pos)
            text = describe_with_fix(c)  # type: ignore[arg-type]
            if explained < MAX_EXPLAINED:
                notes[pos] = text
                explained += 1
            if len(failing_items) < MAX_LISTED:
                i, j = divmod(pos, store.n)
                failing_items.append(
                    f'<li class="{c.reach}" data-check="{escape(check)}" data-src="{escape(c.src)}" '  # type: ignore[union-attr]
                    f'data-dst="{escape(c.dst)}" data-reach="{c.reach}" data-where="{c.where or ""}" '  # type: ignore[union-attr]
                    f'data-family="{c.family}" data-lane="{escape(lane)}" '  # type: ignore[union-attr]
                    f'data-i="{i}" data-j="{j}">{escape(text)}</li>')
    matrices = []
    for m in compact["matrices"]:
        family = m.get("family", 4)
        k = store.check_index[(m["check"], family)]
        counts = store.counts(k)
        lane = lane_label(m["check"], family)
        matrices.append({"check": m["check"], "family": family, "lane": lane,
                         "title": check_title(declared.get(m["check"], {"id": m["check"]}), family),
                         "summary": ", ".join(f"{v} {r}" for r, v in counts.items() if v),
                         **({"rows": m["rows"]} if "rows" in m else {"sparse": m["sparse"]}),
                         "explain": explain.get(lane, {})})
    data = {"hosts": [{"name": h, "roles": roles.get(h, [])} for h in store.hosts], "codes": compact["codes"],
            "matrices": matrices}
    problems = sum(v for k in range(len(store.checks)) for r, v in store.counts(k).items() if str(r) != "allowed")
    if failing_items:
        more = problems - len(failing_items)
        failing = ('<ol id="failing">' + "".join(failing_items) + "</ol>"
                   + (f"<p>and {more} more (each is explained on its canvas cell)</p>" if more > 0 else ""))
    else:
        failing = '<ol id="failing"></ol><p>none</p>'
    lanes = [lane_label(c, store.families[k]) for k, c in enumerate(store.checks) if store.has_cells(k)]
    boxes = " ".join(f'<label><input type="checkbox" class="checkfilter" value="{escape(lane)}" checked> '
                     f'{escape(lane)}</label>' for lane in lanes)
    when = result.finished or result.started or ""
    summary = escape(f"{len(store.hosts)} hosts, {total_line(result)}" + (f"; finished {when}" if when else "")
                     + (f"; sampled: {result.sample['k']} peers per host, run {result.sample['run']}"
                        if result.sample else "")
                     + (f"; {len(result.errors)} errors" if result.errors else ""))
    # JSON inside <script>: '</' must not close it
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return PAGE.format(title=escape(title), summary=summary, check_boxes=boxes, failing=failing, data=payload)


__all__ = ["render_page"]
