"""The control API as a starlette app around an injected ``AgentService`` (docs/design.md "Processes and the control API").

The app owns HTTP concerns only: request signatures (``netprobe/core/auth.py``), body limits in
size and time, JSON in and out, and mapping errors to status codes (400 bad input, 403 outside
the allow-list, 404 unknown run, 409 another ``NetprobeError``, 429 over a cap, 500 a bug, with
one line that names no exception). Every request body is validated into its request type before
the service sees it, and an unauthenticated request never reaches the service (nor the router),
nor has its body read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
import time

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import netprobe
from netprobe.agent.protocol import (
    AgentService,
    ArmRequest,
    CollectRequest,
    ExplainService,
    InvalidRequest,
    PreflightRequest,
    ProbeRequest,
    Refused,
    ResendRequest,
    UnknownRun,
    check_run_id,
)
from netprobe.core.auth import REPLY_HEADER, SCHEME, AuthFailed, Verifier
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
BODY_TIMEOUT = 10.0  # seconds to send a whole request body; a trickle is cut off (408)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _read_body(receive: Receive, declared: bytes | None, limit: int, timeout: float) -> bytes:
    """The whole body within ``limit`` bytes and ``timeout`` seconds, else ``_Reject`` (413, 408);
    ``ClientDisconnect`` when the client went away first."""
    if declared is not None:
        if not declared.isdigit():
            raise _Reject(400, "bad Content-Length")
        if int(declared) > limit:
            raise _Reject(413, f"request body over {limit} bytes")
    body = bytearray()
    with trio.move_on_after(timeout) as scope:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            body += message.get("body", b"")
            if len(body) > limit:
                raise _Reject(413, f"request body over {limit} bytes")
            if not message.get("more_body", False):
                return bytes(body)
    assert scope.cancelled_caught
    raise _Reject(408, f"request body not received within {timeout:g} s")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits on the real one."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class Gate:
    """ASGI middleware in front of every route: the signature (``netprobe/core/auth.py``), checked
    before the body is read; then the body, bounded in size and time; then the app, whose reply
    is signed. ``PUBLIC_PATHS`` (GET/HEAD) pass untouched. With no ``verifier`` (a unix socket
    without a token) only the body bounds apply."""

    def __init__(self, app: ASGIApp, verifier: Verifier | None, max_body: int, body_timeout: float):
        self.app = app
        self.verifier = verifier
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["path"] in PUBLIC_PATHS and scope["method"] in ("GET", "HEAD")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # h11 lower-cases names; the last of a repeated one wins
        verified = None
        if self.verifier is not None:
            path = scope.get("raw_path") or scope["path"].encode()
            try:
                verified = self.verifier.verify(headers.get(b"authorization"), scope["method"],
                                                path.decode("latin-1"), scope["query_string"].decode("latin-1"),
                                                now=time.time())
            except AuthFailed as exc:
                await _error(401, str(exc), {"WWW-Authenticate": SCHEME})(scope, receive, send)
                return
        body = b""
        if scope["method"] in BODY_METHODS or b"content-length" in headers or b"transfer-encoding" in headers:
            try:
                body = await _read_body(receive, headers.get(b"content-length"), self.max_body, self.body_timeout)
            except _Reject as exc:
                try:
                    await _error(exc.status, exc.message)(scope, receive, send)
                except (trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError):
                    # a client still sending while we answer: hypercorn may race closing it
                    log.debug("connection dropped while refusing its body (%s)", exc.message)
                return
            except ClientDisconnect:
                log.debug("client went away while sending its body")
                return
        if verified is not None and not verified.body_ok(body):
            await _error(401, "unauthorized: the body does not match its signature",
                         {"WWW-Authenticate": SCHEME})(scope, receive, send)
            return
        if verified is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await self.app(scope, _replay(body, receive), _signing_send(send, self.verifier, verified.nonce))


def _signing_send(send: Send, verifier: Verifier, nonce: str) -> Send:
    """Hold the reply's start until its body is complete, then send it with the reply signature."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def signing(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        sig = verifier.sign_reply(nonce, start["status"], body)
        await send({**start, "headers": [*start.get("headers", []), (REPLY_HEADER.encode(), sig.encode())]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return signing


async def _read_json_object(request: Request, *, empty_ok: bool = False) -> dict:
    body = await request.body()  # already read and bounded by the Gate
    if not body.strip() and empty_ok:
        return {}
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise _Reject(400, f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise _Reject(400, "body is not valid JSON: not UTF-8") from None
    except RecursionError:
        raise _Reject(400, "body is not valid JSON: nested too deeply") from None
    except ValueError:  # a number of more than 4300 digits
        raise _Reject(400, "body is not valid JSON: a number too long") from None
    if not isinstance(data, dict):
        raise _Reject(400, "body must be a JSON object")
    return data


async def _call(what: str, call: Callable[[], Awaitable[dict]]) -> Response:
    """Run a service call and map its outcome to a response; the server keeps running. A bug is
    500 with one line that names no exception (the traceback goes to the agent's log only)."""
    try:
        result = await call()
    except UnknownRun as exc:
        return _error(404, str(exc) or "unknown run")
    except Refused as exc:  # over a cap (429, Retry-After) or outside the allow-list (403)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return _error(exc.status, str(exc), headers)
    except (ValueError, ConfigError) as exc:  # bad input the request's shape could not show
        return _error(400, str(exc) or "bad request")
    except NetprobeError as exc:  # AgentError and the like: the agent's state refuses it
        return _error(409, str(exc) or "conflict with the agent's state")
    except Exception:
        log.exception("agent service failed in %s", what)
        return _error(500, f"{what} failed: internal error (see the agent's log)")
    if not isinstance(result, dict):
        log.error("agent service %s returned %s, not a dict", what, type(result).__name__)
        return _error(500, f"{what} failed: internal error (see the agent's log)")
    try:
        return JSONResponse(result)
    except (TypeError, ValueError) as exc:
        log.error("agent service %s returned data that is not JSON: %s", what, exc)
        return _error(500, f"{what} failed: internal error (see the agent's log)")


def build_app(service: AgentService, *, token: str | None, max_body: int = MAX_BODY,
              body_timeout: float = BODY_TIMEOUT) -> Starlette:
    """The control API app. With a ``token`` (the cluster secret, at least 16 bytes), every route
    but ``PUBLIC_PATHS`` requires a request signed with its control key (``netprobe/core/auth.py``)."""
    if token is not None and not token:
        raise ValueError("token must not be empty (use None for no token)")
    verifier = Verifier(token) if token is not None else None  # SecretTooShort (a ValueError)

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

    async def observations(request: Request) -> Response:
        try:
            run_id = check_run_id(request.path_params["run_id"])
        except InvalidRequest as exc:
            return _error(400, str(exc))
        return await _call("observations", lambda: service.observations(run_id))

    async def preflight(request: Request) -> Response:
        try:
            params = PreflightRequest.from_dict_untrusted(await _read_json_object(request, empty_ok=True))
        except InvalidRequest as exc:
            return _error(400, str(exc))
        except _Reject as exc:
            return _error(exc.status, exc.message)
        return await _call("preflight", lambda: service.preflight(params.to_dict()))

    def posted(what: str, parse, call):
        """A POST endpoint: the body parsed into its request type (400 naming the field), then the service."""

        async def endpoint(request: Request) -> Response:
            if what.startswith("explain_") and not isinstance(service, ExplainService):
                return _error(404, "this agent has no explain round (an older netprobe)")
            try:
                typed = parse(await _read_json_object(request))
            except InvalidRequest as exc:
                return _error(400, str(exc))
            except _Reject as exc:
                return _error(exc.status, exc.message)
            return await _call(what, lambda: call(typed))

        return endpoint

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    app = Starlette(
        routes=[
            Route("/v1/health", health, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/v1/probes", posted("run_probes", ProbeRequest.from_dict_untrusted,
                                       lambda r: service.run_probes(r)), methods=["POST"]),
            Route("/v1/runs/{run_id}/observations", observations, methods=["GET"]),
            Route("/v1/preflight", preflight, methods=["POST"]),
            Route("/v1/explain/arm", posted("explain_arm", ArmRequest.from_dict_untrusted,
                                            lambda r: service.explain_arm(r)), methods=["POST"]),  # type: ignore[attr-defined]
            Route("/v1/explain/resend", posted("explain_resend", ResendRequest.from_dict_untrusted,
                                               lambda r: service.explain_resend(r)), methods=["POST"]),  # type: ignore[attr-defined]
            Route("/v1/explain/collect", posted("explain_collect", CollectRequest.from_dict_untrusted,
                                                lambda r: service.explain_collect(r)), methods=["POST"]),  # type: ignore[attr-defined]
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.add_middleware(Gate, verifier=verifier, max_body=max_body, body_timeout=body_timeout)
    app.state.auth_required = verifier is not None
    return app
