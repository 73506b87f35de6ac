"""The overlay checks on real kernels: echoes in the probe's own encapsulation crossing a stateful
INPUT that allows only the encapsulation, and the mtu check finding a black hole whose ICMP
fragmentation-needed is dropped (the lab's mtu-black-hole, IPIP and VXLAN), a clean path allowed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import NETPROBE, REPO, TEST_PREFIX
from helpers import cells_of

pytestmark = pytest.mark.netns

ENCAPSULATION_ONLY = """
table inet filter {{
  chain input {{
    type filter hook input priority 0; policy drop;
    ip saddr {peer} ip protocol ipencap accept
    ip saddr {peer} udp dport 4789 accept
  }}
}}
"""


def probe(pair, checks: str, *extra: str) -> dict:
    """`netprobe probe` from a to b, its cells by check."""
    proc = pair.netprobe(pair.a, ["probe", pair.addr_b, "--checks", checks, "--format", "json", "--timeout", "0.5",
                                  "--token-file", str(pair.inventory.parent / "token"), *extra])
    assert proc.returncode in (0, 1), proc.stderr
    return {c["check"]: c for c in json.loads(proc.stdout)["cells"]}


def mesh(pair, checks: str, *extra: str) -> dict:
    proc = subprocess.run([*NETPROBE, "mesh", "-i", str(pair.inventory), "--format", "json", "--timeout", "0.5",
                           "--checks", checks, *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    return {(c["check"], c["src"], c["dst"]): c for c in cells_of(json.loads(proc.stdout))}


def test_encapsulated_echoes_cross_an_input_that_allows_only_the_encapsulation(mesh_pair):
    """a's INPUT drops everything but IP-in-IP and VXLAN from b, with no conntrack rule: a plain
    UDP echo would die there (probe said 'blocked return-path' where mesh said allowed)."""
    mesh_pair.nft(mesh_pair.a, ENCAPSULATION_ONLY.format(peer=mesh_pair.addr_b))
    cells = probe(mesh_pair, "ipip,vxlan")
    for check in ("ipip", "vxlan"):
        ev = cells[check]["evidence"]
        assert (cells[check]["reach"], cells[check]["verdict"]) == ("allowed", "answered"), cells[check]
        assert ev["reply"] == "echo" and ev["reply_accepted"] is True, ev  # the echo got through a's INPUT
    both = mesh(mesh_pair, "ipip,vxlan")
    assert {k: (c["reach"], c["where"]) for k, c in both.items()} == {
        (check, s, d): ("allowed", None) for check in ("ipip", "vxlan") for s, d in (("a", "b"), ("b", "a"))}


def test_an_echo_that_the_senders_input_drops_still_proves_the_way_there(mesh_pair):
    """With a's INPUT dropping the overlay, b's echo (the reverse flow) dies at a; the probe itself
    was accepted at b (only that is echoed), so a -> b is allowed, as mesh says; b -> a is blocked."""
    mesh_pair.nft(mesh_pair.a, "table inet filter {\n chain input { type filter hook input priority 0; policy drop; }\n}\n")
    cells = probe(mesh_pair, "ipip,vxlan")
    for check in ("ipip", "vxlan"):
        ev = cells[check]["evidence"]
        assert cells[check]["reach"] == "allowed" and (ev["reply_arrived"], ev["reply_accepted"]) == (True, False)
    both = mesh(mesh_pair, "ipip,vxlan")
    for check in ("ipip", "vxlan"):
        assert both[(check, "a", "b")]["reach"] == "allowed"
        assert (both[(check, "b", "a")]["reach"], both[(check, "b", "a")]["where"]) == ("blocked", "destination-ingress")


def test_a_clean_path_passes_the_mtu_check_at_full_size(mesh_pair):
    cells = probe(mesh_pair, "mtu")
    ev = cells["mtu"]["evidence"]
    assert cells["mtu"]["reach"] == "allowed" and (ev["path_mtu"], ev["mtu"], ev["overlay"]) == (1500, 1500, "ipip")
    cells = probe(mesh_pair, "mtu", "--profile", "canal", "--mtu", "1400")
    ev = cells["mtu"]["evidence"]
    assert cells["mtu"]["reach"] == "allowed" and (ev["path_mtu"], ev["mtu"], ev["overlay"]) == (1400, 1400, "vxlan")
    both = mesh(mesh_pair, "ipip,mtu")
    assert {c["reach"] for c in both.values()} == {"allowed"}


def _scenario(tmp_path: Path, overlay: str) -> Path:
    """mtu-black-hole, or the same with flannel's VXLAN (canal) in place of IP-in-IP."""
    text = (REPO / "scenarios" / "mtu-black-hole.yaml").read_text()
    if overlay == "vxlan":
        text = text.replace("profile: calico", "profile: canal").replace(
            'ip protocol ipencap accept comment "Calico IP-in-IP"', 'udp dport 8472 accept comment "flannel VXLAN"')
        assert "profile: canal" in text and "udp dport 8472" in text
    path = tmp_path / "mtu-black-hole.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("overlay", ["ipip", "vxlan"])
