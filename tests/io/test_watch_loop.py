"""netprobe watch without privileges: the timeline's words, the metrics' series (and their
disappearance), the page, the webhook, inventory re-read each run (file and recorded cluster),
the HTTP endpoints, and the command's one-line errors and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fake_kube_api import FakeKubeAPI
from netprobe.core.result import Cell, Evidence, HostInfo, Reach, Result, Verdict, Where
from netprobe.monitor.metrics import WatchMetrics
from netprobe.monitor.state import WatchState, changes_between
from netprobe.orchestration.watch import WatchConfig, cluster_source, file_source, one_run, run_watch
from netprobe.report.html import render_heatmaps, render_html

T0 = datetime(2026, 12, 1, 12, 3, 7, tzinfo=timezone.utc)
NETPROBE = [sys.executable, "-m", "netprobe"]


def result(hosts=("cp1", "node1", "node2"), blocked=None, unknown=(), errors=()) -> Result:
    """A bgp-only result; ``blocked`` maps (src, dst) -> Where."""
    blocked = blocked or {}
    cells = []
    for s in hosts:
        for d in hosts:
            if s == d:
                continue
            if (s, d) in blocked:
                cells.append(Cell("bgp", s, d, Reach.BLOCKED, blocked[(s, d)], Verdict.FILTERED))
            elif (s, d) in unknown:
                cells.append(Cell("bgp", s, d, Reach.UNKNOWN, None, Verdict.ERROR,
                                  evidence=Evidence(sent=False, attempts=0, send_error="not probed: agent down")))
            else:
                cells.append(Cell("bgp", s, d, Reach.ALLOWED, None, Verdict.OPEN, rtt_ms=0.4))
    return Result(cells, [HostInfo(h, f"192.0.2.{10 + i}", ("node",)) for i, h in enumerate(hosts)],
                  [{"id": "bgp", "description": "Calico networking (BGP)", "proto": "tcp", "port": 179}],
                  profile="calico", started=T0.isoformat(), finished=T0.isoformat(), errors=list(errors))


D = Where.DESTINATION_INGRESS


# --- the timeline --------------------------------------------------------------------------


def test_first_run_names_only_what_is_not_allowed():
    events = changes_between(None, result(blocked={("node1", "node2"): D}), T0)
    assert [e.line() for e in events] == ["12:03:07 bgp node1 -> node2 is blocked at destination-ingress"]


def test_changes_read_as_sentences():
    before = result(blocked={("node1", "node2"): D, ("cp1", "node2"): Where.NETWORK})
    after = result(blocked={("cp1", "node2"): Where.RETURN_PATH, ("node2", "cp1"): D})
    assert [e.text for e in changes_between(before, after, T0)] == [
        "bgp cp1 -> node2 now blocked at return-path",
        "bgp node1 -> node2 became allowed",
        "bgp node2 -> cp1 became blocked at destination-ingress",
    ]


def test_a_host_joining_is_one_line_plus_its_problems():
    before = result()
    after = result(hosts=("cp1", "node1", "node2", "node3"), blocked={("node3", "cp1"): D})
    assert [e.text for e in changes_between(before, after, T0)] == [
        "node3 joined", "bgp node3 -> cp1 is blocked at destination-ingress"]
    assert [e.text for e in changes_between(after, before, T0)] == ["node3 left"]


def test_unknown_says_why():
    after = result(unknown={("node1", "cp1")})
    [event] = changes_between(result(), after, T0)
    assert event.text == "bgp node1 -> cp1 became unknown (not probed: agent down)"
    assert event.kind == "unknown" and event.old == {"reach": "allowed", "where": None}


# --- metrics -------------------------------------------------------------------------------


def samples(metrics: WatchMetrics) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_series_follow_the_last_run():
    state = WatchState(interval=30)
    metrics = WatchMetrics(state)
    assert samples(metrics)["netprobe_runs_total"] == [({"outcome": o}, 0.0) for o in ("complete", "partial", "failed")]
    first = result(blocked={("node1", "node2"): D}, unknown={("node2", "cp1")},
                   errors=[{"host": "node2", "stage": "probe", "message": "connection refused"}])
    state.record(first, when=T0, duration=0.5)
    metrics.observe_run(first)
    got = samples(metrics)
    assert got["netprobe_flow_blocked"] == [
        ({"check": "bgp", "family": "4", "src": "node1", "dst": "node2", "where": "destination-ingress"}, 1.0),
        ({"check": "bgp", "family": "4", "src": "node2", "dst": "cp1", "where": "unknown"}, 1.0)]
    assert dict((l["reach"], v) for l, v in got["netprobe_cells"]) == {"allowed": 4, "blocked": 1, "unknown": 1}
    assert dict((l["host"], v) for l, v in got["netprobe_agent_up"]) == {"cp1": 1, "node1": 1, "node2": 0}
    assert ({"outcome": "partial"}, 1.0) in got["netprobe_runs_total"]
    assert got["netprobe_last_run_timestamp_seconds"] == [({}, T0.timestamp())]
    assert got["netprobe_run_duration_seconds"] == [({}, 0.5)]
    assert {l["check"] for l, _ in got["netprobe_flow_rtt_seconds_bucket"]} == {"bgp"}  # per check, not per pair
    assert ({"check": "bgp"}, 4.0) in got["netprobe_flow_rtt_seconds_count"]
    assert not any(name.endswith("_created") for name in got)
    # the fix: the flow's series is gone at the next scrape, not left at 0
    state.record(result(), when=T0, duration=0.4)
    metrics.observe_run(result())
    got = samples(metrics)
    assert "netprobe_flow_blocked" not in got
    assert dict((l["reach"], v) for l, v in got["netprobe_cells"]) == {"allowed": 6, "blocked": 0, "unknown": 0}


# --- the page ------------------------------------------------------------------------------


def test_heatmap_cells_carry_their_flow_and_escape_names():
    r = result(hosts=("cp1", "n<b>"), blocked={("cp1", "n<b>"): D})
    html = render_heatmaps(r)
    assert '<td class="blocked" data-check="bgp" data-src="cp1" data-dst="n&lt;b&gt;" data-reach="blocked" ' \
           'data-where="destination-ingress"' in html
    assert "&#10007;D</td>" in html and "<b>" not in html
    doc = render_html(r, title="t")
    assert doc.startswith("<!DOCTYPE html>") and doc.rstrip().endswith("</html>")


# --- the loop ------------------------------------------------------------------------------


class FakeMesh:
    """run_mesh's signature; every flow into a host named in ``blocked_to`` is blocked."""

    def __init__(self):
        self.inventories = []
        self.blocked_to: set[str] = set()

    async def __call__(self, inventory, checks, *, token, timeout, retries, profile):
        self.inventories.append(inventory)
        hosts = tuple(h.name for h in inventory.hosts)
        return result(hosts, blocked={(s, d): D for s in hosts for d in hosts if d in self.blocked_to and s != d})


