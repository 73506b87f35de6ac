"""Processes a lab starts: spawn them in a namespace, record them, stop them, reap them.

A lab's processes must be stoppable by another process (``lab down``) long after the one that
started them is gone, and pids get reused: so each one is recorded in ``pids/NAME`` as its pid
*and* the kernel's start time, and a recorded pid is only ever signalled while both still match.

Also the signal guard, because a teardown must run to its end: while a lab is up SIGTERM unwinds
like Ctrl-C, and while it comes down both are ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from netprobe.errors import LabError
from netprobe.lab import plan as p
from netprobe.lab.names import NETNS_DIR

READY_TIMEOUT = 10.0   # seconds for listeners to bind
STOP_GRACE = 2.0       # seconds between SIGTERM and SIGKILL
LOG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Terminated(KeyboardInterrupt):
    """SIGTERM while a lab is up: unwinds like Ctrl-C, so the lab is torn down."""


@contextlib.contextmanager
def signal_guard(mode: str) -> Iterator[None]:
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


# -- pids -----------------------------------------------------------------------------------

def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None: no such live process). Zombies count as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def read_pid_file(path: Path) -> tuple[int | None, str | None]:
    """(pid, start time) from a pid file; (None, None) when it is missing or unreadable, and a
    missing start time (None) means "whatever process has that pid"."""
    try:
        parts = path.read_text().split()
    except OSError:
        return None, None
    if not parts or not parts[0].isdigit():
        return None, None
    return int(parts[0]), (parts[1] if len(parts) > 1 else None)


def write_pid_file(path: Path, pid: int) -> None:
    path.write_text(f"{pid} {start_time(pid) or ''}\n")


def recorded_processes(pid_dir: Path) -> dict[str, tuple[int, bool]]:
    """log name -> (pid, alive) for every pid file in ``pid_dir``."""
    out = {}
    for f in sorted(pid_dir.glob("*")) if pid_dir.is_dir() else []:
        pid, start = read_pid_file(f)
        if pid is not None:
            now = start_time(pid)
            out[f.name] = (pid, now is not None and (start is None or now == start))
    return out


def recorded_targets(pid_dir: Path) -> dict[int, str | None]:
    """pid -> start time of every pid file in ``pid_dir``, ready for ``stop_pids``."""
    targets: dict[int, str | None] = {}
    if pid_dir.is_dir():
        for f in pid_dir.iterdir():
            pid, start = read_pid_file(f)
            if pid is not None:
                targets[pid] = start or None
    return targets


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
    live = {pid: st for pid, st in targets.items() if (cur := start_time(pid)) and (st is None or st == cur)}
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        for pid in live:
            _reap(pid)
        left = [pid for pid, st in live.items() if start_time(pid) and (st is None or start_time(pid) == st)]
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


def stop_namespace(ns: str) -> list[int]:
    """Stop everything in ``ns`` (recorded or not): a namespace with a live process outlives
    its deletion."""
    return stop_pids({pid: None for pid in pids_in_netns(ns)}, grace=0.5)


# -- one lab's processes ------------------------------------------------------------------------

class Supervisor:
    """The processes of one lab, kept under its state directory: ``pids/`` (one file each),
    ``logs/NAME.log`` (their output) and ``run/NAME.ready`` (a listener's "I listen")."""

    def __init__(self, state_dir: Path):
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"
        self.run_dir = state_dir / "run"
        self.children: dict[str, subprocess.Popen] = {}  # the ones this process started

    def spawn(self, ns: str, argv: list[str], log_name: str) -> int:
        """Start ``argv`` inside namespace ``ns``, output to logs/LOG_NAME.log."""
        if not LOG_NAME_RE.match(log_name):
            raise LabError(f"bad log name {log_name!r}")
        pid_file = self.pid_dir / log_name
        if pid_file.exists():
            raise LabError(f"a process named {log_name!r} already runs in lab {self.pid_dir.parent.name}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{log_name}.log", "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for us does not hit it; teardown stops it
            )
        write_pid_file(pid_file, proc.pid)
        self.children[log_name] = proc
        return proc.pid

    def processes(self) -> dict[str, tuple[int, bool]]:
        """log name -> (pid, alive) for everything spawned."""
        return recorded_processes(self.pid_dir)

    def stop(self, log_name: str) -> None:
        f = self.pid_dir / log_name
        pid, start = read_pid_file(f)
        if pid is not None:
            stop_pids({pid: start})
        proc = self.children.pop(log_name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        f.unlink(missing_ok=True)

    def reap_children(self) -> None:
        """Collect the exit status of children already stopped, so none is left a zombie."""
        for proc in self.children.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=0)

    def start_service(self, action: p.StartListener | p.StartDaemon) -> None:
        """A plan's listener, or its daemon -- or, when the daemon is not installed, a listener on
        the daemon's ports in its place (noted in its log), so the scenario still runs."""
        if isinstance(action, p.StartDaemon):
            if shutil.which(action.argv[0]) is None:
                note = f"{action.daemon} is not installed; a listener on tcp {list(action.fallback_tcp)} stands in\n"
                self.log_dir.mkdir(parents=True, exist_ok=True)
                (self.log_dir / f"{action.log_name}.log").write_text(note)
                action = p.StartListener(action.ns, action.host, action.fallback_tcp, (), action.log_name)
            else:
                if action.config_path:
                    Path(action.config_path).write_text(action.config_text or "")
                self.spawn(action.ns, list(action.argv), action.log_name)
                return
        argv = [sys.executable, "-m", "netprobe.lab.listener"]
        argv += [a for port in action.tcp for a in ("--tcp", str(port))]
        argv += [a for port in action.udp for a in ("--udp", str(port))]
        argv += ["--ready-file", str(self._ready_file(action.log_name))]
        self.spawn(action.ns, argv, action.log_name)

    def _ready_file(self, log_name: str) -> Path:
        return self.run_dir / f"{log_name}.ready"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every listener listens; a listener that died is a LabError with its log."""
        waiting = {name: proc for name, proc in self.children.items() if "--ready-file" in proc.args}
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
