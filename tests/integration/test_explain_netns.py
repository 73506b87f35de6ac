"""The explain round on real kernels: each scenario's blocked cells carry the right explanation
(rule, chain policy, legacy rule, hop), `probe` finds the hop too, and no trace table of an agent
outlives a run, a Ctrl-C, or a SIGKILL of its responder (the sweep at its restart).

"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import trio

from helpers import cells_of

from netprobe.config import inventory_token, load_inventory
from netprobe.lab.runtime import running_lab
from netprobe.lab.spec import load_scenario, parse_scenario
from netprobe.orchestration.lab_session import start_responders, wait_for_agents

pytestmark = pytest.mark.netns
NETPROBE = [sys.executable, "-m", "netprobe"]
TAG = uuid.uuid4().hex[:4]
_RUNS: dict[str, dict] = {}


def lab_run(scenario: str) -> dict:
    """`netprobe lab run SCENARIO` once per scenario and test session: (check, src, dst, family) -> cell."""
    if scenario not in _RUNS:
        out = f"/tmp/npex-{TAG}-{scenario}.json"
        proc = subprocess.run([*NETPROBE, "lab", "run", scenario, "--name", f"npex-{TAG}-{len(_RUNS)}",
                               "--format", "json", "-o", out], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        with open(out) as f:
            _RUNS[scenario] = {(c["check"], c["src"], c["dst"], c.get("family", 4)): c for c in cells_of(json.load(f))}
        os.unlink(out)
    return _RUNS[scenario]


def blocked(cells: dict) -> list[dict]:
    return [c for c in cells.values() if c["reach"] == "blocked"]


# (scenario, the blocked cell, its source and destination addresses, the port, the chain that dropped it)
RULE_CASES = [
    ("commented-nft-rule", ("bgp", "node3", "node2", 4), "198.18.0.13", "198.18.0.12", 179, "INPUT"),
    ("chain-policy-drop", ("etcd", "node1", "cp1", 4), "198.18.0.11", "198.18.0.10", 2379, "INPUT"),
    ("legacy-iptables-drop", ("bgp", "node1", "node2", 4), "198.18.0.11", "198.18.0.12", 179, "INPUT"),
    ("egress-drop", ("bgp", "node2", "cp1", 4), "198.18.0.12", "198.18.0.10", 179, "OUTPUT"),
]


@pytest.mark.parametrize(("scenario", "key", "src", "dst", "port", "chain"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_every_blocked_cell_is_explained_with_the_fix_for_its_flow(scenario, key, src, dst, port, chain):
    cells = lab_run(scenario)
    assert blocked(cells) and all(c["explain"] is not None for c in blocked(cells))
    explain = cells[key]["explain"]
    fix = explain["fix"]["iptables"]
    assert fix.startswith("iptables") and f" {chain} " in fix and f"-s {src} -d {dst} -p tcp" in fix
    assert f"--dport {port}" in fix and fix.endswith("-j ACCEPT")
    assert f"ip saddr {src} ip daddr {dst} tcp dport {port} accept" in explain["fix"]["nft"]
    assert explain["rule"] is not None and explain["note"] is None
    assert all(c.get("explain") is None for c in cells.values() if c["reach"] == "allowed")


def test_a_commented_nft_rule_comes_out_with_its_comment():
    rule = lab_run("commented-nft-rule")[("bgp", "node3", "node2", 4)]["explain"]["rule"]
    assert (rule["family"], rule["table"], rule["chain"], rule["verdict"]) == ("inet", "filter", "input", "drop")
    assert rule["comment"] == "no BGP from node3 until NET-42 is closed"
    assert "tcp dport 179" in rule["text"] and isinstance(rule["handle"], int)


def test_a_chain_policy_drop_names_the_chain_and_its_policy():
    cells = lab_run("chain-policy-drop")
    for key in (("etcd", "node1", "cp1", 4), ("etcd", "node2", "cp1", 4)):
        rule = cells[key]["explain"]["rule"]
        assert (rule["family"], rule["table"], rule["chain"]) == ("inet", "filter", "input")
        assert (rule["text"], rule["verdict"], rule["handle"]) == ("policy drop", "policy drop", None)


def test_an_egress_drop_names_the_senders_own_rule():
    rule = lab_run("egress-drop")[("bgp", "node2", "cp1", 4)]["explain"]["rule"]
    assert (rule["table"], rule["chain"]) == ("filter", "OUTPUT") and rule["verdict"] == "policy drop"


def test_a_legacy_iptables_rule_is_named_by_its_counter():
    rule = lab_run("legacy-iptables-drop")[("bgp", "node1", "node2", 4)]["explain"]["rule"]
    assert (rule["family"], rule["table"], rule["chain"]) == ("iptables-legacy", "filter", "INPUT")
    assert "--dport 179" in rule["text"] and "-j DROP" in rule["text"]


def test_ipv6_cells_are_explained_over_their_own_addresses():
    cells = [c for c in lab_run("dual-stack-bgp6-blocked").values() if c["reach"] == "blocked"]
    assert cells and all(c.get("family") == 6 for c in cells)
    for c in cells:
        rule, fix = c["explain"]["rule"], c["explain"]["fix"]
        assert (rule["family"], rule["comment"]) == ("inet", "no IPv6 BGP")
        assert fix["iptables"].startswith("ip6tables -I INPUT -s 2001:db8:") and "ip6 saddr 2001:db8:" in fix["nft"]


def test_a_routed_network_block_names_the_hop():
    cells = lab_run("routed-stateful")
    explain = cells[("bgp", "cp1", "node1", 4)]["explain"]
    assert explain["hop"] == {"address": "198.18.1.1", "ttl": 1, "name": "core"}  # the core router, rack1 side
    assert explain["rule"] is None and explain["fix"] is None
    returning = [c for c in blocked(cells) if c["where"] == "return-path"]
    assert returning and all(c["explain"]["note"] for c in returning)


# ------------------------------------------------------------------ a lab that stays up


def trace_tables(lab) -> dict[str, list[str]]:
    """Every netprobe_trace_* table in every namespace of the lab."""
    found = {}
    for node, ns in lab.namespaces.items():
        out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True,
                             check=True).stdout
        tables = [line for line in out.splitlines() if "netprobe_trace_" in line]
        if tables:
            found[node] = tables
    return found


# n1 drops BGP in (n2 -> n1: destination-ingress, a trace armed at n1); the router between them
# drops n1's BGP and sends no ICMP (n1 -> n2: network, TTL-limited copies nobody answers). With
# --checks bgp every probe meets silence, so no RTT shortens a window: the explain round's
# re-send lasts the whole --timeout while n1's trace is armed (room for a Ctrl-C).
SILENT = """
name: npex-silent
profile: calico
segments:
  - {name: a, subnet: 198.18.77.0/24, hosts: [n1]}
  - {name: b, subnet: 198.18.78.0/24, hosts: [n2]}
