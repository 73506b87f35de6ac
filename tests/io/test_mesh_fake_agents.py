"""`run_mesh` against fake agents over real unix sockets: a healthy fabric, a slow agent and a
dead one. The fake fabric plays both ends: what a sender's probe met decides what the
destination's responder later reports."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import pytest
import trio

from netprobe.agent.api import build_app
from netprobe.agent.server import serve_api
from netprobe.core.checks import select_checks
from netprobe.core.inventory import parse_inventory
from netprobe.core.exitcode import mesh_exit_code as exit_code
from netprobe.orchestration.mesh_run import run_mesh

TOKEN = "fake-fabric-token-0123456789"
ADDRESSES = {"n1": "192.0.2.11", "n2": "192.0.2.12", "n3": "192.0.2.13"}
ADDRESSES6 = {"n1": "2001:db8::11", "n2": "2001:db8::12", "n3": "2001:db8::13"}


class Fabric:
    """Decides each flow's fate: ``blocked[(check, src, dst)] = 'ingress' | 'network'`` (IPv4),
    ``blocked[(check, src, dst, 6)]`` over IPv6."""

    def __init__(self, blocked=None):
        self.blocked = blocked or {}
        self.ids = itertools.count(1000)
        self.arrivals: dict[str, list[dict]] = {name: [] for name in ADDRESSES}


class FakeAgent:
    def __init__(self, name: str, fabric: Fabric, delay: float = 0.0):
        self.name, self.fabric, self.delay = name, fabric, delay

    async def health(self):
        return {"host": self.name, "version": "fake"}

    async def run_probes(self, request):
        await trio.sleep(self.delay)
        outcomes = []
        for target in request.targets:
            for check_id, address, family in target.targets():
                pid = next(self.fabric.ids)
                fate = self.fabric.blocked.get((check_id, self.name, target.name) + ((6,) if family == 6 else ()))
                source = (ADDRESSES6 if family == 6 else ADDRESSES)[self.name]
                if fate != "network":
                    self.fabric.arrivals[target.name].append({
                        "src": source, "probe_id": pid, "proto": "tcp",
                        "arrived": True, "accepted": fate is None, "answered": fate is None, "t": 0.0})
                reply = "syn-ack" if fate is None else None
                outcomes.append({
                    "probe_id": pid, "check": check_id, "name": target.name, "address": address,
                    "source": source, "rtt_ms": 0.2 if reply else None,
                    "evidence": {"sent": True, "arrived": None, "accepted": None, "answered": None, "reply": reply,
                                 "icmp": None, "reply_arrived": bool(reply), "reply_accepted": bool(reply),
                                 "attempts": 1 if reply else 2, "send_error": None},
                })
        return {"run_id": request.run_id, "host": self.name, "outcomes": outcomes, "stats": {"kernel_drops": 0}}

    async def observations(self, run_id):
        return {"run_id": run_id, "host": self.name, "observations": self.fabric.arrivals[self.name],
                "stats": {"kernel_drops": 0}}

    async def preflight(self, params):
        return {}


@pytest.fixture
def sock_dir():
    d = tempfile.mkdtemp(prefix="np-mesh-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def inventory(sock_dir: Path, dual: tuple[str, ...] = ()):
    """The three hosts; those in ``dual`` have an IPv6 address too."""
    lines = ["hosts:"]
    for name, addr in ADDRESSES.items():
        roles = "[node, apiserver, etcd]" if name == "n1" else "[node]"
        six = f", address6: '{ADDRESSES6[name]}'" if name in dual else ""
        lines.append(f"  - {{name: {name}, address: {addr}{six}, roles: {roles}, "
                     f"agent: 'unix:{sock_dir / name}.sock'}}")
    return parse_inventory("\n".join(lines) + "\n")


async def start(nursery, sock_dir, fabric, *, dead=(), slow=None, delay=0.0):
    for name in ADDRESSES:
        if name in dead:
            continue
        agent = FakeAgent(name, fabric, delay if name == slow else 0.0)
        await nursery.start(serve_api, build_app(agent, token=TOKEN), f"unix:{sock_dir / name}.sock")


async def test_healthy_fabric_classifies_both_ends(nursery, sock_dir):
    fabric = Fabric({("bgp", "n2", "n3"): "ingress", ("bgp", "n3", "n1"): "network"})
    await start(nursery, sock_dir, fabric)
    checks = select_checks(names=["bgp", "etcd"])
    result = await run_mesh(inventory(sock_dir), checks, token=TOKEN, timeout=0.1, retries=0)
    cells = {c.key[:3]: c for c in result.cells}
    assert len(cells) == 6 + 2  # bgp both ways among 3 nodes; etcd from n2, n3 to n1
    assert (cells[("bgp", "n2", "n3")].reach, str(cells[("bgp", "n2", "n3")].where)) == ("blocked", "destination-ingress")
    assert (cells[("bgp", "n3", "n1")].reach, str(cells[("bgp", "n3", "n1")].where)) == ("blocked", "network")
    assert cells[("etcd", "n2", "n1")].reach == "allowed"
    assert result.errors == []
    assert exit_code(result) == 1


async def test_dual_stack_hosts_get_a_cell_per_family(nursery, sock_dir):
    """n1 and n2 are dual stack, n3 IPv4 only: bgp between n1 and n2 is probed over both families,
    each with its own fate; the result keeps them apart (a matrix per check and family)."""
    fabric = Fabric({("bgp", "n2", "n1", 6): "ingress", ("bgp", "n1", "n2"): "network"})
    await start(nursery, sock_dir, fabric)
    result = await run_mesh(inventory(sock_dir, dual=("n1", "n2")), select_checks(names=["bgp", "ipip"]),
                            token=TOKEN, timeout=0.1, retries=0)
    cells = {c.key: c for c in result.cells}
    assert {k for k in cells if k[3] == 6} == {("bgp", "n1", "n2", 6), ("bgp", "n2", "n1", 6)}  # no ipip over IPv6
    assert (cells[("bgp", "n2", "n1", 6)].reach, str(cells[("bgp", "n2", "n1", 6)].where)) == \
        ("blocked", "destination-ingress")
    assert cells[("bgp", "n2", "n1", 4)].reach == "allowed" and cells[("bgp", "n1", "n2", 6)].reach == "allowed"
    assert str(cells[("bgp", "n1", "n2", 4)].where) == "network"
    assert len(cells) == 6 * 2 + 2 and result.errors == []
    doc = result.to_dict()
    assert [(m["check"], m.get("family", 4)) for m in doc["matrices"]] == [("bgp", 4), ("bgp", 6), ("ipip", 4)]
    assert doc["hosts"][0] == {"name": "n1", "address": "192.0.2.11", "roles": ["apiserver", "etcd", "node"],
                               "address6": "2001:db8::11"}


async def test_dead_agent_gives_a_partial_result_and_exit_3(nursery, sock_dir):
    fabric = Fabric()
    await start(nursery, sock_dir, fabric, dead=("n3",))
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    cells = {c.key[:3]: c for c in result.cells}
    assert [e["host"] for e in result.errors] == ["n3"]
    assert cells[("bgp", "n3", "n1")].reach == "unknown" and cells[("bgp", "n3", "n1")].verdict == "error"
    # n3 can't report what arrived: n1 -> n3 falls back to the sender's evidence alone
    assert cells[("bgp", "n1", "n3")].evidence.arrived is None
    assert cells[("bgp", "n1", "n2")].reach == "allowed"
    assert exit_code(result) == 3


async def test_slow_agent_times_out_without_holding_up_the_rest(nursery, sock_dir):
    fabric = Fabric()
    await start(nursery, sock_dir, fabric, slow="n2", delay=30)
    with trio.fail_after(10):
        result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1,
                                retries=0, agent_timeout=0.5)
    assert [e["host"] for e in result.errors] == ["n2"]
    assert "timed out" in result.errors[0]["message"] or "timeout" in result.errors[0]["message"].lower()
    cells = {c.key[:3]: c for c in result.cells}
    assert cells[("bgp", "n1", "n3")].reach == "allowed"
    assert cells[("bgp", "n2", "n1")].reach == "unknown"


async def test_wrong_token_is_an_agent_error_for_every_host(nursery, sock_dir):
    await start(nursery, sock_dir, Fabric())
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token="wrong-token-0123456789", timeout=0.1, retries=0)
    assert sorted(e["host"] for e in result.errors) == ["n1", "n2", "n3"]
    assert all("401" in e["message"] for e in result.errors)
    assert all(c.reach == "unknown" for c in result.cells)


async def test_kernel_drops_reported_by_an_agent_make_the_run_partial(nursery, sock_dir):
    class DroppingAgent(FakeAgent):
        async def observations(self, run_id):
            reply = await super().observations(run_id)
            return {**reply, "stats": {"kernel_drops": 7}}

    fabric = Fabric()
    for name in ADDRESSES:
        agent = (DroppingAgent if name == "n2" else FakeAgent)(name, fabric)
        await nursery.start(serve_api, build_app(agent, token=TOKEN), f"unix:{sock_dir / name}.sock")
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    assert [(e["host"], e["stage"]) for e in result.errors] == [("n2", "observe")]
    assert "dropped 7" in result.errors[0]["message"]
    assert exit_code(result) == 3


async def test_https_agents_are_verified_with_the_inventory_ca_file(nursery, tmp_path):
    """Agents on https://127.0.0.1 with a self-signed certificate: the inventory's ca_file makes
    the mesh trust them; without it every agent fails verification (exit 3, never plaintext)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=np",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    fabric = Fabric()
    urls = {}
    for name in ADDRESSES:
        urls[name] = await nursery.start(lambda task_status, n=name: serve_api(
            build_app(FakeAgent(n, fabric), token=TOKEN), "https://127.0.0.1:0", tls_cert=str(cert),
            tls_key=str(key), task_status=task_status))
    hosts = "\n".join(f"  - {{name: {n}, address: {a}, agent: '{urls[n]}'}}" for n, a in ADDRESSES.items())
    trusted = parse_inventory(f"ca_file: {cert}\nhosts:\n{hosts}\n")
    result = await run_mesh(trusted, select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    assert result.errors == [] and all(c.reach == "allowed" for c in result.cells)
    untrusted = parse_inventory(f"hosts:\n{hosts}\n")
    result = await run_mesh(untrusted, select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    assert len(result.errors) == 3 and exit_code(result) == 3
    assert all("certificate" in e["message"].lower() or "ssl" in e["message"].lower() for e in result.errors)


# --- an agent answering 200 with the wrong shape ------------------------------------------------

RAW = "__RAW__"  # a placeholder for JSON text json.dumps would never write (NaN aside)


def _first_outcome(reply: dict, key: str, value) -> dict:
    reply["outcomes"][0][key] = value
    return reply


def _drop_first_outcome_key(reply: dict, key: str) -> dict:
    del reply["outcomes"][0][key]
    return reply


# (shape, stage, mangle(reply dict) -> dict, raw JSON text for RAW, what the error must say)
WRONG_SHAPES = [
    ("missing key", "probe", lambda r: _drop_first_outcome_key(r, "check"), None, "outcomes[0].check: is missing"),
    ("wrong type", "probe", lambda r: _first_outcome(r, "probe_id", "1000"), None, "outcomes[0].probe_id"),
    ("not a list", "probe", lambda r: {**r, "outcomes": {"0": 1}}, None, "reply.outcomes: must be a list"),
    ("NaN", "probe", lambda r: _first_outcome(r, "rtt_ms", RAW), "NaN", "outcomes[0].rtt_ms"),
    ("infinite", "probe", lambda r: _first_outcome(r, "rtt_ms", RAW), "1e999", "outcomes[0].rtt_ms"),
    ("huge integer", "probe", lambda r: _first_outcome(r, "probe_id", RAW), "1" + "0" * 400, "outcomes[0].probe_id"),
    ("no stats", "probe", lambda r: {k: v for k, v in r.items() if k != "stats"}, None, "reply.stats: is missing"),
    ("other run", "probe", lambda r: {**r, "run_id": "someone-else"}, None, "run_id"),
    ("not an object", "probe", lambda r: [r], None, "answer is not a JSON object"),
    ("absurd nesting", "probe", lambda r: RAW, "[" * 100_000 + "]" * 100_000, "answer is not a JSON object"),
    ("bad observation", "observe", lambda r: {**r, "observations": [{**r["observations"][0], "src": "n1"}]}, None,
     "observations[0].src"),
    ("drops not a count", "observe", lambda r: {**r, "stats": {"kernel_drops": "many"}}, None,
     "stats.kernel_drops"),
]


def wrong_shape_app(agent: FakeAgent, stage: str, mangle, raw: str | None):
    """An agent (of another version, or broken) that answers 200 with ``mangle``d JSON in ``stage``."""
    import json

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from netprobe.agent.protocol import ProbeRequest

    def send(reply: dict, mine: bool) -> Response:
        text = json.dumps(mangle(reply) if mine else reply)
        if mine and raw is not None:
            text = text.replace(f'"{RAW}"', raw)
        return Response(text, media_type="application/json")

    async def probes(request):
        return send(await agent.run_probes(ProbeRequest.from_dict_untrusted(await request.json())), stage == "probe")

    async def observations(request):
        return send(await agent.observations(request.path_params["run_id"]), stage == "observe")

    from netprobe.agent.api import MAX_BODY, Gate
    from netprobe.core.auth import Verifier

    app = Starlette(routes=[Route("/v1/probes", probes, methods=["POST"]),
                            Route("/v1/runs/{run_id}/observations", observations)])
    # it holds the cluster key: checks signatures and signs its (wrong) replies like any agent
    app.add_middleware(Gate, verifier=Verifier(TOKEN), max_body=MAX_BODY, body_timeout=10)
    return app


async def start_with_a_wrong_shape(nursery, sock_dir, stage, mangle, raw) -> None:
    fabric = Fabric()
    for name in ADDRESSES:
        agent = FakeAgent(name, fabric)
        app = wrong_shape_app(agent, stage, mangle, raw) if name == "n2" else build_app(agent, token=TOKEN)
        await nursery.start(serve_api, app, f"unix:{sock_dir / name}.sock")


@pytest.mark.parametrize("stage, mangle, raw, says", [w[1:] for w in WRONG_SHAPES],
                         ids=[w[0] for w in WRONG_SHAPES])
async def test_an_agent_answering_the_wrong_shape_costs_only_its_cells(nursery, sock_dir, stage, mangle, raw, says):
    await start_with_a_wrong_shape(nursery, sock_dir, stage, mangle, raw)
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    [error] = result.errors
    assert (error["host"], error["stage"]) == ("n2", stage)
    assert f"unix:{sock_dir / 'n2'}.sock" in error["message"] and says in error["message"]
    assert "\n" not in error["message"] and len(error["message"]) < 600
    cells = {c.key[:3]: c for c in result.cells}
    if stage == "probe":
        assert all(cells[("bgp", "n2", dst)].reach == "unknown" for dst in ("n1", "n3"))
    assert cells[("bgp", "n1", "n3")].reach == "allowed"
    assert exit_code(result) == 3


def test_netprobe_mesh_exits_3_with_one_error_line_for_a_wrong_shape(sock_dir, tmp_path):
    """End to end: the real CLI, in its own process, against agents served from a thread."""
    import json
    import os
    import subprocess
    import sys
    import threading

    ready, stop = threading.Event(), []

    async def serve():
        async with trio.open_nursery() as nursery:
            await start_with_a_wrong_shape(nursery, sock_dir, "probe", WRONG_SHAPES[1][2], None)
            stop.append((trio.lowlevel.current_trio_token(), nursery.cancel_scope))
            ready.set()

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        inv = tmp_path / "inventory.yaml"
        lines = ["hosts:"] + [f"  - {{name: {n}, address: {a}, roles: [node], agent: 'unix:{sock_dir / n}.sock'}}"
                              for n, a in ADDRESSES.items()]
        inv.write_text("\n".join(lines) + "\n")
        proc = subprocess.run([sys.executable, "-m", "netprobe", "mesh", "-i", str(inv), "--checks", "bgp",
                               "--timeout", "0.1", "--retries", "0", "--format", "json"],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "NETPROBE_TOKEN": TOKEN})
    finally:
        if stop:
            token, scope = stop[0]
            trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(10)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    [error] = result["errors"]
    assert error["host"] == "n2" and "outcomes[0].probe_id" in error["message"]
    from netprobe.core.result import Result

    cells = Result.from_dict(result).cells
    assert {str(c.reach) for c in cells if c.src == "n2"} == {"unknown"}
    assert all("not probed" in c.evidence.send_error for c in cells if c.src == "n2")
    assert "outcomes[0].probe_id" in result["not_probed"]["n2"]


# --- the explain round ------------------------------------------------------------------------

EXPLAIN_RULE = {"family": "inet", "table": "filter", "chain": "input", "handle": 7, "text": "tcp dport 179 drop",
                "comment": None, "verdict": "drop"}


class ExplainingAgent(FakeAgent):
    """Answers the explain round the way a responder does; every call goes to ``fabric.explained``."""

    async def explain_arm(self, request):
        self.fabric.explained.append(("arm", self.name, [f.dport for f in request.flows]))
        return {"run_id": request.run_id, "host": self.name, "armed": len(request.flows)}

    async def explain_resend(self, request):
        self.fabric.explained.append(("resend", self.name, [(p.name, p.trace, p.hops) for p in request.probes]))
        hop = {"address": "192.0.2.1", "ttl": 1, "name": None}
        return {"run_id": request.run_id, "host": self.name,
                "probes": [{"probe_id": p.probe_id, "source": ADDRESSES[self.name], "sent": 1,
                            "hop": hop if p.hops else None} for p in request.probes]}

    async def explain_collect(self, request):
        self.fabric.explained.append(("collect", self.name, [n for _, n in request.expected]))
        return {"run_id": request.run_id, "host": self.name,
                "rules": [{"flow": {"proto": f.proto, "src": f.src, "dst": f.dst, "sport": f.sport, "dport": f.dport},
                           "rule": EXPLAIN_RULE} for f, _ in request.expected]}


async def start_explaining(nursery, sock_dir, fabric, agent=ExplainingAgent):
    fabric.explained = []
    for name in ADDRESSES:
        await nursery.start(serve_api, build_app(agent(name, fabric), token=TOKEN), f"unix:{sock_dir / name}.sock")


async def test_blocked_cells_are_explained_in_three_stages_to_the_agents_concerned(nursery, sock_dir):
    fabric = Fabric({("bgp", "n2", "n3"): "ingress", ("bgp", "n3", "n1"): "network"})
    await start_explaining(nursery, sock_dir, fabric)
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0,
                            hop_names={"192.0.2.1": "core"})
    stages = [stage for stage, _host, _what in fabric.explained]
    assert stages == ["arm", "resend", "resend", "collect"]  # each stage after the previous, everywhere
    assert ("arm", "n3", [179]) in fabric.explained and ("collect", "n3", [1]) in fabric.explained
    assert sorted(e for e in fabric.explained if e[0] == "resend") == [
        ("resend", "n2", [("n3", False, False)]), ("resend", "n3", [("n1", False, True)])]
    cells = {c.key[:3]: c for c in result.cells}
    ingress = cells[("bgp", "n2", "n3")].explain
    assert (ingress.rule.table, ingress.rule.handle) == ("filter", 7)
    assert ingress.fix.iptables.startswith("iptables -I INPUT -s 192.0.2.12 -d 192.0.2.13 -p tcp")
    assert ingress.fix.nft.startswith("nft insert rule inet filter input position 7 ip saddr 192.0.2.12")
    hop = cells[("bgp", "n3", "n1")].explain.hop
    assert (hop.address, hop.ttl, hop.name) == ("192.0.2.1", 1, "core")
    assert cells[("bgp", "n1", "n2")].explain is None
    assert result.errors == [] and exit_code(result) == 1


async def test_a_run_with_nothing_blocked_or_no_explain_asks_nobody(nursery, sock_dir):
    fabric = Fabric()
    await start_explaining(nursery, sock_dir, fabric)
    await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    fabric.blocked[("bgp", "n1", "n2")] = "ingress"
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0,
                            explain=False)
    assert fabric.explained == [] and all(c.explain is None for c in result.cells)


async def test_agents_without_the_round_cost_only_the_explanations(nursery, sock_dir):
    fabric = Fabric({("bgp", "n2", "n3"): "ingress"})
    await start_explaining(nursery, sock_dir, fabric, agent=FakeAgent)  # an older netprobe everywhere
    result = await run_mesh(inventory(sock_dir), select_checks(names=["bgp"]), token=TOKEN, timeout=0.1, retries=0)
    explain = result.cell("bgp", "n2", "n3").explain
    assert explain.rule is None and "HTTP 404: this agent has no explain round" in explain.note
    assert explain.fix is not None  # the flow and where it died are known: the fix needs no rule
    assert result.errors == [] and exit_code(result) == 1