def test_the_black_hole_is_found_without_icmp(tmp_path, overlay):
    """Across the 1400-byte link every mtu cell is blocked in the network at exactly 1400, though
    the routers dropped every fragmentation-needed they made (their counters say so); inside a
    rack every mtu cell is allowed, and so is every other check."""
    name = f"{TEST_PREFIX}{uuid.uuid4().hex[:4]}"
    result = tmp_path / "result.json"
    proc = subprocess.run([*NETPROBE, "lab", "up", str(_scenario(tmp_path, overlay)), "--name", name, "--responders"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    try:
        lab = Path("/run/netprobe/lab") / name
        mesh_proc = subprocess.run([*NETPROBE, "mesh", "-i", str(lab / "inventory.yaml"), "--profile",
                                    "calico" if overlay == "ipip" else "canal", "-o", str(result), "-q"],
                                   capture_output=True, text=True, timeout=120)
        assert mesh_proc.returncode == 1, mesh_proc.stderr
        one_shot = subprocess.run([*NETPROBE, "lab", "exec", name, "node3", "--", sys.executable, "-m", "netprobe",
                                   "probe", "198.18.1.10", "--checks", "mtu", "--format", "json", "--profile",
                                   "calico" if overlay == "ipip" else "canal", "--token-file", str(lab / "token")],
                                  capture_output=True, text=True, timeout=60)
        assert one_shot.returncode == 1, one_shot.stderr
        dropped = [subprocess.run(["ip", "netns", "exec", f"nplab-{name}.{router}", "nft", "-j", "list", "ruleset"],
                                  capture_output=True, text=True, check=True).stdout for router in ("core1", "core2")]
    finally:
        subprocess.run([*NETPROBE, "lab", "down", name], capture_output=True, timeout=60)
    rack = {"cp1": 1, "node1": 1, "node2": 1, "node3": 2, "node4": 2}
    cells = cells_of(json.loads(result.read_text()))
    assert cells
    for c in cells:
        if c["check"] == "mtu" and rack[c["src"]] != rack[c["dst"]]:
            ev = c["evidence"]
            assert (c["reach"], c["where"]) == ("blocked", "network"), c
            assert (ev["path_mtu"], ev["mtu"], ev["overlay"]) == (1400, 1500, overlay), c
        else:
            assert c["reach"] == "allowed", c
    (cell,) = json.loads(one_shot.stdout)["cells"]
    assert (cell["reach"], cell["where"], cell["evidence"]["path_mtu"]) == ("blocked", "network", 1400)
    rules = [item["rule"] for text in dropped for item in json.loads(text)["nftables"] if "rule" in item]
    assert sum(e["counter"]["packets"] for r in rules for e in r["expr"] if "counter" in e) > 0  # made, and dropped
