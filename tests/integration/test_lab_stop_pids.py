"""Stopping recorded processes (no privileges, but it spawns them): a recorded pid is only ever
signalled while it is still the process that was recorded (pids get reused)."""

from __future__ import annotations

import subprocess
import time

from netprobe.lab.processes import recorded_processes, start_time, stop_pids, write_pid_file


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "30"])


def test_start_time_identifies_a_live_process():
    proc = sleeper()
    try:
        assert start_time(proc.pid) is not None
    finally:
        proc.kill()
        proc.wait()
    assert start_time(proc.pid) is None  # reaped: gone


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
    targets = {procs[0].pid: start_time(procs[0].pid), procs[1].pid: None}
    assert sorted(stop_pids(targets, grace=1.0)) == sorted(targets)
    for p in procs:
        assert p.wait(timeout=5) is not None
        assert start_time(p.pid) is None


def test_stubborn_processes_get_sigkill():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; sleep 30"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    stop_pids({proc.pid: None}, grace=0.3)
    assert time.monotonic() - started >= 0.3  # SIGTERM was ignored for the whole grace period
    assert start_time(proc.pid) is None        # then SIGKILL, and stop_pids reaped it
    proc.wait(timeout=5)


def test_a_written_pid_file_shows_the_process_alive_until_it_dies(tmp_path):
    proc = sleeper()
    try:
        write_pid_file(tmp_path / "sleeper", proc.pid)
        assert recorded_processes(tmp_path) == {"sleeper": (proc.pid, True)}
    finally:
        proc.kill()
        proc.wait()
    assert recorded_processes(tmp_path) == {"sleeper": (proc.pid, False)}
