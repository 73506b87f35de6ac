"""The control API over real sockets (unix in a temp dir, TCP on 127.0.0.1) with a fake service.

Unprivileged: hypercorn + starlette on trio serve, httpx (through anyio) or AgentClient call.
"""

from __future__ import annotations

import json
import math
import os
import time
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import netprobe
from netprobe.agent.api import MAX_BODY, build_app
from netprobe.agent.client import AgentClient, AgentRequestError
from netprobe.agent.protocol import (
    HealthReply,
    ObservationsReply,
    PreflightRequest,
    ProbeReply,
    ProbeRequest,
    Stats,
    UnknownRun,
)
from netprobe.agent.server import check_listen_policy, parse_listen, serve_api
from netprobe.core.auth import Signer
from netprobe.core.checks import CHECKS
from netprobe.core.keys import control_key, probe_key
from netprobe.core.reports import ObservationReport
from netprobe.errors import AgentError, ConfigError, PrivilegeError
from netprobe.preflight.model import Report

TOKEN = "s3cret-token-of-the-test-cluster"


class FakeService:
    """Records every call; ``fail`` makes the next calls raise it, ``result`` overrides answers."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: BaseException | None = None
        self.result: object = None

    def _answer(self, call: tuple, default: object) -> object:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail
        return default if self.result is None else self.result

    async def health(self) -> dict:
        return self._answer(("health",), {"host": "fake", "captures": 2})

    async def run_probes(self, request: ProbeRequest) -> dict:
        return self._answer(("run_probes", request), ProbeReply(request.run_id, "fake", (), Stats()).to_dict())

    async def observations(self, run_id: str) -> dict:
        return self._answer(("observations", run_id), ObservationsReply(run_id, "fake", (OBSERVED,), Stats()).to_dict())

    async def preflight(self, params: dict) -> dict:
        return self._answer(("preflight", params), Report((), host="fake", profile=params["profile"]).to_dict())


OBSERVED = ObservationReport("198.51.100.11", 7, "tcp", True, True, True, 12.5)


def request_dict(**overrides) -> dict:
    data = {
        "run_id": "run-1",
        "targets": [{"name": "node2", "address": "198.51.100.12", "checks": ["bgp"]}],
        "checks": [CHECKS["bgp"].to_dict()],
        "timeout": 0.2,
        "retries": 0,
        "vni": 1,
    }
    data.update(overrides)
    return data


@pytest.fixture
def sock_dir(tmp_path):
    """tmp_path, or a shorter temp dir when tmp_path would overflow sun_path (108 bytes)."""
    if len(os.fsencode(str(tmp_path / "agent.sock"))) <= 100:
        yield tmp_path
        return
    short = tempfile.mkdtemp(prefix="np-")
    try:
        yield Path(short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


@dataclass
class Agent:
    url: str
    path: Path
    service: FakeService

    def http(self) -> httpx.AsyncClient:
        """A raw HTTP client on the agent's socket, to send what AgentClient never would."""
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.path)),
                                 base_url="http://agent", timeout=5)


async def start_agent(nursery, sock_dir: Path, token: str | None, name: str = "agent.sock") -> Agent:
    service = FakeService()
    path = sock_dir / name
    url = await nursery.start(serve_api, build_app(service, token=token), f"unix:{path}")
    return Agent(url, path, service)


@pytest.fixture
async def agent(nursery, sock_dir):
    return await start_agent(nursery, sock_dir, token=None)


@pytest.fixture
async def locked_agent(nursery, sock_dir):
    return await start_agent(nursery, sock_dir, token=TOKEN)


# --- round trips ----------------------------------------------------------------------------


async def test_health_round_trip_adds_the_version(agent):
    async with AgentClient(agent.url, token=None) as client:
        assert await client.health() == HealthReply("fake", netprobe.__version__, captures=2)
    assert agent.service.calls == [("health",)]
    assert agent.url == f"unix:{agent.path}"


