"""Process handling of the lab runtime that needs no privileges: a recorded pid is only ever
signalled while it is still the process that was recorded (pids get reused)."""

from __future__ import annotations

import subprocess
import time

from netprobe.lab.runtime import _read_pid_file, _start_time, stop_pids


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"])


def test_start_time_identifies_a_live_process():
    proc = sleeper()
    try:
        assert _start_time(proc.pid) is not None
    finally:
        proc.kill()
        proc.wait()
    assert _start_time(proc.pid) is None  # reaped: gone


def test_a_pid_with_another_start_time_is_left_alone():
    proc = sleeper()
    try:
        assert stop_pids({proc.pid: "1"}, grace=0.1) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_stop_terminates_and_reaps():
    procs = [sleeper(), sleeper()]
    targets = {procs[0].pid: _start_time(procs[0].pid), procs[1].pid: None}
    assert sorted(stop_pids(targets, grace=1.0)) == sorted(targets)
    for p in procs:
        assert p.wait(timeout=5) is not None
        assert _start_time(p.pid) is None


def test_stubborn_processes_get_sigkill():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; sleep 30"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    stop_pids({proc.pid: None}, grace=0.3)
    assert time.monotonic() - started >= 0.3  # SIGTERM was ignored for the whole grace period
    assert _start_time(proc.pid) is None        # then SIGKILL, and stop_pids reaped it
    proc.wait(timeout=5)


def test_pid_files(tmp_path):
    f = tmp_path / "x"
    f.write_text("123 456\n")
    assert _read_pid_file(f) == (123, "456")
    f.write_text("123\n")
    assert _read_pid_file(f) == (123, None)
    f.write_text("garbage")
    assert _read_pid_file(f) == (None, None)
    assert _read_pid_file(tmp_path / "missing") == (None, None)


def test_lab_commands_need_root(monkeypatch):
    import pytest

    from netprobe.errors import PrivilegeError
    from netprobe.lab import runtime
    from netprobe.lab.spec import load_scenario

    monkeypatch.setattr(runtime.os, "geteuid", lambda: 1000)
    with pytest.raises(PrivilegeError, match="needs root") as info:
        runtime.bring_up(load_scenario("demo"), "x")
    assert info.value.exit_code == 2
    for call in (lambda: runtime.tear_down("x"), runtime.tear_down_all):
        with pytest.raises(PrivilegeError):
            call()
