"""Bring a lab up, run things in it, always take it down.

    with running_lab(load_scenario("demo")) as lab:
        pid = lab.spawn("node1", [sys.executable, "-m", "netprobe", "responder", ...], "node1-responder")
        ...                      # lab.inventory_path, lab.token_path, lab.netns("node1")
    # here every namespace, process and state file of the lab is gone: on success, on an
    # exception, on Ctrl-C and on SIGTERM (turned into an exception while the lab is up)

State lives in /run/netprobe/lab/NAME: ``state.json`` (namespaces, hosts), ``scenario.yaml``
(a copy), ``inventory.yaml``, ``token`` (0600), ``pids/`` (one file per process: pid and start
time, so a recycled pid is never killed) and ``logs/``. Another process (``lab down``) can
take the lab down from that alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from netprobe.errors import ConfigError, LabError, PrivilegeError
from netprobe.lab import names
from netprobe.lab import plan as p
from netprobe.lab.apply import NETNS_DIR, Applier, netns_exists
from netprobe.lab.spec import Scenario, parse_scenario

READY_TIMEOUT = 10.0   # seconds for listeners to bind
STOP_GRACE = 2.0       # seconds between SIGTERM and SIGKILL
LOG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Terminated(KeyboardInterrupt):
    """SIGTERM while a lab is up: unwinds like Ctrl-C, so the lab is torn down."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("netprobe lab needs root (it creates network namespaces)")


# -- processes ------------------------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None: no such live process). Zombies count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _netns_inode(ns: str) -> tuple[int, int] | None:
    try:
        st = os.stat(NETNS_DIR / ns)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(ns: str) -> list[int]:
    """Every process whose network namespace is ``ns`` (like `ip netns pids`)."""
    want = _netns_inode(ns)
    if want is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == want:
                found.append(int(entry))
    return found


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_pids(targets: dict[int, str | None], grace: float = STOP_GRACE) -> list[int]:
    """SIGTERM each pid (whose start time still matches, when given), SIGKILL what is left after
    ``grace`` seconds. Returns the pids that were signalled."""
    live = {pid: st for pid, st in targets.items() if (cur := _start_time(pid)) and (st is None or st == cur)}
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        for pid in live:
            _reap(pid)
        left = [pid for pid, st in live.items() if _start_time(pid) and (st is None or _start_time(pid) == st)]
        if not left:
            break
        if time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            for pid in left:
                _reap(pid)
            break
        time.sleep(0.02)
    return list(live)