async def test_run_probes_round_trip(agent):
    sent = ProbeRequest.from_dict_untrusted(request_dict(
        targets=[{"name": "node2", "address": "198.51.100.12", "checks": ["bgp", "ipip"]},
                 {"name": "node3", "address": "198.51.100.13", "checks": ["ipip"]}],
        checks=[CHECKS["bgp"].to_dict(), CHECKS["ipip"].to_dict()], vni=77,
    ))
    async with AgentClient(agent.url, token=None) as client:
        answer = await client.run_probes(sent)
    assert answer == ProbeReply("run-1", "fake", (), Stats())
    [(method, received)] = agent.service.calls
    assert method == "run_probes"
    assert isinstance(received, ProbeRequest)
    assert received == sent


async def test_observations_and_preflight_round_trips(agent):
    async with AgentClient(agent.url, token=None) as client:
        assert await client.observations("run-7") == ObservationsReply("run-7", "fake", (OBSERVED,), Stats())
        asked = PreflightRequest(("198.18.0.0/16",), None, "canal")
        assert await client.preflight(asked) == Report((), host="fake", profile="canal")
    assert agent.service.calls == [("observations", "run-7"), ("preflight", asked.to_dict())]


async def test_preflight_with_an_empty_body_means_no_params(agent):
    async with agent.http() as http:
        response = await http.post("/v1/preflight")
    assert response.status_code == 200
    assert agent.service.calls == [("preflight", PreflightRequest().to_dict())]


# --- the bearer token -----------------------------------------------------------------------


def signed(method: str, path: str, body: bytes, *, token: str = TOKEN, now: float | None = None,
           nonce: bytes | None = None) -> dict:
    return {"Authorization": Signer.from_secret(token).authorization(
        method, path, "", body, now=time.time() if now is None else now, nonce=nonce or os.urandom(16))}


BODY = json.dumps(request_dict()).encode()


def wrong_signatures() -> list:
    good = signed("POST", "/v1/probes", BODY)["Authorization"]
    return [
        None,
        f"Bearer {TOKEN}",                                                    # the old scheme: the secret itself
        "NetprobeHMAC",
        good.replace("sig=", "sig=0") [:-1],                                  # altered signature
        signed("POST", "/v1/probes", BODY, token="another-cluster-token-xx")["Authorization"],
        signed("POST", "/v1/probes", BODY, now=time.time() - 300)["Authorization"],   # too old
        signed("POST", "/v1/probes", BODY, now=time.time() + 300)["Authorization"],   # from the future
        signed("POST", "/v1/preflight", BODY)["Authorization"],               # another path
        signed("GET", "/v1/probes", BODY)["Authorization"],                   # another method
        signed("POST", "/v1/probes", BODY + b" ")["Authorization"],           # another body
        good + ", extra=1",
    ]


@pytest.mark.parametrize("auth", range(len(wrong_signatures())))
async def test_unsigned_or_wrongly_signed_requests_are_401_and_never_reach_the_service(locked_agent, auth):
    header = wrong_signatures()[auth]
    headers = {"Authorization": header, "Content-Type": "application/json"} if header else {}
    async with locked_agent.http() as http:
        response = await http.post("/v1/probes", headers=headers, content=BODY)
        other = await http.get("/no/such/route", headers=headers)
    assert response.status_code == 401 and other.status_code == 401
    assert response.json()["error"].startswith("unauthorized")
    assert "\n" not in response.json()["error"]
    assert response.headers["www-authenticate"] == "NetprobeHMAC"
    assert locked_agent.service.calls == []


async def test_a_signed_request_is_accepted_once_then_a_replay_is_401(locked_agent):
    headers = {**signed("POST", "/v1/probes", BODY), "Content-Type": "application/json"}
    async with locked_agent.http() as http:
        first = await http.post("/v1/probes", headers=headers, content=BODY)
        again = await http.post("/v1/probes", headers=headers, content=BODY)
    assert first.status_code == 200
    assert again.status_code == 401 and again.json() == {"error": "unauthorized: replayed request"}
    assert [c[0] for c in locked_agent.service.calls] == ["run_probes"]


