"""Talk to one agent's control API: httpx on trio (through anyio), TCP, TLS or a unix socket.

One seam: every failure below this line (refused, missing socket, timeout, TLS, a non-2xx
answer, a body that is not a JSON object, a reply of the wrong shape) leaves as one
``AgentError`` line naming the agent, the request and the cause (for a malformed reply, the
field), so ``mesh`` handles exactly one exception type per agent. Replies leave typed.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from netprobe.agent.protocol import (
    ArmReply,
    ArmRequest,
    CollectReply,
    CollectRequest,
    HealthReply,
    ObservationsReply,
    PreflightRequest,
    ProbeReply,
    ProbeRequest,
    ResendReply,
    ResendRequest,
    check_run_id,
    preflight_report_from_dict_untrusted,
)
from netprobe.core.auth import REPLY_HEADER, SecretTooShort, Signer
from netprobe.core.inventory import parse_agent_url
from netprobe.core.fields import InvalidReport
from netprobe.errors import AgentError
from netprobe.preflight.model import Report

T = TypeVar("T")

UNIX_BASE_URL = "http://netprobe-agent"  # the Host header on a unix socket; never resolved


class MalformedReply(AgentError):
    """The agent answered 2xx with a body that breaks the contract; ``field`` names where."""

    def __init__(self, message: str, *, field: str):
        self.field = field
        super().__init__(message)


class AgentRequestError(AgentError):
    """The agent answered, but not with success; ``status`` is the HTTP status code."""

    def __init__(self, message: str, *, status: int):
        self.status = status
        super().__init__(message)


def _causes(exc: BaseException):
    """Every exception behind ``exc``: its cause chain and the members of any group on it."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        nxt = current.__cause__ or current.__context__
        if nxt is not None:
            todo.append(nxt)