def write_inventory(path: Path, hosts: int) -> None:
    lines = [f"  - {{name: node{i}, address: 192.0.2.{10 + i}, agent: 'unix:/nonexistent/{i}.sock'}}"
             for i in range(1, hosts + 1)]
    path.write_text("hosts:\n" + "\n".join(lines) + "\n")


async def test_file_is_reread_every_run_and_a_bad_read_is_a_failed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "t-0123456789abcdef")
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    mesh = FakeMesh()
    cfg = WatchConfig(source=file_source(str(inv)), source_name=str(inv), interval=1, run_mesh=mesh)
    state = WatchState(interval=1)
    metrics = WatchMetrics(state)
    await one_run(cfg, state, metrics)
    write_inventory(inv, 3)
    mesh.blocked_to = {"node3"}
    await one_run(cfg, state, metrics)
    assert [len(i.hosts) for i in mesh.inventories] == [2, 3]
    assert [e.text for e in state.timeline] == ["node3 joined", "bgp node1 -> node3 is blocked at destination-ingress",
                                                "bgp node2 -> node3 is blocked at destination-ingress"]
    inv.write_text("hosts: [")
    await one_run(cfg, state, metrics)
    assert state.outcomes == {"complete": 2, "partial": 0, "failed": 1}
    assert "not valid YAML" in state.last_error
    assert state.last is not None and len(state.last.hosts) == 3  # the last good result stays shown
    assert cfg.version[0] == 3


