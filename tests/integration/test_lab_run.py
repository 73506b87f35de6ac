"""`netprobe lab run` of every scenario, a deliberately wrong expectation, and preflight over a
lab's agents: the whole product against real kernels and real rules."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from helpers import cells_of

from netprobe.lab.spec import available_scenarios

pytestmark = pytest.mark.netns
NETPROBE = [sys.executable, "-m", "netprobe"]


TAG = uuid.uuid4().hex[:5]


def lab_name(scenario: str) -> str:
    """A lab name of this test run alone, so runs side by side (two checkouts) never collide."""
    return f"t{TAG}-{hashlib.sha1(scenario.encode()).hexdigest()[:6]}"


def lab_run(scenario, *args, timeout=120):
    return subprocess.run([*NETPROBE, "lab", "run", scenario, "--name", lab_name(scenario), *args],
                          capture_output=True, text=True, timeout=timeout)


def leftover(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith(f"nplab-{name}.")]


@pytest.mark.parametrize("scenario", sorted(available_scenarios()))
def test_every_scenario_holds_its_expectation(scenario, tmp_path):
    out = tmp_path / "result.json"
    proc = lab_run(scenario, "--format", "json", "-o", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == []
    assert all(c["reach"] != "unknown" for c in cells_of(result))
    assert leftover(lab_name(scenario)) == []


def test_scenario_verdicts_name_where_flows_die(tmp_path):
    """A few cells per story, beyond 'the expectation holds'."""
    def cells(scenario):
        out = tmp_path / f"{scenario}.json"
        assert lab_run(scenario, "--format", "json", "-o", str(out)).returncode == 0
        return {(c["check"], c["src"], c["dst"]): c for c in cells_of(json.loads(out.read_text()))}

    racks = cells("two-racks-router")
    blocked = [c for c in racks.values() if c["reach"] == "blocked"]
    assert blocked and all((c["check"], c["where"]) == ("bgp", "network") for c in blocked)
    stateful = cells("stateful-no-established")
    assert {c["where"] for c in stateful.values() if c["reach"] == "blocked"} == {"return-path"}
    etcd = cells("etcd-control-plane-only")
    rejected = [c for c in etcd.values() if c["reach"] == "blocked"]
    assert rejected and all((c["where"], c["verdict"]) == ("destination-ingress", "rejected") for c in rejected)
    assert all(c["evidence"]["reply"] == "rst" for c in rejected)  # forged reset, not "closed"
    # dual stack: exactly BGP over IPv6 into the nodes with the rule is blocked, every IPv4 cell passes
    out = tmp_path / "dual.json"
    assert lab_run("dual-stack-bgp6-blocked", "--format", "json", "-o", str(out)).returncode == 0
    dual = cells_of(json.loads(out.read_text()))
    blocked = {(c["check"], c["src"], c["dst"], c.get("family", 4)) for c in dual if c["reach"] != "allowed"}
    assert blocked == {("bgp", src, dst, 6) for src, dst in (("cp1", "node1"), ("cp1", "node2"), ("node1", "node2"),
                                                             ("node2", "node1"))}
    assert all(c["where"] == "destination-ingress" for c in dual if c["reach"] == "blocked")
    assert {c.get("family", 4) for c in dual} == {4, 6} and all(c["reach"] == "allowed" for c in dual
                                                                  if c.get("family", 4) == 4)


def test_a_wrong_expectation_exits_1_naming_the_cell(tmp_path):
    demo = Path(available_scenarios()["demo"]).read_text()
    wrong = demo.replace("{check: bgp, from: node1, to: node2, reach: blocked, where: destination-ingress}",
                         "{check: bgp, from: node1, to: node2, reach: allowed}")
    assert wrong != demo
    path = tmp_path / "demo-wrong.yaml"
    path.write_text(wrong.replace("name: demo", "name: demowrong"))
    proc = lab_run(str(path))
    assert proc.returncode == 1, proc.stderr
    assert "bgp node1 -> node2: expected allowed" in proc.stdout
    assert "expectation does NOT hold" in proc.stdout
    assert leftover(lab_name(str(path))) == []


def test_preflight_through_the_lab_agents():
    from netprobe.lab.runtime import running_lab
    from netprobe.lab.spec import load_scenario
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.config import inventory_token, load_inventory

    import trio

    scenario = load_scenario("calico-default")
    with running_lab(scenario, f"pf{TAG}") as lab:
        inventory = load_inventory(str(lab.inventory_path))
        start_responders(lab, [h.name for h in scenario.hosts])
        trio.run(wait_for_agents, inventory, inventory_token(inventory))
        proc = subprocess.run([*NETPROBE, "preflight", "--inventory", str(lab.inventory_path), "--format", "json"],
                              capture_output=True, text=True, timeout=60)
    # this kernel has no IP-in-IP: every host fails that line, so exit 1 (not 3: every agent answered)
    assert proc.returncode == 1, proc.stderr
    reports = json.loads(proc.stdout)
    hosts = reports["hosts"] if "hosts" in reports else reports
    assert sorted(hosts) == sorted(h.name for h in scenario.hosts)
    for report in hosts.values():
        items = {i["id"]: i for i in report["items"]}
        assert items["module:ipip"]["status"] == "fail"
        assert "CONFIG_NET_IPIP" in items["module:ipip"]["evidence"]
