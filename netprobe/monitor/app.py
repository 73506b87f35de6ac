"""The HTTP side of `netprobe watch` (starlette): / the live page, /live its refresh, /heatmap the
canvas page of the last run, /metrics for Prometheus, /result.json the last result, /healthz for
the kubelet. Read-only, no token: it shows what the metrics show (flows and where they die),
never the cluster token. What depends only on the last run is made once per run, when first
asked for (the page polls /live every few seconds)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from netprobe.monitor.metrics import CONTENT_TYPE, WatchMetrics
from netprobe.monitor.page import live, render_page, status_line
from netprobe.monitor.state import WatchState


def build_watch_app(state: WatchState, metrics: WatchMetrics, *, version=lambda: 0) -> Starlette:
    """``version()`` changes whenever the state does (the page re-renders only then)."""
    poll = max(0.5, min(state.interval / 2, 5.0))
    made: dict[str, tuple[int, object]] = {}  # what -> (version it was made for, it)

    def once_per_run(what: str, make):
        now = version()
        if what not in made or made[what][0] != now:
            made[what] = (now, make())
        return made[what][1]

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(state, poll_seconds=poll), headers={"Cache-Control": "no-store"})

    async def live_json(request: Request) -> Response:
        fresh = {**once_per_run("live", lambda: live(state, version())), "status": status_line(state)}  # type: ignore[dict-item]
        return JSONResponse(fresh, headers={"Cache-Control": "no-store"})

    async def heatmap(request: Request) -> Response:
        if state.last is None:
            return HTMLResponse("<p>no run yet</p>", status_code=503)
        from netprobe.report.heatmap_page import render_page as canvas_page

        return HTMLResponse(once_per_run("heatmap", lambda: canvas_page(state.last, title="netprobe watch: last run")),
                            headers={"Cache-Control": "no-store"})

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def result_json(request: Request) -> Response:
        if state.last is None:
            return JSONResponse({"error": "no run has finished yet"}, status_code=503)
        return Response(state.last.to_json(), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/", page, methods=["GET"]),
        Route("/live", live_json, methods=["GET"]),
        Route("/heatmap", heatmap, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/result.json", result_json, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ])
