"""Talk to one agent's control API: HTTP/1.1 (h11) on trio streams, over TCP, TLS or a unix socket.

One seam: every failure below this line (refused, missing socket, timeout, TLS, a non-2xx
answer, a body that is not a JSON object, a reply of the wrong shape) leaves as one
``AgentError`` line naming the agent, the request and the cause (for a malformed reply, the
field), so ``mesh`` handles exactly one exception type per agent. Replies leave typed.

Why h11 directly and not a general client: a mesh of 5,000 agents makes 10,000 requests, and a
general client's machinery (request and response models, URL parsing, pools, a client object
per agent) cost ~1.3 ms of CPU a request here, h11 on a trio stream ~0.2 ms. A client keeps one
connection for its requests (both rounds of a mesh) while the agent keeps it open; every request
is still signed and every reply's signature checked.
"""

from __future__ import annotations

import functools
import json
import os
import select
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import h11
import trio

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

UNIX_HOST = "netprobe-agent"  # the Host header on a unix socket; never resolved
MAX_REPLY = 256 << 20  # bytes of one reply body: far beyond any agent's (a full-form 1,023-peer reply is ~10 MB)
MAX_HEAD = 64 << 10    # bytes of a reply's status line and headers
# a connection idle this long is not reused: the agent closes idle ones after 5 s
# (agent/server.py HEADER_TIMEOUT), and a request must not race that close
KEEP_IDLE = 4.0
_RECEIVE = 1 << 16
_REPLY_HEADER = REPLY_HEADER.encode()


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


class _Transport(Exception):
    """A request that got no complete answer; the message says why in a few words."""


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


