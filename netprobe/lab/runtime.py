"""Bring a lab up, run things in it, always take it down.

    with running_lab(load_scenario("demo")) as lab:
        pid = lab.spawn("node1", [sys.executable, "-m", "netprobe", "responder", ...], "node1-responder")
        ...                      # lab.inventory_path, lab.token_path, lab.netns("node1")
    # here every namespace, process and state file of the lab is gone: on success, on an
    # exception, on Ctrl-C and on SIGTERM (turned into an exception while the lab is up)

Only up and down live here: the plan is carried out by ``apply``, processes are ``processes``',
and the state directory that lets another process (``lab down``) take the lab down from it
alone is ``state``'s.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator

import yaml

from netprobe.errors import ConfigError, PrivilegeError
from netprobe.lab import names
from netprobe.lab import plan as p
from netprobe.lab.apply import Applier, netns_exists
from netprobe.lab.processes import pids_in_netns, recorded_targets, signal_guard, stop_pids
from netprobe.lab.spec import Scenario
from netprobe.lab.state import Lab, lab_names, lab_of, present_namespaces, recorded_namespaces, write_state


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("netprobe lab needs root (it creates network namespaces)")


def plan_for(scenario: Scenario, name: str | None = None) -> tuple[str, list[p.Step]]:
    lab_name = names.check_lab_name(name or scenario.name)
    return lab_name, p.build_plan(scenario, lab_name)


# -- up ---------------------------------------------------------------------------------------

def bring_up(scenario: Scenario, name: str | None = None) -> Lab:
    """Build the lab and leave it up (``lab up``). Whatever goes wrong or interrupts it on the
    way (an error, Ctrl-C, SIGTERM) takes down what was built before the error propagates."""
    require_root()
    lab_name, steps = plan_for(scenario, name)
    sd = names.state_dir(lab_name)
    nss = p.namespaces(steps)
    if sd.exists() or any(netns_exists(ns) for ns in nss):
        raise ConfigError(f"lab {lab_name!r} is already up (take it down: netprobe lab down {lab_name})",
                          field="--name")
    namespaces = {name: names.netns_name(lab_name, scenario.short(name)) for name in
                  [s.name for s in scenario.segments] + [r.name for r in scenario.routers]
                  + [h.name for h in scenario.hosts]}
    lab = Lab(lab_name, scenario, sd, namespaces)
    sd.parent.mkdir(parents=True, exist_ok=True)
    with signal_guard("raise"):
        try:
            sd.mkdir()  # also the lock: a second `lab up` of this name fails here
        except FileExistsError:
            raise ConfigError(f"lab {lab_name!r} is already up", field="--name") from None
        try:
            for sub in ("logs", "pids", "run"):
                (sd / sub).mkdir()
            write_state(lab, "starting")
            (sd / "scenario.yaml").write_text(scenario.text)
            applier = Applier(scenario.source, lab.supervisor)
            try:
                for step in steps:
                    applier.run(step.action)
                    lab.built.append(step)
            finally:
                applier.close()
            lab.wait_ready()
            fd = os.open(lab.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            inv = p.inventory(scenario, lab_name)
            header = f"# netprobe lab {lab_name} (scenario {scenario.name}); made by `netprobe lab up`\n"
            lab.inventory_path.write_text(header + yaml.safe_dump(inv, sort_keys=False))
            write_state(lab, "up")
        except BaseException:
            tear_down_lab(lab)
            raise
    return lab


@contextlib.contextmanager
def running_lab(scenario: Scenario, name: str | None = None) -> Iterator[Lab]:
    """Bring the lab up, yield it, and always take it down (error, Ctrl-C, SIGTERM included)."""
    with signal_guard("raise"):  # from before bring_up returns: no SIGTERM gap between up and try
        lab = bring_up(scenario, name)
        try:
            yield lab
        finally:
            tear_down_lab(lab)


# -- down -------------------------------------------------------------------------------------

def tear_down_lab(lab: Lab) -> None:
    """Undo what this process built (newest first), then sweep whatever is left of the lab."""
    with signal_guard("ignore"):
        applier = Applier(lab.scenario.source, lab.supervisor)
        try:
            for action in p.teardown(lab.built):
                applier.undo(action)
        finally:
            applier.close()
        lab.built.clear()
        lab.supervisor.reap_children()
        sweep(lab.name)


def sweep(lab_name: str) -> dict[str, list]:
    """Take down lab ``lab_name`` from its state directory and namespace names alone: stop its
    processes, delete its namespaces (which takes their links, rules and routes along), remove
    its state. Touches nothing that is not this lab's."""
    sd = names.state_dir(lab_name)
    killed: list[int] = []
    removed: list[str] = []
    recorded = recorded_namespaces(lab_name)
    if (sd / "pids").is_dir():
        killed += stop_pids(recorded_targets(sd / "pids"))
    ours = [ns for ns in recorded + present_namespaces() if lab_of(ns) == lab_name]
    _remove_namespaces(list(dict.fromkeys(ours)), killed, removed)
    if sd.exists():
        shutil.rmtree(sd, ignore_errors=True)
    return {"namespaces": removed, "pids": killed}


def _remove_namespaces(nss: list[str], killed: list[int], removed: list[str]) -> None:
    from pyroute2 import netns as pnetns

    left = {}
    for ns in nss:
        left.update({pid: None for pid in pids_in_netns(ns)})
    killed += stop_pids(left, grace=0.5)
    for ns in nss:
        if netns_exists(ns):
            with contextlib.suppress(OSError):
                pnetns.remove(ns)
                removed.append(ns)


def is_up(name: str) -> bool:
    """Whether lab ``name`` has state or namespaces left (``lab down`` has something to do).
    Needs no root: it only looks."""
    names.check_lab_name(name, field="NAME")
    return names.state_dir(name).exists() or any(lab_of(ns) == name for ns in present_namespaces())


def tear_down(name: str) -> dict[str, list]:
    """``lab down NAME``: a ConfigError when there is no such lab."""
    require_root()
    names.check_lab_name(name, field="NAME")
    sd = names.state_dir(name)
    if not sd.exists() and not any(lab_of(ns) == name for ns in present_namespaces()):
        raise ConfigError(f"no lab named {name!r} is up (see: netprobe lab status)", field="NAME")
    return sweep(name)


def tear_down_all() -> dict[str, dict[str, list]]:
    """``lab down --all``: every lab with a state directory, then any ``nplab-`` namespace left
    by a lab that lost its state. Other namespaces are never touched."""
    require_root()
    out = {}
    for name in lab_names():
        out[name] = sweep(name)
    stray = [ns for ns in present_namespaces() if ns.startswith(names.PREFIX)]
    if stray:
        killed: list[int] = []
        removed: list[str] = []
        _remove_namespaces(stray, killed, removed)
        out["(no state)"] = {"namespaces": removed, "pids": killed}
    return out