routers:
  - name: r
    segments: [a, b]
    addresses: {a: 198.18.77.1, b: 198.18.78.1}
    firewall:
      nft: |
        table inet r {
          chain forward { type filter hook forward priority 0; policy accept; ip saddr 198.18.77.11 tcp dport 179 drop; }
          chain output { type filter hook output priority 0; policy accept; icmp type time-exceeded drop; }
        }
hosts:
  - name: n1
    address: 198.18.77.11
    firewall:
      nft: |
        table inet filter {
          chain input { type filter hook input priority 0; policy accept; tcp dport 179 drop comment "no bgp"; }
        }
  - {name: n2, address: 198.18.78.12}
"""
SLOW = ["--checks", "bgp", "--timeout", "3", "--retries", "0"]  # probing 3 s, then the re-send 3 s


@pytest.fixture(scope="module")
def lab():
    """SILENT up, with a responder per host, for the whole module."""
    scenario = parse_scenario(SILENT, source="test_explain_netns.SILENT")
    with running_lab(scenario, f"npex-{TAG}-up") as up:
        start_responders(up, [h.name for h in scenario.hosts])
        inventory = load_inventory(str(up.inventory_path))
        trio.run(wait_for_agents, inventory, inventory_token(inventory))
        yield up


def mesh(lab, *args) -> subprocess.Popen:
    return subprocess.Popen([*NETPROBE, "mesh", "-i", str(lab.inventory_path), "--format", "json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_no_trace_table_is_left_after_a_run(lab):
    proc = mesh(lab, "--checks", "bgp", "--timeout", "0.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    explained = {(c["src"], c["dst"]): c for c in cells_of(json.loads(out)) if c["reach"] == "blocked"}
    assert set(explained) == {("n1", "n2"), ("n2", "n1")}
    assert explained[("n2", "n1")]["explain"]["rule"]["comment"] == "no bgp"
    network = explained[("n1", "n2")]["explain"]
    assert network["hop"] is None and "no router answered" in network["note"]
    assert trace_tables(lab) == {}


def test_no_trace_table_is_left_after_ctrl_c(lab):
    proc = mesh(lab, *SLOW)
    started = time.monotonic()
    while time.monotonic() - started < 12 and proc.poll() is None and not trace_tables(lab):
        time.sleep(0.05)  # the rule finder's table appears once the destinations are armed
    assert proc.poll() is None and trace_tables(lab)  # in the explain round, traces armed
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert trace_tables(lab) == {}


def test_a_responder_killed_with_a_trace_armed_sweeps_it_at_its_restart(lab):
    """SIGKILL runs no cleanup: the table a killed agent held stays until the next agent starts."""
    from netprobe.agent.client import AgentClient
    from netprobe.agent.protocol import ArmRequest
    from netprobe.core.trace import Flow

    inventory = load_inventory(str(lab.inventory_path))
    token = inventory_token(inventory)
    n1 = next(h for h in inventory.hosts if h.name == "n1")

    async def arm():
        async with AgentClient(n1.agent, token=token) as client:
            await client.explain_arm(ArmRequest("killed", (Flow("tcp", "198.18.78.12", "198.18.77.11", 40000, 179),),
                                                hold=120))

    trio.run(arm)
    pid, alive = lab.processes()["responder-n1"]
    assert alive
    os.kill(pid, signal.SIGKILL)
    lab.supervisor.stop("responder-n1")
    assert "n1" in trace_tables(lab)
    start_responders(lab, ["n1"])
    trio.run(wait_for_agents, inventory, token)
    assert trace_tables(lab) == {}


# ------------------------------------------------------------------ probe, the sender alone


def test_probe_finds_the_hop_of_a_flow_the_router_drops():
    scenario = load_scenario("routed-stateful")
    with running_lab(scenario, f"npex-{TAG}-pr") as up:
        proc = up.exec("cp1", [*NETPROBE, "probe", up.address("node1"), "--checks", "bgp,typha", "--format", "json",
                               "--timeout", "0.5"], capture_output=True, text=True, timeout=60)
    cells = {c["check"]: c for c in json.loads(proc.stdout)["cells"]}
    assert cells["bgp"]["reach"] == "unknown"  # silence: the sender alone cannot say where
    assert cells["bgp"]["explain"]["hop"] == {"address": "198.18.1.1", "ttl": 1, "name": None}
    assert cells["typha"]["reach"] == "allowed" and "explain" not in cells["typha"]


def test_ctrl_c_to_lab_run_in_the_explain_round_leaves_nothing(tmp_path):
    name = f"npex-{TAG}-cc"
    scenario, err = tmp_path / "silent.yaml", tmp_path / "stderr"
    scenario.write_text(SILENT)
    with open(err, "w") as stderr:
        proc = subprocess.Popen([*NETPROBE, "lab", "run", str(scenario), "--name", name, *SLOW],
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        deadline = time.monotonic() + 60
        while "probing" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(4.5)  # 3 s of probing, then the re-send's 3 s window is on
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, err.read_text()[-2000:]
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [line for line in out.splitlines() if line.startswith(f"nplab-{name}.")] == []
    assert not os.path.exists(f"/run/netprobe/lab/{name}")


def test_probe_explains_its_own_egress_drop():
    scenario = load_scenario("egress-drop")
    with running_lab(scenario, f"npex-{TAG}-eg") as up:
        proc = up.exec("node2", [*NETPROBE, "probe", up.address("cp1"), "--checks", "bgp", "--format", "json",
                                 "--timeout", "0.5"], capture_output=True, text=True, timeout=60)
    bgp = json.loads(proc.stdout)["cells"][0]
    assert (bgp["reach"], bgp["where"]) == ("blocked", "source-egress")
    assert bgp["explain"]["fix"]["iptables"].startswith("iptables") and " OUTPUT " in bgp["explain"]["fix"]["iptables"]
    assert (bgp["explain"]["rule"]["chain"], bgp["explain"]["rule"]["verdict"]) == ("OUTPUT", "policy drop")