def _describe(exc: BaseException, doing: str) -> str:
    """One line for a transport failure, from the most specific cause underneath."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, FileNotFoundError):
            return "socket file not found (is the responder running?)"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (is the responder running?)"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause}"
        if isinstance(cause, h11.RemoteProtocolError):
            return f"the answer is not HTTP/1.1: {cause}"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"{doing}: {cause.strerror}"
    if isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)):
        return f"{doing}: the connection broke"
    return f"{doing}: {type(exc).__name__}: {exc}"


def tls_context(url: str, ca_file: str | None) -> ssl.SSLContext:
    """The verifying TLS context for https agents (one may serve every agent of a run: loading
    CA certificates is the costly part)."""
    try:
        return ssl.create_default_context(cafile=ca_file)  # always verifies
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(f"agent {url}: cannot load CA file {ca_file}: {exc}") from None


def _stale(stream: trio.abc.Stream) -> bool:
    """Is an idle connection readable (the agent closed it, or sent what nobody asked for)?"""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(transport, "socket", None)
    if sock is None:
        return True
    poller = select.poll()  # not select(): a mesh holds thousands of descriptors
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class AgentClient:
    """Async context manager: ``async with AgentClient(url, token=t) as agent: await agent.health()``.

    ``url`` is an inventory agent address (``unix:/p``, ``tcp://h:p``, ``https://h:p``). ``ca_file``
    verifies an https agent against a private CA (``tls`` passes a context made once for many
    clients instead). ``timeout`` covers connecting and each request; ``run_probes`` waits
    longer, for as long as the request's own probing may take.
    """

    def __init__(self, url: str, *, token: str | None, timeout: float = 10.0, ca_file: str | None = None,
                 tls: ssl.SSLContext | None = None):
        self.url = parse_agent_url(url, source="agent", field="url")
        self.timeout = timeout
        try:  # every request is signed with the control key; the token itself never leaves
            self._signer = Signer.from_secret(token) if token else None
        except SecretTooShort as exc:
            raise AgentError(f"agent {url}: {exc}") from None
        self._tls: ssl.SSLContext | None = None
        self._path: str | None = None
        if url.startswith("unix:"):
            self._path, self._host = url[5:], UNIX_HOST
        else:
            scheme, _, rest = url.partition("://")
            self._host = rest
            name, _, port = rest.rpartition(":")
            self._name, self._port = name.strip("[]"), int(port)
            if scheme == "https":
                self._tls = tls or tls_context(url, ca_file)
        self._stream: trio.abc.Stream | None = None
        self._http: h11.Connection | None = None
        self._idle_since = 0.0

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stream, self._stream, self._http = self._stream, None, None
        if stream is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    async def _connection(self) -> tuple[trio.abc.Stream, h11.Connection]:
        """The kept connection when it is still good, else a new one."""
        if self._stream is not None:
            assert self._http is not None
            if (self._http.our_state is h11.IDLE and time.monotonic() - self._idle_since < KEEP_IDLE
                    and not _stale(self._stream)):
                return self._stream, self._http
            await self.aclose()
        try:
            if self._path is not None:
                stream: trio.abc.Stream = await trio.open_unix_socket(self._path)
            else:
                stream = await trio.open_tcp_stream(self._name, self._port)
        except OSError as exc:
            raise _Transport(_describe(exc, "connect failed")) from exc
        if self._tls is not None:
            stream = trio.SSLStream(stream, self._tls, server_hostname=self._name, https_compatible=True)
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(stream)
                raise _Transport(_describe(exc, "TLS failed")) from exc
        self._stream, self._http = stream, h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        return self._stream, self._http

    async def _exchange(self, method: str, path: str, content: bytes | None,
                        headers: list[tuple[str, str]]) -> tuple[h11.Response, bytes]:
        """Send one request and read its whole answer (on the kept connection when it is good)."""
        stream, http = await self._connection()
        head = [("Host", self._host), ("Accept", "application/json"), *headers]
        if content is not None:
            head += [("Content-Type", "application/json"), ("Content-Length", str(len(content)))]
        try:
            data = http.send(h11.Request(method=method, target=path, headers=head))
            if content:
                data += http.send(h11.Data(data=content))
            data += http.send(h11.EndOfMessage())
            await stream.send_all(data)
            response: h11.Response | None = None
            body = bytearray()
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    http.receive_data(await stream.receive_some(_RECEIVE))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_REPLY:
                        raise _Transport(f"the answer is over {MAX_REPLY >> 20} MiB")
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Transport("the agent closed the connection before its answer")
        except _Transport:
            await self.aclose()
            raise
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            await self.aclose()
            raise _Transport(_describe(exc, "connection lost")) from exc
        assert response is not None
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()  # the agent keeps the connection: the next request reuses it
            self._idle_since = time.monotonic()
        else:
            await self.aclose()
        return response, bytes(body)

    async def _request(self, method: str, path: str, *, body: dict | None = None,
                       timeout: float | None = None) -> dict:
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers: list[tuple[str, str]] = []
        nonce = None
        if self._signer is not None:
            raw_nonce = os.urandom(16)
            nonce = raw_nonce.hex()
            headers.append(("Authorization", self._signer.authorization(method, path, "", content or b"",
                                                                        now=time.time(), nonce=raw_nonce)))
        budget = self.timeout if timeout is None else timeout
        try:
            with trio.fail_after(budget):
                response, raw = await self._exchange(method, path, content, headers)
        except trio.TooSlowError:
            await self.aclose()
            raise AgentError(f"agent {self.url}: {method} {path}: timed out (no answer within {budget:g} s)") from None
        except _Transport as exc:
            raise AgentError(f"agent {self.url}: {method} {path}: {exc}") from exc
        status = response.status_code
        success = 200 <= status < 300
        if nonce is not None and success:
            presented = next((v.decode("ascii", "replace") for k, v in response.headers if k == _REPLY_HEADER), None)
            if not self._signer.reply_ok(nonce, status, raw, presented):  # type: ignore[union-attr]
                raise AgentError(f"agent {self.url}: {method} {path}: the reply is not signed with this cluster's "
                                 "key (another cluster's agent, or altered on the way)")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, an absurd number, absurd nesting
            data = None
        if not success:
            detail = data.get("error") if isinstance(data, dict) else None
            if not isinstance(detail, str):
                detail = raw[:200].decode("utf-8", "replace").strip() or response.reason.decode("latin-1")
            if status == 401:  # say why, not just "unauthorized"
                where = " (--token-file, the inventory's token_file, or NETPROBE_TOKEN)"
                if self._signer is None:
                    detail = "the agent requires a token and none was given" + where
                elif "bad signature" in detail:
                    detail = "the token does not match the agent's" + where
                # else: the agent's own words (its clock differs, a replayed request, ...)
            raise AgentRequestError(
                f"agent {self.url}: {method} {path}: HTTP {status}: {_one_line(detail)}",
                status=status,
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
