"""Calico as it runs today, in lab namespaces: WireGuard probed end to end (allowed, then blocked
by one rule), canal's VXLAN on flannel's real port 8472 carrying an overlay ping, and the agent's
VXLAN device report next to the port the mesh probes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from helpers import cells_of
import trio

from netprobe.config import inventory_token, load_inventory
from netprobe.lab.runtime import running_lab
from netprobe.lab.spec import load_scenario
from netprobe.orchestration.lab_session import start_responders, wait_for_agents

pytestmark = pytest.mark.netns
NETPROBE = [sys.executable, "-m", "netprobe"]
TAG = uuid.uuid4().hex[:5]


def responders(lab, scenario):
    start_responders(lab, [h.name for h in scenario.hosts])
    inventory = load_inventory(str(lab.inventory_path))
    trio.run(wait_for_agents, inventory, inventory_token(inventory))


def mesh(lab, *args) -> tuple[int, dict, dict]:
    proc = subprocess.run([*NETPROBE, "mesh", "-i", str(lab.inventory_path), "--format", "json", "--timeout", "0.5",
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    return proc.returncode, {(c["check"], c["src"], c["dst"]): c for c in cells_of(result)}, result


def test_wireguard_and_wireguard6_are_allowed_then_blocked_by_one_rule_each():
    """The scenario is dual stack: wireguard (UDP 51820) is probed over IPv4, wireguard6 (UDP
    51821) over IPv6 only; both allowed between the template's hosts, both blocked into node2.
    Then one rule on cp1 per family: node1 -> cp1 dies at cp1's INPUT, the rest stands."""
    scenario = load_scenario("calico-wireguard")
    with running_lab(scenario, f"ct-wg-{TAG}") as lab:
        responders(lab, scenario)
        code, cells, result = mesh(lab, "--profile", "calico-wireguard", "--checks", "wireguard,wireguard6")
        assert result["skipped"] == []
        assert {(c[0], cell.get("family", 4)) for c, cell in cells.items()} == {("wireguard", 4), ("wireguard6", 6)}
        assert len(cells) == 12
        for check in ("wireguard", "wireguard6"):
            before = cells[(check, "node1", "cp1")]
            assert (before["reach"], before["verdict"]) == ("allowed", "answered"), before
            assert before["evidence"]["accepted"] is True
            # the scenario's story: node2 never had either rule
            assert (cells[(check, "node1", "node2")]["reach"], cells[(check, "node1", "node2")]["where"]) \
                == ("blocked", "destination-ingress")
        # one rule each on cp1 and node1 -> cp1 dies at cp1's INPUT; the other cells stand
        lab.exec("cp1", ["nft", "insert", "rule", "inet", "filter", "input", "udp", "dport", "51820", "drop"],
                 check=True)
        lab.exec("cp1", ["nft", "insert", "rule", "inet", "filter", "input", "meta", "nfproto", "ipv6", "udp", "dport",
                         "51821", "drop"], check=True)
        code, cells, _ = mesh(lab, "--profile", "calico-wireguard", "--checks", "wireguard,wireguard6")
        assert code == 1
        for check in ("wireguard", "wireguard6"):
            after = cells[(check, "node1", "cp1")]
            assert (after["reach"], after["where"]) == ("blocked", "destination-ingress")
            assert after["evidence"]["arrived"] is True and after["evidence"]["accepted"] is False
            assert cells[(check, "cp1", "node1")]["reach"] == "allowed"
        assert cells[("wireguard6", "node1", "cp1")]["family"] == 6


def ping(lab, src: str, address: str) -> bool:
    return lab.exec(src, ["ping", "-c", "1", "-W", "1", address], capture_output=True).returncode == 0


def test_canal_vxlan_runs_on_8472_and_carries_an_overlay_ping():
    scenario = load_scenario("canal-vxlan-one-way")
    with running_lab(scenario, f"ct-vx-{TAG}") as lab:
        links = lab.exec("node1", ["ip", "-d", "link", "show", "flannel.1"], capture_output=True, text=True).stdout
        assert "dstport 8472" in links
        overlay = {}
        for h in scenario.hosts:
            out = lab.exec(h.name, ["ip", "-4", "-o", "addr", "show", "dev", "flannel.1"],
                           capture_output=True, text=True, check=True).stdout
            overlay[h.name] = out.split()[3].split("/")[0]
        assert all(a.startswith("198.19.0.") for a in overlay.values())
        # the firewalls accept VXLAN only as UDP 8472 from 198.18.0.0/25: a ping through the overlay
        # between cp1 and node1 can only have crossed as flannel's 8472
        assert ping(lab, "cp1", overlay["node1"]) and ping(lab, "node1", overlay["node2"])
        # node3 (198.18.0.140) is outside the accepted range: its overlay packets die at the others
        assert not ping(lab, "node3", overlay["node1"])
        # and the mesh probes 8472 (the lab's inventory carries vxlan_port, canal's default anyway)
        responders(lab, scenario)
        code, cells, result = mesh(lab, "--profile", "canal", "--checks", "vxlan")
        assert next(c for c in result["checks"] if c["id"] == "vxlan")["port"] == 8472
        assert cells[("vxlan", "cp1", "node1")]["reach"] == "allowed"
        assert (cells[("vxlan", "node3", "node1")]["reach"], cells[("vxlan", "node3", "node1")]["where"]) \
            == ("blocked", "destination-ingress")


def test_preflight_inventory_flags_a_vxlan_port_the_mesh_does_not_probe(tmp_path):
    """The agents report flannel.1 on 8472; an inventory that pins vxlan_port 4789 is flagged on
    every host, the lab's own inventory (8472) is not."""
    scenario = load_scenario("canal-vxlan-one-way")
    with running_lab(scenario, f"ct-pf-{TAG}") as lab:
        responders(lab, scenario)

        def preflight(inventory):
            proc = subprocess.run([*NETPROBE, "preflight", "--inventory", str(inventory), "--profile", "canal",
                                   "--format", "json"], capture_output=True, text=True, timeout=60)
            assert proc.returncode in (0, 1), proc.stderr
            return json.loads(proc.stdout)["hosts"]

        for report in preflight(lab.inventory_path).values():
            item = next(i for i in report["items"] if i["id"] == "vxlan:flannel.1")
            assert item["status"] == "ok" and "UDP 8472" in item["evidence"]
        pinned = tmp_path / "inventory.yaml"
        text = lab.inventory_path.read_text().replace("vxlan_port: 8472", "vxlan_port: 4789")
        pinned.write_text(text.replace("token_file: token", f"token_file: {lab.token_path}"))
        for report in preflight(pinned).values():
            item = next(i for i in report["items"] if i["id"] == "vxlan:flannel.1")
            assert item["status"] == "warn" and "set vxlan_port: 8472" in item["evidence"], item
