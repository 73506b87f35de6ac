"""Scenario hosts may carry real node names; the lab derives short names where length is limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from netprobe.errors import ConfigError
from netprobe.lab.names import short_names
from netprobe.lab.plan import build_plan, inventory
from netprobe.lab.spec import load_scenario, parse_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "real-node-names.yaml"
LONG = "ip-198-18-5-99.eu-west-1.compute.internal"


def test_short_names():
    assert short_names(["cp1", LONG, "ip-198-18-5-99.other", "ip-198-18-5-99"]) == {
        "cp1": "cp1", "ip-198-18-5-99": "ip-198-18-5-99", LONG: "ip-198-18-5-99-2", "ip-198-18-5-99.other": "ip-198-18-5-99-3"}
    assert short_names(["a" * 40 + ".x"]) == {"a" * 40 + ".x": "a" * 24}


def test_a_scenario_with_real_node_names_plans_short_namespaces():
    spec = load_scenario(SCENARIO)
    assert spec.hosts[0].name == LONG
    text = "\n".join(step.describe() for step in build_plan(spec, "hbx"))
    assert "ip netns add nplab-hbx.ip-198-18-5-99\n" in text + "\n"
    assert LONG not in text.replace(f"--name {LONG}", "")  # never in a namespace, socket or file name


def test_the_inventory_keeps_the_real_names():
    inv = inventory(load_scenario(SCENARIO), "hbx")
    names = [h["name"] for h in inv["hosts"]]
    assert names[0] == LONG and inv["hosts"][0]["agent"].endswith("/ip-198-18-5-99.sock")


@pytest.mark.parametrize("bad", ["Ip-1.example", "a..b", "-a.b", "a_b.c", "x." * 130])
def test_bad_host_names_are_refused(bad):
    text = f"name: t\nhosts:\n  - {{name: '{bad}', roles: [node], address: 198.18.0.1}}\n"
    with pytest.raises(ConfigError, match="hosts\\[0\\].name"):
        parse_scenario(text, source="t.yaml")
