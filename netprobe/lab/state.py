"""What a lab is on disk, so any process can find, open and judge a lab another one built.

A lab's state lives in /run/netprobe/lab/NAME: ``state.json`` (scenario, status, namespaces,
hosts), ``scenario.yaml`` (a copy), ``inventory.yaml``, ``token`` (0600), ``pids/`` and ``logs/``
(see ``processes``). The ``Lab`` handle is that directory plus the namespaces: ``lab run`` and the
tests drive a lab through it, whether this process brought it up or ``open_lab`` found it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from netprobe.errors import ConfigError, LabError
from netprobe.lab import names
from netprobe.lab import plan as p
from netprobe.lab.apply import netns_exists
from netprobe.lab.processes import READY_TIMEOUT, Supervisor, recorded_processes
from netprobe.lab.spec import Scenario, parse_scenario


@dataclass
class Lab:
    """A lab that is up. ``lab run`` and the tests drive it through this."""

    name: str
    scenario: Scenario
    state_dir: Path
    namespaces: dict[str, str]  # node (host, router or segment) -> namespace
    built: list[p.Step] = field(default_factory=list, repr=False)  # steps this process carried out
    supervisor: Supervisor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.state_dir)

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.yaml"

    @property
    def token_path(self) -> Path:
        return self.state_dir / "token"

    @property
    def log_dir(self) -> Path:
        return self.supervisor.log_dir

    @property
    def pid_dir(self) -> Path:
        return self.supervisor.pid_dir

    def netns(self, host: str) -> str:
        """The namespace of a host (or router, or segment fabric), by its name or its short name."""
        host = next((n for n, s in self.scenario.short_names.items() if s == host and n not in self.namespaces),
                    host)
        try:
            return self.namespaces[host]
        except KeyError:
            known = ", ".join(h.name for h in self.scenario.hosts)
            raise ConfigError(f"lab {self.name} has no host {host!r} (hosts: {known})", field="HOST") from None

    def address(self, host: str, family: int = 4) -> str | None:
        spec = self.scenario.host(host)
        return spec.address if family == 4 else spec.address6

    def agent_socket(self, host: str) -> Path:
        """Where the inventory expects ``host``'s responder to listen."""
        return self.state_dir / f"{self.scenario.short(host)}.sock"

    def exec(self, host: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside ``host``'s namespace and wait for it (subprocess.run keywords)."""
        return subprocess.run(["ip", "netns", "exec", self.netns(host), *argv], **kwargs)

    def spawn(self, host: str, argv: list[str], log_name: str) -> int:
        """Start ``argv`` inside ``host``'s namespace, output to logs/LOG_NAME.log; teardown stops it."""
        return self.supervisor.spawn(self.netns(host), argv, log_name)

    def processes(self) -> dict[str, tuple[int, bool]]:
        """log name -> (pid, alive) for everything spawned."""
        return self.supervisor.processes()

    def stop_process(self, log_name: str) -> None:
        self.supervisor.stop(log_name)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every listener listens; a listener that died is a LabError with its log."""
        self.supervisor.wait_ready(timeout)


# -- state.json -------------------------------------------------------------------------------

def write_state(lab: Lab, status: str) -> None:
    """Record ``lab`` as ``status`` (``starting``, ``up``), atomically: a reader never sees half."""
    state = {
        "name": lab.name,
        "scenario": lab.scenario.name,
        "source": lab.scenario.source,
        "status": status,
        "namespaces": lab.namespaces,
        "hosts": [{"name": h.name, "address": h.address, **({"address6": h.address6} if h.address6 else {}),
                   "roles": sorted(h.roles)} for h in lab.scenario.hosts],
    }
    tmp = lab.state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(lab.state_dir / "state.json")


def read_state(name: str) -> dict | None:
    """Lab ``name``'s state.json, None when it is missing or unreadable."""
    try:
        state = json.loads((names.state_dir(name) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def recorded_namespaces(name: str) -> list[str]:
    """The namespaces state.json says lab ``name`` has ([] without a state.json)."""
    state = read_state(name) or {}
    try:
        return list(state.get("namespaces", {}).values())
    except AttributeError:
        return []


# -- labs that are up ---------------------------------------------------------------------------

def lab_names() -> list[str]:
    """Every lab with a state directory."""
    root = names.STATE_ROOT
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and names.LAB_NAME_RE.match(d.name))


def present_namespaces() -> list[str]:
    """Every named namespace on this machine, ours or not."""
    return sorted(os.listdir(names.NETNS_DIR)) if names.NETNS_DIR.is_dir() else []


def lab_of(ns: str) -> str | None:
    """The lab a namespace belongs to; None when it is not one of ours."""
    parsed = names.parse_netns(ns)
    return parsed[0] if parsed else None


def stray_namespaces() -> list[str]:
    """``nplab-`` namespaces whose lab has no state directory (left by a killed `lab up`)."""
    labs = set(lab_names())
    return [ns for ns in present_namespaces() if ns.startswith(names.PREFIX) and lab_of(ns) not in labs]


def open_lab(name: str) -> Lab:
    """A lab brought up by another process (for `lab exec`, `lab status`, `lab run` helpers)."""
    names.check_lab_name(name, field="NAME")
    sd = names.state_dir(name)
    state = read_state(name)
    if state is None:
        raise ConfigError(f"no lab named {name!r} is up (see: netprobe lab status)", field="NAME")
    source = state.get("source", str(sd / "scenario.yaml"))
    try:
        scenario = parse_scenario((sd / "scenario.yaml").read_text(), source=source, default_name=state.get("scenario"))
    except (OSError, ConfigError) as exc:
        raise LabError(f"lab {name}: cannot read its scenario copy: {exc}") from None
    return Lab(name, scenario, sd, dict(state.get("namespaces", {})))


@dataclass(frozen=True)
class LabStatus:
    """What `lab status` reports: a lab is healthy when it is up and nothing of it has died."""

    name: str
    scenario: str
    status: str
    namespaces: dict[str, bool]                 # namespace -> exists
    processes: dict[str, tuple[int, bool]]      # log name -> (pid, alive)
    hosts: list[dict]

    @property
    def healthy(self) -> bool:
        return self.status == "up" and all(self.namespaces.values()) and all(a for _, a in self.processes.values())

    def to_dict(self) -> dict:
        return {
            "name": self.name, "scenario": self.scenario, "status": self.status, "healthy": self.healthy,
            "hosts": self.hosts, "namespaces": self.namespaces,
            "processes": {k: {"pid": pid, "alive": alive} for k, (pid, alive) in self.processes.items()},
        }


def lab_status(name: str) -> LabStatus:
    state = read_state(name)
    if state is None:
        return LabStatus(name, "?", "broken (no state.json)", {}, {}, [])
    return LabStatus(
        name=name,
        scenario=state.get("scenario", "?"),
        status=state.get("status", "?"),
        namespaces={ns: netns_exists(ns) for ns in state.get("namespaces", {}).values()},
        processes=recorded_processes(names.state_dir(name) / "pids"),
        hosts=state.get("hosts", []),
    )