async def test_the_secret_never_crosses_the_wire(nursery):
    """What a sniffer of plain tcp:// would see: a recording proxy between client and agent."""
    seen = bytearray()
    url = await nursery.start(serve_api, build_app(FakeService(), token=TOKEN), "tcp://127.0.0.1:0")
    port = int(url.rsplit(":", 1)[1])
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]

    async def pipe(src, dst):
        async for chunk in src:
            seen.extend(chunk)
            await dst.send_all(chunk)

    async def relay(client_stream):
        server_stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with trio.open_nursery() as inner:
            inner.start_soon(pipe, client_stream, server_stream)
            inner.start_soon(pipe, server_stream, client_stream)

    nursery.start_soon(trio.serve_listeners, relay, [listener])
    proxy = f"tcp://127.0.0.1:{listener.socket.getsockname()[1]}"
    async with AgentClient(proxy, token=TOKEN) as client:
        await client.health()
        await client.run_probes(ProbeRequest.from_dict_untrusted(request_dict()))
    assert b"NetprobeHMAC" in seen and b"run-1" in seen
    for secret in (TOKEN.encode(), control_key(TOKEN), probe_key(TOKEN)):
        assert secret not in seen and secret.hex().encode() not in seen


async def test_client_refuses_an_unsigned_or_altered_reply(nursery, sock_dir):
    """An on-path attacker answering for the agent: a 200 without the agent's reply signature."""

    async def forged(request):
        return JSONResponse({"host": "forged", "version": "0"})

    app = Starlette(routes=[Route("/v1/health", forged)])
    app.state.auth_required = True
    url = await nursery.start(serve_api, app, f"unix:{sock_dir / 'forged.sock'}")
    async with AgentClient(url, token=TOKEN) as client:
        with pytest.raises(AgentError, match="reply is not signed with this cluster's key"):
            await client.health()


def test_a_token_shorter_than_16_bytes_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        build_app(FakeService(), token="fifteen-bytes!!")
    with pytest.raises(AgentError, match="at least 16 bytes"):
        AgentClient("unix:/nonexistent", token="short")
    build_app(FakeService(), token="sixteen-bytes!!!")


async def test_right_token_is_accepted(locked_agent):
    async with AgentClient(locked_agent.url, token=TOKEN) as client:
        assert (await client.health()).host == "fake"
        assert (await client.run_probes(ProbeRequest.from_dict_untrusted(request_dict()))).run_id == "run-1"
    assert [c[0] for c in locked_agent.service.calls] == ["health", "run_probes"]


async def test_client_reports_a_wrong_token(locked_agent):
    async with AgentClient(locked_agent.url, token="nope-not-the-token") as client:
        with pytest.raises(AgentRequestError, match="HTTP 401: the token does not match the agent's") as info:
            await client.health()
    assert info.value.status == 401
    assert locked_agent.url in str(info.value)


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError):
        build_app(FakeService(), token="")


# --- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b"not json", b"\xff\xfe", b'{"run_id": "r", }'])
async def test_bad_json_is_400(agent, body):
    async with agent.http() as http:
        response = await http.post("/v1/probes", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert agent.service.calls == []


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3", b"null"])
async def test_json_that_is_not_an_object_is_400(agent, body):
    async with agent.http() as http:
        for path in ("/v1/probes", "/v1/preflight"):
            response = await http.post(path, content=body)
            assert response.status_code == 400, path
            assert response.json()["error"] == "body must be a JSON object"
    assert agent.service.calls == []


INVALID_FIELDS = [
    ("run_id", {"run_id": "bad id"}),
    ("run_id", {"run_id": "x" * 65}),
    ("targets", {"targets": "node2"}),
    ("targets[0].name", {"targets": [{"name": "", "address": "198.51.100.12", "checks": ["bgp"]}]}),
    ("targets[0].address", {"targets": [{"name": "n", "address": "198.51.100.300", "checks": ["bgp"]}]}),
    ("targets[0].checks", {"targets": [{"name": "n", "address": "198.51.100.12", "checks": ["etcd"]}]}),
    ("checks", {"checks": None}),
    ("checks[0].proto", {"checks": [{**CHECKS["bgp"].to_dict(), "proto": "icmp"}]}),
    ("timeout", {"timeout": 0}),
    ("timeout", {"timeout": 31}),
    ("retries", {"retries": 6}),
    ("vni", {"vni": 2**24}),
    ("surprise", {"surprise": True}),
]


@pytest.mark.parametrize("field, change", INVALID_FIELDS, ids=[f"{f}={c}"[:60] for f, c in INVALID_FIELDS])
async def test_invalid_probe_request_is_400_naming_the_field(agent, field, change):
    async with agent.http() as http:
        response = await http.post("/v1/probes", json=request_dict(**change))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}: ")
    assert agent.service.calls == []