async def test_cluster_is_reread_every_run(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "t-0123456789abcdef")
    data = tmp_path / "kube"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "kube", data)
    with FakeKubeAPI(data) as api:
        settings = {"kubeconfig": str(api.kubeconfig(tmp_path / "kc")), "context": None, "in_cluster": False,
                    "calico_namespaces": ("calico-system", "kube-system"), "agent_port": None,
                    "agent_namespace": "netprobe"}
        mesh = FakeMesh()
        cfg = WatchConfig(source=cluster_source(settings, None), source_name="cluster", interval=1, run_mesh=mesh)
        state = WatchState(interval=1)
        metrics = WatchMetrics(state)
        await one_run(cfg, state, metrics)
        nodes = json.loads((data / "nodes.json").read_text())
        new = json.loads(json.dumps(nodes["items"][1]))
        new["metadata"]["name"] = "node3"
        new["status"]["addresses"] = [{"type": "InternalIP", "address": "192.0.2.13"}]
        nodes["items"].append(new)
        (data / "nodes.json").write_text(json.dumps(nodes))
        await one_run(cfg, state, metrics)
        api.refuse["/api/v1/nodes"] = 403
        await one_run(cfg, state, metrics)
    first, second = mesh.inventories
    assert [h.name for h in first.hosts] == ["cp1", "node1", "node2", "v6only"]
    assert first.host("node1").roles == frozenset({"node", "typha"})
    assert first.apiserver_port == 16443 and first.host("cp1").agent == "tcp://192.0.2.10:17879"
    assert first.host("v6only").agent == "tcp://[2001:db8::50]:17879"
    assert [h.name for h in second.hosts] == ["cp1", "node1", "node2", "node3", "v6only"]
    assert "node3 joined" in [e.text for e in state.timeline]
    assert state.outcomes["failed"] == 1 and "refused to list nodes: 403" in state.last_error


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it was sent."""

    def __init__(self):
        self.bodies = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


async def test_webhook_gets_each_run_with_changes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "t-0123456789abcdef")
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    mesh = FakeMesh()
    mesh.blocked_to = {"node2"}
    with Receiver() as hook:
        cfg = WatchConfig(source=file_source(str(inv)), source_name="inv", interval=1, run_mesh=mesh, webhook=hook.url)
        state = WatchState(interval=1)
        metrics = WatchMetrics(state)
        await one_run(cfg, state, metrics)   # first run: node1 -> node2 blocked
        await one_run(cfg, state, metrics)   # nothing changed: no POST
        mesh.blocked_to = set()
        await one_run(cfg, state, metrics)   # fixed
    assert [b["run"] for b in hook.bodies] == [1, 3]
    assert hook.bodies[0]["schema"] == "netprobe.watch.changes/v1"
    assert hook.bodies[0]["changes"][0]["text"] == "bgp node1 -> node2 is blocked at destination-ingress"
    assert hook.bodies[1]["changes"][0]["new"] == {"reach": "allowed", "where": None}
    assert hook.bodies[1]["text"].endswith("bgp node1 -> node2 became allowed")
    # a dead webhook costs a log line, never the watch
    cfg.webhook = "http://127.0.0.1:9/nothing"
    mesh.blocked_to = {"node1"}
    await one_run(cfg, state, metrics)
    assert state.outcomes["complete"] == 4


async def test_http_endpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "t-0123456789abcdef")
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    mesh = FakeMesh()
    mesh.blocked_to = {"node2"}
    cfg = WatchConfig(source=file_source(str(inv)), source_name="inv", interval=0.5, run_mesh=mesh, max_runs=2)
    async with trio.open_nursery() as nursery:
        binds, state = await nursery.start(run_watch, cfg, "127.0.0.1", 0)
        with trio.fail_after(10):
            while state.runs < 2:
                await trio.sleep(0.05)
        async with httpx.AsyncClient(base_url=binds[0], timeout=5) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "netprobe watch" in page.text
            assert 'data-src="node1" data-dst="node2" data-reach="blocked"' in page.text
            assert "bgp node1 -&gt; node2 is blocked at destination-ingress" in page.text
            live = (await http.get("/live")).json()
            assert live["version"] == 2 and "run 2" in live["status"]
            metrics_text = (await http.get("/metrics")).text
            assert 'netprobe_flow_blocked{check="bgp",dst="node2",family="4",src="node1",where="destination-ingress"} 1.0' \
                in metrics_text
            assert Result.from_json((await http.get("/result.json")).text).cell("bgp", "node1", "node2").reach \
                is Reach.BLOCKED
            assert (await http.get("/healthz")).json() == {"status": "ok"}
        nursery.cancel_scope.cancel()


# --- the command ---------------------------------------------------------------------------


def run_cli(*args, timeout=60, env=None):
    return subprocess.run([*NETPROBE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_watch_runs_once_against_dead_agents_exit_3(tmp_path):
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    proc = run_cli("watch", "-i", str(inv), "--runs", "1", "--listen", "tcp://127.0.0.1:0", "--checks", "bgp",
                   env={"NETPROBE_TOKEN": "t-0123456789abcdef", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr
    assert "run 1: 2 hosts, 2 cells: 0 allowed, 0 blocked, 2 unknown, " in proc.stderr
    assert "serving on http://127.0.0.1:" in proc.stderr


@pytest.mark.parametrize("args,says", [
    (["-i", "x.yaml", "--kubeconfig", "kc"], "not both"),
    (["-i", "{inv}", "--listen", "unix:/tmp/x.sock"], "tcp://ADDR:PORT"),
    (["-i", "{inv}", "--webhook", "ftp://x"], "--webhook"),
    (["-i", "{inv}", "--checks", "bgp,nope"], "nope"),
    (["-i", "{tmp}/absent.yaml"], "absent.yaml"),
    (["--kubeconfig", "{tmp}/absent-kc"], "absent-kc"),
])
def test_watch_bad_input_is_one_line_exit_2(tmp_path, args, says):
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    args = [a.format(inv=inv, tmp=tmp_path) for a in args]
    proc = run_cli("watch", *args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr, proc.stderr


PROBE = """
import sys
from netprobe.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in ("kubernetes", "prometheus_client", "trio", "scapy", "selenium") if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["inventory", "--help"], ["watch", "--help"]])
def test_help_stays_light(argv):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY=", proc.stdout[-300:]


