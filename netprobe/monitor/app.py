"""The HTTP side of `netprobe watch` (starlette): / the live page, /live its refresh, /metrics
for Prometheus, /result.json the last result, /healthz for the kubelet. Read-only, no token:
it shows what the metrics show (flows and where they die), never the cluster token."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from netprobe.monitor.metrics import CONTENT_TYPE, WatchMetrics
from netprobe.monitor.page import live, render_page
from netprobe.monitor.state import WatchState


def build_watch_app(state: WatchState, metrics: WatchMetrics, *, version=lambda: 0) -> Starlette:
    """``version()`` changes whenever the state does (the page re-renders only then)."""
    poll = max(0.5, min(state.interval / 2, 5.0))

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(state, poll_seconds=poll), headers={"Cache-Control": "no-store"})

    async def live_json(request: Request) -> Response:
        return JSONResponse(live(state, version()), headers={"Cache-Control": "no-store"})

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
        Route("/metrics", metrics_text, methods=["GET"]),
        Route("/result.json", result_json, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
    ])
