"""The control API as a starlette app around an injected ``AgentService`` (docs/design.md "Processes and the control API").

The app owns HTTP concerns only: the bearer token, body limits, JSON in and out, and mapping
errors to status codes (400 bad input, 404 unknown run, 409 another ``NetprobeError``, 500 a
bug). Every request body is validated into its request type before the service sees it,
and an unauthenticated request never reaches the service (nor the router).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import netprobe
from netprobe.agent.protocol import (
    AgentService,
    InvalidRequest,
    PreflightRequest,
    ProbeRequest,
    UnknownRun,
    check_run_id,
)
from netprobe.errors import ConfigError, NetprobeError

MAX_BODY = 1 << 20  # 1 MiB: 4096 targets fit with room to spare
log = logging.getLogger("netprobe.agent.api")


class _Reject(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": message}`` on one line: the client puts it in a one-line error."""
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


# Kubernetes liveness/readiness probes carry no token; these two answer a status word and nothing else.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


class BearerAuth:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>``, compared in constant time
    (``PUBLIC_PATHS`` excepted, GET only)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.expected = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["path"] in PUBLIC_PATHS and scope["method"] in ("GET", "HEAD")):
            await self.app(scope, receive, send)
            return
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = credentials.strip()
                break
        # compare_digest on every request, also when nothing was presented
        if not hmac.compare_digest(presented, self.expected) or not presented:
            response = _error(401, "unauthorized", {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Reject(400, "bad Content-Length")
        if int(declared) > limit:
            raise _Reject(413, f"request body over {limit} bytes")
    body = bytearray()
    async with aclosing(request.stream()) as chunks:  # closed now, also when we stop early
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise _Reject(413, f"request body over {limit} bytes")
    return bytes(body)


async def _read_json_object(request: Request, limit: int, *, empty_ok: bool = False) -> dict:
    body = await _read_body(request, limit)
    if not body.strip() and empty_ok:
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Reject(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Reject(400, "body must be a JSON object")
    return data


async def _call(what: str, call: Callable[[], Awaitable[dict]]) -> Response:
    """Run a service call and map its outcome to a response; the server keeps running."""
    try:
        result = await call()
    except UnknownRun as exc:
        return _error(404, str(exc) or "unknown run")
    except (ValueError, ConfigError) as exc:  # bad input the request's shape could not show
        return _error(400, str(exc) or type(exc).__name__)
    except NetprobeError as exc:  # AgentError and the like: the agent's state refuses it
        return _error(409, str(exc) or type(exc).__name__)
    except Exception as exc:
        log.exception("agent service failed in %s", what)
        return _error(500, f"{what} failed: {type(exc).__name__}: {exc}")
    if not isinstance(result, dict):
        log.error("agent service %s returned %s, not a dict", what, type(result).__name__)
        return _error(500, f"{what} returned {type(result).__name__}, not an object")
    try:
        return JSONResponse(result)
    except (TypeError, ValueError) as exc:
        log.error("agent service %s returned data that is not JSON: %s", what, exc)
        return _error(500, f"{what} returned data that is not JSON: {exc}")


def build_app(service: AgentService, *, token: str | None, max_body: int = MAX_BODY) -> Starlette:
    """The control API app. With a ``token``, every route requires it as a bearer token."""
    if token is not None and not token:
        raise ValueError("token must not be empty (use None for no token)")

    async def health(request: Request) -> Response:
        async def call() -> dict:
            data = await service.health()
            return {**data, "version": netprobe.__version__} if isinstance(data, dict) else data

        return await _call("health", call)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await service.health()
        except Exception:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def run_probes(request: Request) -> Response:
        try:
            probe_request = ProbeRequest.from_dict_untrusted(await _read_json_object(request, max_body))
        except InvalidRequest as exc:
            return _error(400, str(exc))
        except _Reject as exc:
            return _error(exc.status, exc.message)
        return await _call("run_probes", lambda: service.run_probes(probe_request))

    async def observations(request: Request) -> Response:
        try:
            run_id = check_run_id(request.path_params["run_id"])
        except InvalidRequest as exc:
            return _error(400, str(exc))
        return await _call("observations", lambda: service.observations(run_id))

    async def preflight(request: Request) -> Response:
        try:
            params = PreflightRequest.from_dict_untrusted(await _read_json_object(request, max_body, empty_ok=True))
        except InvalidRequest as exc:
            return _error(400, str(exc))
        except _Reject as exc:
            return _error(exc.status, exc.message)
        return await _call("preflight", lambda: service.preflight(params.to_dict()))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    app = Starlette(
        routes=[
            Route("/v1/health", health, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/v1/probes", run_probes, methods=["POST"]),
            Route("/v1/runs/{run_id}/observations", observations, methods=["GET"]),
            Route("/v1/preflight", preflight, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    if token is not None:
        app.add_middleware(BearerAuth, token=token)
    app.state.auth_required = token is not None
    return app