async def test_too_many_targets_is_400(agent):
    targets = [{"name": f"n{i}", "address": f"198.18.{i // 256}.{i % 256}", "checks": ["bgp"]} for i in range(1024)]
    async with agent.http() as http:
        response = await http.post("/v1/probes", json=request_dict(targets=targets))
    assert response.status_code == 400
    assert response.json()["error"].startswith("targets: at most 1023")


# The malformed bodies (#9 item 4): each one line, 400, no traceback in the log.
DEEP = b'{"run_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
MALFORMED = [
    ("/v1/probes", DEEP, "nested too deeply"),
    ("/v1/preflight", DEEP, "nested too deeply"),
    ("/v1/probes", b'{"retries": ' + b"9" * 5000 + b"}", "a number too long"),
    ("/v1/probes", json.dumps(request_dict(checks=[{**CHECKS["bgp"].to_dict(), "to_role": ["x"]}])).encode(),
     "checks[0].to_role: unknown role"),
    ("/v1/probes", json.dumps(request_dict(checks=[{**CHECKS["bgp"].to_dict(), "from_role": {"a": 1}}])).encode(),
     "checks[0].from_role: unknown role"),
    ("/v1/preflight", b'{"profile": ["calico"]}', "profile: must be a string"),
    ("/v1/preflight", b'{"profile": "nonsense"}', "profile: must be one of"),
    ("/v1/preflight", b'{"pool_cidrs": [["10.0.0.0/8"]]}', "pool_cidrs[0]: must be a string"),
    ("/v1/preflight", b'{"pool_cidrs": [5]}', "pool_cidrs[0]: must be a string"),
    ("/v1/preflight", b'{"service_cidr": {"a": 1}}', "service_cidr: must be a string"),
    ("/v1/preflight", b'{"service_cidr": 10}', "service_cidr: must be a string"),
    ("/v1/preflight", b'{"surprise": 1}', "surprise: unknown field"),
    ("/v1/preflight", b'{"pool_cidrs": null, "profile": null}', "profile: must be a string"),
    ("/v1/probes", b'{"run_id": "r", "targets": [], "checks": [], "timeout": 1e999}', "timeout: must be a finite number"),
]


@pytest.mark.parametrize("path, body, words", MALFORMED, ids=[f"{p}:{w}" for p, _, w in MALFORMED])
async def test_malformed_bodies_are_400_on_one_line_without_a_traceback(agent, caplog, path, body, words):
    async with agent.http() as http:
        response = await http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:200]
    error = response.json()["error"]
    assert words in error and "\n" not in error and len(error) < 400
    assert "Traceback" not in caplog.text and "Error" not in error.split(":")[0]
    assert agent.service.calls == []