@contextlib.contextmanager
def _signals(mode: str) -> Iterator[None]:
    """``raise``: SIGTERM raises Terminated (SIGINT already raises KeyboardInterrupt).
    ``ignore``: both are ignored, so a second Ctrl-C cannot cut a teardown short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    if mode == "raise":
        saved = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term)}
    else:
        saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


# -- the lab ----------------------------------------------------------------------------------

@dataclass
class Lab:
    """A lab that is up. ``lab run`` and the tests drive it through this."""

    name: str
    scenario: Scenario
    state_dir: Path
    namespaces: dict[str, str]  # node (host, router or segment) -> namespace
    _done: list[p.Step] = field(default_factory=list, repr=False)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.yaml"

    @property
    def token_path(self) -> Path:
        return self.state_dir / "token"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    def netns(self, host: str) -> str:
        """The namespace of a host (or router, or segment fabric)."""
        try:
            return self.namespaces[host]
        except KeyError:
            known = ", ".join(h.name for h in self.scenario.hosts)
            raise ConfigError(f"lab {self.name} has no host {host!r} (hosts: {known})", field="HOST") from None

    def address(self, host: str) -> str:
        return self.scenario.host(host).address

    def agent_socket(self, host: str) -> Path:
        """Where the inventory expects ``host``'s responder to listen."""
        return self.state_dir / f"{host}.sock"

    def exec(self, host: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside ``host``'s namespace and wait for it (subprocess.run keywords)."""
        return subprocess.run(["ip", "netns", "exec", self.netns(host), *argv], **kwargs)

    def spawn(self, host: str, argv: list[str], log_name: str) -> int:
        """Start ``argv`` inside ``host``'s namespace, output to logs/LOG_NAME.log; teardown stops it."""
        if not LOG_NAME_RE.match(log_name):
            raise LabError(f"bad log name {log_name!r}")
        pid_file = self.pid_dir / log_name
        if pid_file.exists():
            raise LabError(f"a process named {log_name!r} already runs in lab {self.name}")
        ns = self.netns(host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{log_name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for us does not hit it; teardown stops it
            )
        pid_file.write_text(f"{proc.pid} {_start_time(proc.pid) or ''}\n")
        self._procs[log_name] = proc
        return proc.pid

    def processes(self) -> dict[str, tuple[int, bool]]:
        """log name -> (pid, alive) for everything spawned."""
        return _processes(self.pid_dir)

    def stop_process(self, log_name: str) -> None:
        f = self.pid_dir / log_name
        pid, start = _read_pid_file(f)
        if pid is not None:
            stop_pids({pid: start})
        proc = self._procs.pop(log_name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        f.unlink(missing_ok=True)

    def kill_namespace_processes(self, ns: str) -> None:
        stop_pids({pid: None for pid in pids_in_netns(ns)}, grace=0.5)

    # services from the plan
    def start_service(self, action: p.StartListener | p.StartDaemon) -> None:
        if isinstance(action, p.StartDaemon):
            if shutil.which(action.argv[0]) is None:
                note = f"{action.daemon} is not installed; a listener on tcp {list(action.fallback_tcp)} stands in\n"
                self.log_dir.mkdir(parents=True, exist_ok=True)
                (self.log_dir / f"{action.log_name}.log").write_text(note)
                action = p.StartListener(action.ns, action.host, action.fallback_tcp, (), action.log_name)
            else:
                if action.config_path:
                    Path(action.config_path).write_text(action.config_text or "")
                self.spawn(action.host, list(action.argv), action.log_name)
                return
        argv = [sys.executable, "-m", "netprobe.lab.listener"]
        argv += [a for port in action.tcp for a in ("--tcp", str(port))]
        argv += [a for port in action.udp for a in ("--udp", str(port))]
        argv += ["--ready-file", str(self._ready_file(action.log_name))]
        self.spawn(action.host, argv, action.log_name)

    def _ready_file(self, log_name: str) -> Path:
        return self.state_dir / "run" / f"{log_name}.ready"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every listener listens; a listener that died is a LabError with its log."""
        waiting = {name: proc for name, proc in self._procs.items() if "--ready-file" in proc.args}
        deadline = time.monotonic() + timeout
        while waiting:
            for name, proc in list(waiting.items()):
                if self._ready_file(name).exists():
                    del waiting[name]
                elif proc.poll() is not None:
                    log = (self.log_dir / f"{name}.log").read_text(errors="replace").strip()
                    raise LabError(f"{name} exited {proc.returncode}: {log[-300:]}")
            if waiting and time.monotonic() > deadline:
                raise LabError(f"not listening after {timeout:.0f}s: {', '.join(waiting)}")
            time.sleep(0.01)


def _processes(pid_dir: Path) -> dict[str, tuple[int, bool]]:
    out = {}
    for f in sorted(pid_dir.glob("*")) if pid_dir.is_dir() else []:
        pid, start = _read_pid_file(f)
        if pid is not None:
            now = _start_time(pid)
            out[f.name] = (pid, now is not None and (start is None or now == start))
    return out


def _read_pid_file(path: Path) -> tuple[int | None, str | None]:
    try:
        parts = path.read_text().split()
    except OSError:
        return None, None
    if not parts or not parts[0].isdigit():
        return None, None
    return int(parts[0]), (parts[1] if len(parts) > 1 else None)


# -- up ---------------------------------------------------------------------------------------

def _write_state(lab: Lab, status: str) -> None:
    state = {
        "name": lab.name,
        "scenario": lab.scenario.name,
        "source": lab.scenario.source,
        "status": status,
        "namespaces": lab.namespaces,
        "hosts": [{"name": h.name, "address": h.address, "roles": sorted(h.roles)} for h in lab.scenario.hosts],
    }
    tmp = lab.state_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(lab.state_dir / "state.json")


def plan_for(scenario: Scenario, name: str | None = None) -> tuple[str, list[p.Step]]:
    lab_name = names.check_lab_name(name or scenario.name)
    return lab_name, p.build_plan(scenario, lab_name)


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
    namespaces = {name: names.netns_name(lab_name, name) for name in
                  [s.name for s in scenario.segments] + [r.name for r in scenario.routers]
                  + [h.name for h in scenario.hosts]}
    lab = Lab(lab_name, scenario, sd, namespaces)
    sd.parent.mkdir(parents=True, exist_ok=True)
    with _signals("raise"):
        try:
            sd.mkdir()  # also the lock: a second `lab up` of this name fails here
        except FileExistsError:
            raise ConfigError(f"lab {lab_name!r} is already up", field="--name") from None
        try:
            for sub in ("logs", "pids", "run"):
                (sd / sub).mkdir()
            _write_state(lab, "starting")
            (sd / "scenario.yaml").write_text(scenario.text)
            applier = Applier(lab)
            try:
                for step in steps:
                    applier.run(step.action)
                    lab._done.append(step)
            finally:
                applier.close()
            lab.wait_ready()
            fd = os.open(lab.token_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            inv = p.inventory(scenario, lab_name)
            header = f"# netprobe lab {lab_name} (scenario {scenario.name}); made by `netprobe lab up`\n"
            lab.inventory_path.write_text(header + yaml.safe_dump(inv, sort_keys=False))
            _write_state(lab, "up")
        except BaseException:
            tear_down_lab(lab)
            raise
    return lab


# -- down -------------------------------------------------------------------------------------

def tear_down_lab(lab: Lab) -> None:
    """Undo what this process built (newest first), then sweep whatever is left of the lab."""
    with _signals("ignore"):
        applier = Applier(lab)
        try:
            for action in p.teardown(lab._done):
                applier.undo(action)
        finally:
            applier.close()
        lab._done.clear()
        for proc in lab._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=0)
        sweep(lab.name)


def sweep(lab_name: str) -> dict[str, list]:
    """Take down lab ``lab_name`` from its state directory and namespace names alone: stop its
    processes, delete its namespaces (which takes their links, rules and routes along), remove
    its state. Touches nothing that is not this lab's."""
    sd = names.state_dir(lab_name)
    killed: list[int] = []
    removed: list[str] = []
    recorded: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        recorded = list(json.loads((sd / "state.json").read_text()).get("namespaces", {}).values())
    if (sd / "pids").is_dir():
        targets = {}
        for f in (sd / "pids").iterdir():
            pid, start = _read_pid_file(f)
            if pid is not None:
                targets[pid] = start or None
        killed += stop_pids(targets)
    ours = [ns for ns in recorded + _present_namespaces() if _lab_of(ns) == lab_name]
    _remove_namespaces(list(dict.fromkeys(ours)), killed, removed)
    if sd.exists():
        shutil.rmtree(sd, ignore_errors=True)
    return {"namespaces": removed, "pids": killed}


def _present_namespaces() -> list[str]:
    return sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []


def _lab_of(ns: str) -> str | None:
    parsed = names.parse_netns(ns)
    return parsed[0] if parsed else None


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


def tear_down(name: str) -> dict[str, list]:
    """``lab down NAME``: a ConfigError when there is no such lab."""
    require_root()
    names.check_lab_name(name, field="NAME")
    sd = names.state_dir(name)
    if not sd.exists() and not any(_lab_of(ns) == name for ns in _present_namespaces()):
        raise ConfigError(f"no lab named {name!r} is up (see: netprobe lab status)", field="NAME")
    return sweep(name)


def tear_down_all() -> dict[str, dict[str, list]]:
    """``lab down --all``: every lab with a state directory, then any ``nplab-`` namespace left
    by a lab that lost its state. Other namespaces are never touched."""
    require_root()
    out = {}
    for name in lab_names():
        out[name] = sweep(name)
    stray = [ns for ns in _present_namespaces() if ns.startswith(names.PREFIX)]
    if stray:
        killed: list[int] = []
        removed: list[str] = []
        _remove_namespaces(stray, killed, removed)
        out["(no state)"] = {"namespaces": removed, "pids": killed}
    return out


@contextlib.contextmanager
def running_lab(scenario: Scenario, name: str | None = None) -> Iterator[Lab]:
    """Bring the lab up, yield it, and always take it down (error, Ctrl-C, SIGTERM included)."""
    with _signals("raise"):  # from before bring_up returns: no SIGTERM gap between up and try
        lab = bring_up(scenario, name)
        try:
            yield lab
        finally:
            tear_down_lab(lab)


# -- looking at labs that are up ----------------------------------------------------------------

def lab_names() -> list[str]:
    root = names.STATE_ROOT
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and names.LAB_NAME_RE.match(d.name))


def open_lab(name: str) -> Lab:
    """A lab brought up by another process (for `lab exec`, `lab status`, `lab run` helpers)."""
    names.check_lab_name(name, field="NAME")
    sd = names.state_dir(name)
    try:
        state = json.loads((sd / "state.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"no lab named {name!r} is up (see: netprobe lab status)", field="NAME") from None
    source = state.get("source", str(sd / "scenario.yaml"))
    try:
        scenario = parse_scenario((sd / "scenario.yaml").read_text(), source=source, default_name=state.get("scenario"))
    except (OSError, ConfigError) as exc:
        raise LabError(f"lab {name}: cannot read its scenario copy: {exc}") from None
    return Lab(name, scenario, sd, dict(state.get("namespaces", {})))


@dataclass(frozen=True)
class LabStatus:
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
    sd = names.state_dir(name)
    try:
        state = json.loads((sd / "state.json").read_text())
    except (OSError, ValueError):
        return LabStatus(name, "?", "broken (no state.json)", {}, {}, [])
    return LabStatus(
        name=name,
        scenario=state.get("scenario", "?"),
        status=state.get("status", "?"),
        namespaces={ns: netns_exists(ns) for ns in state.get("namespaces", {}).values()},
        processes=_processes(sd / "pids"),
        hosts=state.get("hosts", []),
    )


def stray_namespaces() -> list[str]:
    """``nplab-`` namespaces whose lab has no state directory (left by a killed `lab up`)."""
    labs = set(lab_names())
    return [ns for ns in _present_namespaces() if ns.startswith(names.PREFIX) and _lab_of(ns) not in labs]
