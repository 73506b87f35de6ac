"""Up and down refuse to start without root, before they touch anything."""

from __future__ import annotations

import pytest

from netprobe.errors import PrivilegeError
from netprobe.lab import runtime
from netprobe.lab.spec import load_scenario


def test_lab_commands_need_root(monkeypatch):
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 1000)
    with pytest.raises(PrivilegeError, match="needs root") as info:
        runtime.bring_up(load_scenario("demo"), "x")
    assert info.value.exit_code == 2
    for call in (lambda: runtime.tear_down("x"), runtime.tear_down_all):
        with pytest.raises(PrivilegeError):
            call()


def test_plan_for_names_the_lab_after_the_scenario_unless_told():
    scenario = load_scenario("demo")
    assert runtime.plan_for(scenario)[0] == "demo"
    name, steps = runtime.plan_for(scenario, "lw-other")
    assert name == "lw-other" and all("nplab-demo." not in s.describe() for s in steps)