async def test_a_trickled_body_is_cut_off_and_the_agent_keeps_serving(nursery, sock_dir, caplog):
    """A client that sends its body a byte at a time: 408 after the body timeout, no traceback."""
    service = FakeService()
    url = await nursery.start(serve_api, build_app(service, token=None, body_timeout=0.5),
                              f"unix:{sock_dir / 'slow.sock'}")
    stream = await trio.open_unix_socket(url[5:])
    await stream.send_all(b"POST /v1/preflight HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
    began = trio.current_time()
    answer = b""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in answer:
            try:
                await stream.send_all(b" ")
            except trio.BrokenResourceError:
                pass
            with trio.move_on_after(0.1):
                answer += await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.4 < trio.current_time() - began < 3
    await stream.aclose()
    async with AgentClient(url, token=None) as client:
        assert (await client.health()).host == "fake"
    assert "Traceback" not in caplog.text
    assert service.calls == [("health",)]


async def test_trickled_headers_are_cut_off_too(nursery, sock_dir):
    url = await nursery.start(lambda task_status: serve_api(
        build_app(FakeService(), token=None), f"unix:{sock_dir / 'hdr.sock'}", header_timeout=0.5,
        task_status=task_status))
    stream = await trio.open_unix_socket(url[5:])
    began = trio.current_time()
    with trio.fail_after(5):
        try:
            for byte in b"GET /v1/health HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 1000:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(0.05):
                    if await stream.receive_some(100) == b"":
                        break
        except trio.BrokenResourceError:
            pass
    assert 0.4 < trio.current_time() - began < 3
    await stream.aclose()


async def test_a_client_that_goes_away_mid_body_leaves_no_traceback(agent, caplog):
    stream = await trio.open_unix_socket(str(agent.path))
    await stream.send_all(b"POST /v1/probes HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
    await trio.sleep(0.1)
    await stream.aclose()
    await trio.sleep(0.2)
    assert "Traceback" not in caplog.text and "ClientDisconnect" not in caplog.text
    assert agent.service.calls == []


async def test_connections_over_the_cap_are_closed_and_the_rest_are_served(nursery, sock_dir):
    """Held connections (a trickling client each) beyond the cap cannot starve the agent forever:
    the extra ones are closed at once, and once the held ones time out the agent serves again."""
    service = FakeService()
    url = await nursery.start(lambda task_status: serve_api(
        build_app(service, token=None, body_timeout=1.0), f"unix:{sock_dir / 'cap.sock'}", max_connections=4,
        task_status=task_status))
    held = []
    for _ in range(4):
        s = await trio.open_unix_socket(url[5:])
        await s.send_all(b"POST /v1/preflight HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
        held.append(s)
    await trio.sleep(0.2)
    extra = await trio.open_unix_socket(url[5:])
    with trio.fail_after(3):
        assert await extra.receive_some(100) == b""  # closed unserved
    with trio.fail_after(5):
        while True:  # the held ones hit the body timeout (408) and free their slots
            try:
                async with AgentClient(url, token=None, timeout=1) as client:
                    assert (await client.health()).host == "fake"
                break
            except AgentError:
                await trio.sleep(0.2)
    for s in held:
        await s.aclose()


async def test_bad_run_id_in_the_path_is_400(agent):
    async with agent.http() as http:
        response = await http.get("/v1/runs/" + "x" * 65 + "/observations")
        assert response.status_code == 400
        assert response.json()["error"].startswith("run_id: ")
        response = await http.get("/v1/runs/a%20b/observations")
        assert response.status_code == 400
    assert agent.service.calls == []


async def test_oversized_body_is_413_declared_or_streamed(agent):
    big = b'{"pad": "' + b"x" * MAX_BODY + b'"}'

    async def chunks():
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536

    async with agent.http() as http:
        declared = await http.post("/v1/probes", content=big)
        streamed = await http.post("/v1/preflight", content=chunks())  # chunked: no Content-Length
        after = await http.get("/v1/health")
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "over 1048576 bytes" in declared.json()["error"]
    assert after.status_code == 200
    assert agent.service.calls == [("health",)]


async def test_a_body_at_the_limit_is_accepted(agent):
    body = b"{}" + b" " * (MAX_BODY - 2)
    async with agent.http() as http:
        response = await http.post("/v1/preflight", content=body)
    assert response.status_code == 200


async def test_unknown_route_and_wrong_method_answer_json(agent):
    async with agent.http() as http:
        missing = await http.get("/v1/nothing")
        wrong = await http.get("/v1/probes")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}
    assert agent.service.calls == []


# --- the service failing --------------------------------------------------------------------


async def test_service_exception_is_500_and_the_server_keeps_serving(agent, caplog):
    agent.service.fail = RuntimeError("tap exploded")
    async with AgentClient(agent.url, token=None) as client:
        with pytest.raises(AgentRequestError, match="HTTP 500: run_probes failed: internal error") as info:
            await client.run_probes(ProbeRequest.from_dict_untrusted(request_dict()))
        assert info.value.status == 500
        assert "RuntimeError" not in str(info.value) and "exploded" not in str(info.value)
        agent.service.fail = None
        assert (await client.health()).host == "fake"
    assert "tap exploded" in caplog.text  # logged with its traceback


@pytest.mark.parametrize("error, status", [
    (ValueError("target not on a local subnet"), 400),
    (UnknownRun("no run 'run-1'"), 404),
    (AgentError("a run is already in progress"), 409),
    (PrivilegeError("needs CAP_NET_RAW"), 409),
    (ConfigError("overlaps the pod pool", field="service_cidr"), 400),
])
async def test_service_errors_map_to_client_errors(agent, error, status):
    agent.service.fail = error
    async with agent.http() as http:
        response = await http.get("/v1/runs/run-1/observations")
    assert response.status_code == status
    assert response.json() == {"error": str(error)}


async def test_preflight_config_error_is_400_on_one_line(agent):
    """Preflight's own judgement of its params (a CIDR that overlaps) is bad input, not a crash."""
    agent.service.fail = ConfigError("10.96.0.0/12 overlaps\nthe pod pool 10.0.0.0/8", field="--service-cidr")
    async with agent.http() as http:
        response = await http.post("/v1/preflight", json={"service_cidr": "10.96.0.0/12"})
    assert response.status_code == 400
    assert response.json() == {"error": "--service-cidr: 10.96.0.0/12 overlaps the pod pool 10.0.0.0/8"}
    async with AgentClient(agent.url, token=None) as client:
        with pytest.raises(AgentRequestError) as info:
            await client.preflight(PreflightRequest(service_cidr="10.96.0.0/12"))
    assert info.value.status == 400 and "\n" not in str(info.value)
    assert str(info.value).endswith("HTTP 400: --service-cidr: 10.96.0.0/12 overlaps the pod pool 10.0.0.0/8")


async def test_preflight_request_of_the_wrong_shape_is_400(agent):
    async with agent.http() as http:
        response = await http.post("/v1/preflight", json={"pool_cidrs": "10.0.0.0/8"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("pool_cidrs: must be a list")
    assert agent.service.calls == []


@pytest.mark.parametrize("result", [["a", "list"], {"bad": math.nan}, {"bad": {1, 2}}])
async def test_service_answers_that_are_not_json_objects_are_500(agent, result):
    agent.service.result = result
    async with agent.http() as http:
        response = await http.post("/v1/preflight", json={})
        assert response.status_code == 500
        assert "preflight" in response.json()["error"]
        agent.service.result = None
        assert (await http.post("/v1/preflight", json={})).status_code == 200


# --- the unix socket ------------------------------------------------------------------------


async def test_socket_is_0600_and_removed_when_the_server_stops(sock_dir):
    path = sock_dir / "agent.sock"
    async with trio.open_nursery() as nursery:
        agent = await start_agent(nursery, sock_dir, token=None)
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        async with AgentClient(agent.url, token=None) as client:
            await client.health()  # ready means ready: no retry needed
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_stale_socket_file_is_replaced(sock_dir):
    path = sock_dir / "agent.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # bound, never listening: nobody will ever answer on it
    assert path.exists()
    async with trio.open_nursery() as nursery:
        agent = await start_agent(nursery, sock_dir, token=None)
        async with AgentClient(agent.url, token=None) as client:
            assert (await client.health()).host == "fake"
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_live_socket_is_not_stolen(agent, sock_dir, nursery):
    with pytest.raises(ConfigError, match="in use by a running server"):
        await start_agent(nursery, sock_dir, token=None)
    async with AgentClient(agent.url, token=None) as client:
        assert (await client.health()).host == "fake"


async def test_a_file_that_is_not_a_socket_is_left_alone(sock_dir, nursery):
    path = sock_dir / "agent.sock"
    path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        await start_agent(nursery, sock_dir, token=None)
    assert path.read_text() == "precious"


async def test_unix_bind_failure_is_a_config_error(sock_dir, nursery):
    with pytest.raises(ConfigError, match="cannot listen on unix:.*No such file or directory"):
        await start_agent(nursery, sock_dir, token=None, name="missing-dir/agent.sock")


# --- TCP and the listen policy --------------------------------------------------------------


async def test_tcp_on_loopback_with_a_token(nursery):
    service = FakeService()
    url = await nursery.start(serve_api, build_app(service, token=TOKEN), "tcp://127.0.0.1:0")
    assert url.startswith("tcp://127.0.0.1:")
    assert int(url.rsplit(":", 1)[1]) > 0
    async with AgentClient(url, token=TOKEN) as client:
        assert (await client.health()).version == netprobe.__version__
    async with AgentClient(url, token=None) as client:
        with pytest.raises(AgentRequestError, match="401: the agent requires a token and none was given"):
            await client.health()
    assert service.calls == [("health",)]


def test_listen_policy_refuses_tcp_without_a_token():
    with pytest.raises(ConfigError, match="needs a token") as info:
        check_listen_policy("tcp://0.0.0.0:7879", None)
    assert info.value.field == "listen"
    with pytest.raises(ConfigError, match="needs a token"):
        check_listen_policy("tcp://127.0.0.1:7879", "")
    with pytest.raises(ConfigError, match="needs a token"):
        check_listen_policy("https://[::1]:7879", None)
    assert check_listen_policy("tcp://0.0.0.0:7879", TOKEN).port == 7879
    assert check_listen_policy("unix:/run/netprobe/agent.sock", None).path == "/run/netprobe/agent.sock"


async def test_serve_api_refuses_tcp_for_an_app_without_a_token(nursery):
    with pytest.raises(ConfigError, match="needs a token"):
        await nursery.start(serve_api, build_app(FakeService(), token=None), "tcp://127.0.0.1:0")


async def test_tcp_port_in_use_is_a_config_error(nursery):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match="Address already in use"):
            await nursery.start(serve_api, build_app(FakeService(), token=TOKEN), f"tcp://127.0.0.1:{port}")


@pytest.mark.parametrize("listen, message", [
    ("127.0.0.1:7879", "expected unix:/PATH or tcp://ADDR:PORT"),
    ("tcp://127.0.0.1", "expected unix:/PATH or tcp://ADDR:PORT"),
    ("tcp://127.0.0.1:65536", "expected unix:/PATH or tcp://ADDR:PORT"),
    ("udp://127.0.0.1:7879", "expected unix:/PATH or tcp://ADDR:PORT"),
    ("tcp://localhost:7879", "IP address, not a name"),
    ("unix:relative.sock", "must be absolute"),
    ("unix:/" + "x" * 107, "longer than 107 bytes"),
])
def test_bad_listen_addresses_are_config_errors(listen, message):
    with pytest.raises(ConfigError, match=message):
        parse_listen(listen)


def test_listen_addresses_parse():
    assert parse_listen("tcp://[::1]:0").host == "::1"
    assert parse_listen("tcp://0.0.0.0:7879").kind == "tcp"
    assert parse_listen("https://192.0.2.1:443").kind == "https"


async def test_tls_listener_with_a_private_ca(nursery, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=netprobe-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    service = FakeService()
    url = await nursery.start(
        lambda task_status: serve_api(build_app(service, token=TOKEN), "tcp://127.0.0.1:0",
                                      tls_cert=str(cert), tls_key=str(key), task_status=task_status)
    )
    assert url.startswith("https://127.0.0.1:")
    async with AgentClient(url, token=TOKEN, ca_file=str(cert)) as client:
        assert (await client.health()).host == "fake"
    async with AgentClient(url, token=TOKEN) as client:  # not trusted without the CA
        with pytest.raises(AgentError, match="TLS failed|CERTIFICATE_VERIFY_FAILED"):
            await client.health()
    assert service.calls == [("health",)]


async def test_tls_needs_a_cert_and_a_key_that_load(nursery, tmp_path):
    app = build_app(FakeService(), token=TOKEN)
    with pytest.raises(ConfigError, match="both a certificate and a key"):
        await serve_api(app, "tcp://127.0.0.1:0", tls_cert=str(tmp_path / "c.pem"))
    with pytest.raises(ConfigError, match="cannot load TLS"):
        await serve_api(app, "tcp://127.0.0.1:0", tls_cert=str(tmp_path / "c.pem"), tls_key=str(tmp_path / "k"))
    with pytest.raises(ConfigError, match="needs a TLS certificate"):
        await serve_api(app, "https://127.0.0.1:0")


# --- the client's one seam ------------------------------------------------------------------


async def test_client_maps_a_missing_socket(sock_dir):
    url = f"unix:{sock_dir / 'nobody.sock'}"
    async with AgentClient(url, token=None) as client:
        with pytest.raises(AgentError, match="socket file not found") as info:
            await client.health()
    assert url in str(info.value)


async def test_client_maps_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connect is refused
        url = f"tcp://127.0.0.1:{port}"
        async with AgentClient(url, token=TOKEN) as client:
            with pytest.raises(AgentError, match="connection refused") as info:
                await client.health()
    assert url in str(info.value)


async def test_client_maps_a_hung_server_to_a_timeout(sock_dir):
    """A server that accepts but never answers: the client gives up on its own, in time."""
    path = sock_dir / "hung.sock"
    held = []
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        await listener.bind(str(path))
        listener.listen()

        async def accept_and_hang():
            while True:
                conn, _ = await listener.accept()
                held.append(conn)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept_and_hang)
                with trio.fail_after(5):
                    async with AgentClient(f"unix:{path}", token=None, timeout=0.3) as client:
                        with pytest.raises(AgentError, match="timed out") as info:
                            await client.health()
                nursery.cancel_scope.cancel()
        finally:
            for conn in held:
                conn.close()
    assert str(path) in str(info.value)
    assert held, "the client did connect"


async def test_client_maps_answers_that_are_not_json(sock_dir, nursery):
    status = [200]

    async def text(request):
        return PlainTextResponse("<html>proxy says hi</html>", status_code=status[0])

    app = Starlette(routes=[Route("/v1/health", text)])
    url = await nursery.start(serve_api, app, f"unix:{sock_dir / 'text.sock'}")
    async with AgentClient(url, token=None) as client:
        with pytest.raises(AgentError, match="answer is not a JSON object"):
            await client.health()
        status[0] = 502
        with pytest.raises(AgentRequestError, match="HTTP 502: <html>proxy says hi</html>") as info:
            await client.health()
        assert info.value.status == 502


async def test_client_refuses_a_bad_run_id_before_sending(agent):
    async with AgentClient(agent.url, token=None) as client:
        with pytest.raises(AgentError, match="run_id"):
            await client.observations("../../etc")
    assert agent.service.calls == []


async def test_client_waits_for_probing_longer_than_its_own_timeout(nursery, sock_dir):
    """run_probes may take timeout x (retries + 1): the client's budget grows with the request."""

    class SlowService(FakeService):
        async def run_probes(self, request):
            await trio.sleep(0.4)
            return await super().run_probes(request)

    service = SlowService()
    url = await nursery.start(serve_api, build_app(service, token=None), f"unix:{sock_dir / 'slow.sock'}")
    request = ProbeRequest.from_dict_untrusted(request_dict(timeout=0.3, retries=1))
    async with AgentClient(url, token=None, timeout=0.2) as client:
        assert (await client.run_probes(request)).run_id == "run-1"
        with pytest.raises(AgentError, match="timed out"):
            await client.run_probes(ProbeRequest.from_dict_untrusted(request_dict(timeout=0.05, retries=0)))
