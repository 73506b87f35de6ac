"""A lab's state directory read back by another process: what `lab status`, `lab exec` and
`lab down` know of a lab comes from what bring_up writes there with ``state.write_state``.
Here under a temporary root, with fake namespace files: no privileges, nothing spawned."""

from __future__ import annotations

import json
import os

import pytest

from netprobe.errors import ConfigError, LabError
from netprobe.lab import apply, names, state
from netprobe.lab.processes import start_time
from netprobe.lab.spec import load_scenario


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """State root and /run/netns stand-ins."""
    monkeypatch.setattr(names, "STATE_ROOT", tmp_path / "lab")
    monkeypatch.setattr(names, "NETNS_DIR", tmp_path / "netns")
    monkeypatch.setattr(apply, "NETNS_DIR", tmp_path / "netns")
    (tmp_path / "netns").mkdir()
    return tmp_path


def written_lab(name: str, status: str = "up") -> state.Lab:
    """What bring_up leaves behind: the state directory, state.json and the scenario copy."""
    scenario = load_scenario("demo")
    sd = names.state_dir(name)
    (sd / "pids").mkdir(parents=True)
    lab = state.Lab(name, scenario, sd, {n: names.netns_name(name, n) for n in ("lan", "cp1", "node1", "node2")})
    state.write_state(lab, status)
    (sd / "scenario.yaml").write_text(scenario.text)
    return lab


def make_netns(roots, *nss: str) -> None:
    for ns in nss:
        (roots / "netns" / ns).touch()


def test_state_json_round_trips_through_open_lab(roots):
    lab = written_lab("lw-a")
    assert not (lab.state_dir / "state.json.tmp").exists()  # written whole, then renamed
    again = state.open_lab("lw-a")
    assert again.namespaces == lab.namespaces
    assert [h.name for h in again.scenario.hosts] == [h.name for h in lab.scenario.hosts]
    assert again.inventory_path == lab.inventory_path and again.pid_dir == lab.state_dir / "pids"
    assert state.recorded_namespaces("lw-a") == list(lab.namespaces.values())


def test_status_of_a_healthy_lab(roots):
    lab = written_lab("lw-a")
    make_netns(roots, *lab.namespaces.values())
    (lab.pid_dir / "me").write_text(f"{os.getpid()} {start_time(os.getpid())}\n")
    s = state.lab_status("lw-a")
    assert (s.scenario, s.status, s.healthy) == ("demo", "up", True)
    assert s.processes == {"me": (os.getpid(), True)}
    assert [h["name"] for h in s.hosts] == ["cp1", "node1", "node2"]
    assert s.to_dict()["processes"] == {"me": {"pid": os.getpid(), "alive": True}}


@pytest.mark.parametrize("broken", ["starting", "a namespace is gone", "a process died"])
def test_status_of_an_unhealthy_lab(roots, broken):
    lab = written_lab("lw-a", "starting" if broken == "starting" else "up")
    nss = list(lab.namespaces.values())
    make_netns(roots, *(nss[1:] if broken == "a namespace is gone" else nss))
    if broken == "a process died":
        (lab.pid_dir / "gone").write_text(f"{os.getpid()} 1\n")  # our pid, another start time
    s = state.lab_status("lw-a")
    assert not s.healthy and s.to_dict()["healthy"] is False


def test_a_lab_without_state_json(roots):
    (names.state_dir("lw-b")).mkdir(parents=True)
    assert state.lab_status("lw-b").status == "broken (no state.json)"
    assert state.recorded_namespaces("lw-b") == []
    with pytest.raises(ConfigError, match="no lab named 'lw-b'"):
        state.open_lab("lw-b")
    (names.state_dir("lw-b") / "state.json").write_text("[1, 2]")  # not an object
    assert state.read_state("lw-b") is None


def test_open_lab_without_its_scenario_copy(roots):
    lab = written_lab("lw-a")
    (lab.state_dir / "scenario.yaml").unlink()
    with pytest.raises(LabError, match="cannot read its scenario copy"):
        state.open_lab("lw-a")


def test_lab_names_and_stray_namespaces(roots):
    written_lab("lw-a")
    names.state_dir("Not.A.Lab").mkdir()
    make_netns(roots, "nplab-lw-a.cp1", "nplab-lw-gone.node1", "other-ns")
    assert state.lab_names() == ["lw-a"]
    assert state.present_namespaces() == ["nplab-lw-a.cp1", "nplab-lw-gone.node1", "other-ns"]
    assert state.stray_namespaces() == ["nplab-lw-gone.node1"]
    assert [state.lab_of(ns) for ns in state.present_namespaces()] == ["lw-a", "lw-gone", None]


def test_state_json_is_what_other_tools_read(roots):
    lab = written_lab("lw-a", "starting")
    data = json.loads((lab.state_dir / "state.json").read_text())
    assert set(data) == {"name", "scenario", "source", "status", "namespaces", "hosts"}
    assert data["status"] == "starting" and data["namespaces"]["cp1"] == "nplab-lw-a.cp1"