def _describe(exc: httpx.HTTPError) -> str:
    """One line for a transport failure, from the most specific cause underneath httpx."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, FileNotFoundError):
            return "socket file not found (is the responder running?)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the responder running?)"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause}"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(exc).__name__}: {cause.strerror}"
    return f"{type(exc).__name__}: {exc}"


class AgentClient:
    """Async context manager: ``async with AgentClient(url, token=t) as agent: await agent.health()``.

    ``url`` is an inventory agent address (``unix:/p``, ``tcp://h:p``, ``https://h:p``). ``ca_file``
    verifies an https agent against a private CA. ``timeout`` covers connect and each request;
    ``run_probes`` waits longer, for as long as the request's own probing may take.
    """

    def __init__(self, url: str, *, token: str | None, timeout: float = 10.0, ca_file: str | None = None):
        self.url = parse_agent_url(url, source="agent", field="url")
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        try:  # every request is signed with the control key; the token itself never leaves
            self._signer = Signer.from_secret(token) if token else None
        except SecretTooShort as exc:
            raise AgentError(f"agent {url}: {exc}") from None
        # No TLS on unix or plain http: skip loading the CA bundle (~25 ms a client, serial on
        # the CPU, which a 32-agent mesh felt). https agents always verify.
        verify: ssl.SSLContext | bool = False
        if url.startswith("unix:"):
            transport = httpx.AsyncHTTPTransport(uds=url[5:], verify=False)
            base_url = UNIX_BASE_URL
        else:
            scheme, _, rest = url.partition("://")
            if scheme == "https":
                try:
                    verify = ssl.create_default_context(cafile=ca_file)  # never False for https
                except (OSError, ssl.SSLError) as exc:
                    raise AgentError(f"agent {url}: cannot load CA file {ca_file}: {exc}") from None
            transport = httpx.AsyncHTTPTransport(verify=verify)
            base_url = f"{'https' if scheme == 'https' else 'http'}://{rest}"
        self._http = httpx.AsyncClient(
            transport=transport,
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # never through a proxy from the environment
        )

    async def __aenter__(self) -> AgentClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, *, body: dict | None = None,
                       timeout: float | None = None) -> dict:
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        nonce = None
        if self._signer is not None:
            raw_nonce = os.urandom(16)
            nonce = raw_nonce.hex()
            headers["Authorization"] = self._signer.authorization(method, path, "", content, now=time.time(),
                                                                  nonce=raw_nonce)
        try:
            response = await self._http.request(
                method,
                path,
                content=content if body is not None else None,
                headers=headers,
                timeout=httpx.Timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise AgentError(f"agent {self.url}: {method} {path}: {_describe(exc)}") from exc
        if (nonce is not None and response.is_success
                and not self._signer.reply_ok(nonce, response.status_code, response.content,
                                              response.headers.get(REPLY_HEADER))):
            raise AgentError(f"agent {self.url}: {method} {path}: the reply is not signed with this cluster's "
                             "key (another cluster's agent, or altered on the way)")
        try:
            data = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, an absurd number, absurd nesting
            data = None
        if not response.is_success:
            detail = data.get("error") if isinstance(data, dict) else None
            if not isinstance(detail, str):
                detail = response.text[:200].strip() or response.reason_phrase
            if response.status_code == 401:  # say why, not just "unauthorized"
                where = " (--token-file, the inventory's token_file, or NETPROBE_TOKEN)"
                if self._signer is None:
                    detail = "the agent requires a token and none was given" + where
                elif "bad signature" in detail:
                    detail = "the token does not match the agent's" + where
                # else: the agent's own words (its clock differs, a replayed request, ...)
            raise AgentRequestError(
                f"agent {self.url}: {method} {path}: HTTP {response.status_code}: {_one_line(detail)}",
                status=response.status_code,
            )
        if not isinstance(data, dict):
            raise AgentError(f"agent {self.url}: {method} {path}: answer is not a JSON object")
        return data

    async def _reply(self, method: str, path: str, parse: Callable[[Any], T], **kwargs) -> T:
        """The answer to one request, parsed into its type; a malformed one is an AgentError."""
        data = await self._request(method, path, **kwargs)
        try:
            return parse(data)
        except InvalidReport as exc:
            raise MalformedReply(f"agent {self.url}: {method} {path}: malformed reply: {_one_line(str(exc))}",
                                 field=exc.field) from None

    async def health(self) -> HealthReply:
        return await self._reply("GET", "/v1/health", HealthReply.from_dict_untrusted)

    async def run_probes(self, request: ProbeRequest) -> ProbeReply:
        # the agent answers after its probing: up to timeout x (retries + 1), plus our margin
        budget = request.timeout * (request.retries + 1) + self.timeout
        parse = functools.partial(ProbeReply.from_dict_untrusted, targets=len(request.targets))
        reply = await self._reply("POST", "/v1/probes", parse, body=request.to_dict(),
                                  timeout=budget)
        _same_run(self.url, "POST /v1/probes", request.run_id, reply.run_id)
        return reply

    async def observations(self, run_id: str) -> ObservationsReply:
        try:
            check_run_id(run_id)
        except ValueError as exc:
            raise AgentError(f"agent {self.url}: {exc}") from None
        path = f"/v1/runs/{run_id}/observations"
        reply = await self._reply("GET", path, ObservationsReply.from_dict_untrusted)
        _same_run(self.url, f"GET {path}", run_id, reply.run_id)
        return reply

    async def preflight(self, request: PreflightRequest) -> Report:
        return await self._reply("POST", "/v1/preflight", preflight_report_from_dict_untrusted,
                                 body=request.to_dict())

    # the explain round: arm (destinations), re-send (sources), collect (destinations)
    async def explain_arm(self, request: ArmRequest) -> ArmReply:
        return await self._run_reply("/v1/explain/arm", request, ArmReply.from_dict_untrusted)

    async def explain_resend(self, request: ResendRequest) -> ResendReply:
        # the agent answers after one reply window (no retries), plus our margin
        return await self._run_reply("/v1/explain/resend", request, ResendReply.from_dict_untrusted,
                                     timeout=request.timeout + self.timeout)

    async def explain_collect(self, request: CollectRequest) -> CollectReply:
        return await self._run_reply("/v1/explain/collect", request, CollectReply.from_dict_untrusted,
                                     timeout=request.timeout + self.timeout)

    async def _run_reply(self, path: str, request, parse: Callable[[Any], T], timeout: float | None = None) -> T:
        """POST a run's request; the reply must answer that run."""
        reply = await self._reply("POST", path, parse, body=request.to_dict(), timeout=timeout)
        _same_run(self.url, f"POST {path}", request.run_id, reply.run_id)  # type: ignore[attr-defined]
        return reply


def _same_run(url: str, what: str, asked: str, answered: str) -> None:
    if answered != asked:
        raise MalformedReply(f"agent {url}: {what}: malformed reply: run_id: answers run {answered!r}, "
                             f"not {asked!r}", field="run_id")


def _one_line(text: str, limit: int = 300) -> str:
    """An agent's words as one bounded line: they end up in a one-line error."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."
