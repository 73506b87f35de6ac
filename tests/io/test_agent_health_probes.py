"""/healthz and /readyz answer Kubernetes probes without a token (they carry none) and say
nothing but a status word; every other path still needs the token."""

from __future__ import annotations

import httpx
import pytest

from netprobe.agent.api import build_app
from netprobe.agent.server import serve_api

TOKEN = "s3cret-token-of-the-test-cluster"


class Service:
    def __init__(self):
        self.calls = []
        self.broken = False

    async def health(self):
        self.calls.append("health")
        if self.broken:
            raise RuntimeError("taps are gone")
        return {"status": "ok", "taps": 2, "secret-ish": "interfaces and counters"}

    async def run_probes(self, request):  # pragma: no cover - must never be reached here
        self.calls.append("run_probes")
        return {}

    async def observations(self, run_id):  # pragma: no cover
        self.calls.append("observations")
        return {}

    async def preflight(self, params):  # pragma: no cover
        self.calls.append("preflight")
        return {}


@pytest.fixture
async def agent(nursery, tmp_path):
    service = Service()
    path = tmp_path / "a.sock"
    await nursery.start(serve_api, build_app(service, token=TOKEN), f"unix:{path}")
    client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path)), base_url="http://agent", timeout=5)
    async with client:
        yield service, client


async def test_healthz_and_readyz_need_no_token_and_reveal_nothing(agent):
    service, http = agent
    live = await http.get("/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert (await http.head("/healthz")).status_code == 200


async def test_readyz_is_503_when_the_service_is_not_healthy(agent):
    service, http = agent
    service.broken = True
    ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})
    assert (await http.get("/healthz")).status_code == 200  # alive, just not ready


@pytest.mark.parametrize("method,path", [("GET", "/v1/health"), ("POST", "/v1/probes"), ("POST", "/v1/preflight"),
                                         ("GET", "/v1/runs/abc/observations"), ("POST", "/healthz"),
                                         ("GET", "/healthz/x"), ("GET", "/readyz/"), ("GET", "/metrics")])
async def test_everything_else_still_needs_the_token(agent, method, path):
    service, http = agent
    response = await http.request(method, path)
    assert response.status_code == 401
    assert service.calls == []