def test_new_modules_import_only_downward():
    import ast

    root = Path(__file__).resolve().parents[2] / "netprobe"
    above = {"kube": ("netprobe.orchestration", "netprobe.commands", "netprobe.cli", "netprobe.monitor"),
             "monitor": ("netprobe.orchestration", "netprobe.commands", "netprobe.cli", "netprobe.kube"),
             "report/html.py": ("netprobe.orchestration", "netprobe.commands", "netprobe.cli", "netprobe.monitor"),
             "orchestration/watch.py": ("netprobe.commands", "netprobe.cli")}
    for part, banned in above.items():
        for path in ([root / part] if part.endswith(".py") else sorted((root / part).glob("*.py"))):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not [n for n in names if n.startswith(banned)], f"{path}: imports {names}"


def test_watch_without_a_source_says_what_to_give(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "HOME"))}
    env["HOME"] = str(tmp_path)
    proc = run_cli("watch", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "netprobe: --inventory: give --inventory FILE, or --kubeconfig FILE / --in-cluster " \
                                  "to read the cluster"


def test_a_repeated_failure_is_one_timeline_line():
    state = WatchState(interval=1)
    for _ in range(3):
        state.record_failure("cannot reach the Kubernetes API", when=T0, duration=0.1)
    state.record_failure("the Kubernetes API refused to list nodes: 403", when=T0, duration=0.1)
    assert [e.text for e in state.timeline] == ["run failed: cannot reach the Kubernetes API",
                                                "run failed: the Kubernetes API refused to list nodes: 403"]
    assert state.outcomes["failed"] == 4


async def test_an_unexpected_error_is_a_failed_run_not_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "t-0123456789abcdef")
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    cfg = WatchConfig(source=file_source(str(inv)), source_name="inv", interval=1, run_mesh=broken)
    state = WatchState(interval=1)
    await one_run(cfg, state, WatchMetrics(state))
    assert state.last_error == "RuntimeError: boom" and state.outcomes["failed"] == 1


def test_a_port_in_use_is_one_line_exit_2(tmp_path):
    import socket

    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run_cli("watch", "-i", str(inv), "--listen", f"tcp://127.0.0.1:{port}",
                       env={"NETPROBE_TOKEN": "t-0123456789abcdef", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"netprobe: --listen: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_checks_may_name_the_inventorys_custom_checks(tmp_path):
    inv = tmp_path / "inventory.yaml"
    write_inventory(inv, 2)
    inv.write_text(inv.read_text() + "checks:\n  - {id: node-exporter, proto: tcp, port: 9100}\n")
    proc = run_cli("watch", "-i", str(inv), "--checks", "node-exporter", "--runs", "1", "--listen",
                   "tcp://127.0.0.1:0", env={"NETPROBE_TOKEN": "t-0123456789abcdef", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3, proc.stderr  # ran (the agents are absent), not refused as bad input
    assert "run 1: 2 hosts, 2 cells" in proc.stderr
