"""Pid files, read without spawning anything: what ``lab down`` and ``lab status`` trust."""

from __future__ import annotations

import os

from netprobe.lab.processes import (
    read_pid_file, recorded_processes, recorded_targets, start_time, stop_pids, write_pid_file,
)


def test_pid_files(tmp_path):
    f = tmp_path / "x"
    f.write_text("123 456\n")
    assert read_pid_file(f) == (123, "456")
    f.write_text("123\n")
    assert read_pid_file(f) == (123, None)
    f.write_text("123 \n")  # what write_pid_file leaves when the start time was unreadable
    assert read_pid_file(f) == (123, None)
    for garbage in ("garbage", "", "-5 1", "12a 1"):
        f.write_text(garbage)
        assert read_pid_file(f) == (None, None), garbage
    assert read_pid_file(tmp_path / "missing") == (None, None)


def test_write_pid_file_records_the_start_time(tmp_path):
    write_pid_file(tmp_path / "me", os.getpid())
    assert read_pid_file(tmp_path / "me") == (os.getpid(), start_time(os.getpid()))


def test_recorded_processes_match_pid_and_start_time(tmp_path):
    me, mine = os.getpid(), start_time(os.getpid())
    (tmp_path / "alive").write_text(f"{me} {mine}\n")
    (tmp_path / "any-start").write_text(f"{me}\n")
    (tmp_path / "recycled").write_text(f"{me} 1\n")       # same pid, another process: dead to us
    (tmp_path / "broken").write_text("nonsense\n")        # left out
    assert recorded_processes(tmp_path) == {
        "alive": (me, True), "any-start": (me, True), "recycled": (me, False),
    }
    assert recorded_processes(tmp_path / "missing") == {}


def test_recorded_targets_feed_stop_pids(tmp_path):
    (tmp_path / "a").write_text("123 456\n")
    (tmp_path / "b").write_text("789 \n")
    (tmp_path / "c").write_text("junk")
    assert recorded_targets(tmp_path) == {123: "456", 789: None}
    assert recorded_targets(tmp_path / "missing") == {}


def test_stop_pids_leaves_a_recycled_pid_alone():
    assert stop_pids({os.getpid(): "1"}, grace=0) == []  # our own pid, another start time
