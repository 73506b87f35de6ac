"""`netprobe verify --result R (--expect E | --baseline B)` and `netprobe diff OLD NEW` end to end
through ``netprobe.cli.main``, on result files written with ``netprobe.core.result``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli as run
from netprobe.core.checks import CHECKS
from netprobe.core.result import SCHEMA, Cell, Evidence, HostInfo, Reach, Result, Verdict, Where, diff

HOSTS = [HostInfo("n1", "192.0.2.11", ("node", "etcd")), HostInfo("n2", "192.0.2.12", ("node",))]
OPEN = Evidence(reply=None, arrived=True, accepted=True, answered=True, reply_arrived=True, reply_accepted=True)
DROPPED = Evidence(arrived=True, accepted=False, answered=False)


def allowed(check: str, src: str, dst: str) -> Cell:
    return Cell(check, src, dst, Reach.ALLOWED, None, Verdict.OPEN, 0.4, OPEN)


def blocked(check: str, src: str, dst: str, where: Where = Where.DESTINATION_INGRESS) -> Cell:
    return Cell(check, src, dst, Reach.BLOCKED, where, Verdict.FILTERED, None, DROPPED)


def result(*cells: Cell, errors: list[dict] | None = None) -> Result:
    cells = cells or (allowed("bgp", "n1", "n2"), allowed("bgp", "n2", "n1"), allowed("etcd", "n2", "n1"))
    return Result(list(cells), hosts=list(HOSTS), checks=[CHECKS[c].to_dict() for c in ("bgp", "etcd")],
                  profile="calico", started="2024-01-01T00:00:00Z", finished="2024-01-01T00:00:02Z",
                  errors=errors or [], netprobe_version="test")


def write_result(path: Path, res: Result) -> str:
    path.write_text(res.to_json())
    return str(path)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)



ALL_ALLOWED = "default: allowed\n"
ETCD_BLOCKED = """\
default: allowed
rules:
  - {check: etcd, from: "*", to: "role:etcd", reach: blocked, where: destination-ingress}
"""


# ------------------------------------------------------------------ --expect


def test_expectation_that_holds_exits_0(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 0, err
    assert "Every cell as expected." in out
    assert err == ""


def test_expectation_with_rules_that_holds_exits_0(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(allowed("bgp", "n1", "n2"), blocked("etcd", "n2", "n1")))
    e = write(tmp_path / "e.yaml", ETCD_BLOCKED)
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 0 and "Every cell as expected." in out


def test_expectation_that_fails_exits_1_and_names_the_cell(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(allowed("bgp", "n2", "n1"), blocked("bgp", "n1", "n2")))
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 1
    assert "bgp n1 -> n2: expected allowed, got blocked at destination-ingress (filtered)" in out
    assert "bgp n2 -> n1" not in out.split("mismatch", 1)[-1]  # the allowed cell is not listed
    assert "Every cell as expected." not in out


def test_expected_blocked_but_allowed_is_a_mismatch(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(allowed("etcd", "n2", "n1")))
    e = write(tmp_path / "e.yaml", ETCD_BLOCKED)
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 1
    assert "etcd n2 -> n1: expected blocked at destination-ingress, got allowed (open)" in out


def test_blocked_somewhere_else_than_expected_is_a_mismatch(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(blocked("etcd", "n2", "n1", Where.NETWORK)))
    e = write(tmp_path / "e.yaml", ETCD_BLOCKED)
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 1
    assert "etcd n2 -> n1: expected blocked at destination-ingress, got blocked at network" in out


def test_unknown_cell_never_satisfies_an_expectation(tmp_path, capsys):
    unknown = Cell("bgp", "n1", "n2", Reach.UNKNOWN, None, Verdict.ERROR, None, Evidence(sent=True))
    r = write_result(tmp_path / "r.json", result(unknown))
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 1 and "bgp n1 -> n2: expected allowed, got unknown" in out


def test_json_format_with_expect_prints_json_only(tmp_path, capsys):
    res = result(allowed("bgp", "n2", "n1"), blocked("bgp", "n1", "n2"))
    r = write_result(tmp_path / "r.json", res)
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", r, "--expect", e, "--format", "json"], capsys)
    assert code == 1
    data = json.loads(out)  # the whole of stdout, nothing before or after
    assert data["schema"] == SCHEMA
    assert Result.from_dict(data).cells == res.cells
    assert err == ""


def test_json_format_with_expect_that_holds(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e, "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["schema"] == SCHEMA


def test_markdown_format_with_expect_lists_the_mismatch(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(blocked("bgp", "n1", "n2")))
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e, "--format", "markdown"], capsys)
    assert code == 1 and "bgp n1 -> n2: expected allowed, got blocked at destination-ingress" in out


def test_scenario_file_with_an_expect_block_works_as_expectation(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(allowed("etcd", "n2", "n1")))
    e = write(tmp_path / "scenario.yaml", "name: demo\nexpect:\n  default: blocked\n")
    code, out, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 1 and "etcd n2 -> n1: expected blocked, got allowed (open)" in out


def test_expectation_holds_but_the_run_was_partial_exits_3(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result(errors=[{"host": "n3", "message": "agent unreachable"}]))
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, _, _ = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 3


def test_bad_expectation_file_exits_2_naming_file_and_field(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", "default: allowed\nrules:\n  - {check: bgp, reach: maybe}\n")
    code, out, err = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and e in err and "rules[0].reach" in err


def test_expectation_naming_a_host_the_result_lacks_exits_2(tmp_path, capsys):
    """A typo in a host name would otherwise select nothing and pass silently."""
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", "rules:\n  - {check: bgp, from: n1, to: nn2, reach: blocked}\n")
    code, out, err = run(["verify", "--result", r, "--expect", e], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and e in err and "rules[0].to" in err and "nn2" in err


# ------------------------------------------------------------------ --baseline and diff


def test_baseline_with_a_changed_cell_exits_1_and_lists_it(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    after = result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1"), allowed("etcd", "n2", "n1"))
    r = write_result(tmp_path / "after.json", after)
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 1
    assert "1 cell changed:" in out
    row = next(line for line in out.splitlines() if "n1 -> n2" in line and "allowed (open)" in line)
    assert row.split()[0] == "bgp"
    assert row.index("allowed (open)") < row.index("blocked at destination-ingress (filtered)")
    assert "n2 -> n1" not in out.split("cell changed:", 1)[1]


def test_baseline_identical_exits_0(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    r = write_result(tmp_path / "after.json", result())
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 0 and "No changes." in out


def test_baseline_ignores_rtt_and_verdict_only_changes(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result(allowed("bgp", "n1", "n2")))
    closed = Cell("bgp", "n1", "n2", Reach.ALLOWED, None, Verdict.CLOSED, 9.9, OPEN)
    r = write_result(tmp_path / "after.json", result(closed))
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 0 and "No changes." in out


def test_baseline_json_format_prints_json_only(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    r = write_result(tmp_path / "after.json", result(blocked("bgp", "n1", "n2")))
    code, out, _ = run(["verify", "--result", r, "--baseline", b, "--format", "json"], capsys)
    assert code == 1 and json.loads(out)["schema"] == SCHEMA


def test_diff_lists_changes_and_exits_1(tmp_path, capsys):
    old = result()
    new = result(blocked("bgp", "n1", "n2", Where.NETWORK), allowed("bgp", "n2", "n1"))  # etcd n2->n1 gone
    o, n = write_result(tmp_path / "old.json", old), write_result(tmp_path / "new.json", new)
    code, out, err = run(["diff", o, n], capsys)
    assert code == 1 and err == ""
    assert out.startswith(f"{len(diff(old, new))} cells changed:")
    assert len(diff(old, new)) == 2
    lines = out.splitlines()
    bgp = next(line for line in lines if line.split()[:1] == ["bgp"])
    assert "n1 -> n2" in bgp and bgp.rstrip().endswith("blocked at network (filtered)")
    etcd = next(line for line in lines if line.split()[:1] == ["etcd"])
    assert "n2 -> n1" in etcd and etcd.rstrip().endswith("absent")


def test_diff_identical_exits_0(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result())
    n = write_result(tmp_path / "new.json", result())
    code, out, _ = run(["diff", o, n], capsys)
    assert code == 0 and out == "No changes.\n"


def test_diff_new_cell_is_a_change(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result(allowed("bgp", "n1", "n2")))
    n = write_result(tmp_path / "new.json", result(allowed("bgp", "n1", "n2"), allowed("bgp", "n2", "n1")))
    code, out, _ = run(["diff", o, n], capsys)
    assert code == 1 and "1 cell changed:" in out
    row = next(line for line in out.splitlines() if "n2 -> n1" in line)
    assert row.index("absent") < row.index("allowed (open)")


# ------------------------------------------------------------------ bad input: exit 2, one line


def bad_schema(tmp_path: Path, name: str = "bad.json") -> str:
    data = json.loads(result().to_json())
    data["schema"] = "netprobe.result/v0"
    return write(tmp_path / name, json.dumps(data))


def assert_one_line_naming(err: str, path: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith("netprobe: ") and path in err


@pytest.mark.parametrize("role", ["result", "baseline"])
def test_wrong_schema_exits_2_naming_the_file(tmp_path, capsys, role):
    bad = bad_schema(tmp_path)
    good = write_result(tmp_path / "good.json", result())
    argv = ["verify", "--result", bad, "--baseline", good] if role == "result" else \
        ["verify", "--result", good, "--baseline", bad]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, bad)
    assert "schema" in err and "netprobe.result/v0" in err


def test_wrong_schema_with_expect_exits_2(tmp_path, capsys):
    bad = bad_schema(tmp_path)
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", bad, "--expect", e], capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, bad)


@pytest.mark.parametrize("which", ["old", "new"])
def test_diff_wrong_schema_exits_2_naming_the_file(tmp_path, capsys, which):
    bad = bad_schema(tmp_path)
    good = write_result(tmp_path / "good.json", result())
    code, out, err = run(["diff", bad, good] if which == "old" else ["diff", good, bad], capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, bad)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"schema": "netprobe.result/v1", "cells": 3}',
                                  '{"schema": "netprobe.result/v1", "cells": [{"check": "bgp"}]}'])
def test_malformed_result_file_exits_2_naming_the_file(tmp_path, capsys, text):
    bad = write(tmp_path / "bad.json", text)
    good = write_result(tmp_path / "good.json", result())
    code, out, err = run(["diff", good, bad], capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, bad)


def test_missing_result_file_exits_2_naming_it(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", missing, "--expect", e], capsys)
    assert code == 2 and out == ""
    assert_one_line_naming(err, missing)


def test_neither_expect_nor_baseline_exits_2(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    code, out, err = run(["verify", "--result", r], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--expect" in err and "--baseline" in err


def test_both_expect_and_baseline_exits_2(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", r, "--expect", e, "--baseline", r], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--expect" in err and "--baseline" in err


def test_no_result_and_no_inventory_exits_2(tmp_path, capsys):
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--expect", e], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--inventory" in err and "--result" in err


def test_diff_needs_two_files(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result())
    code, out, _ = run(["diff", o], capsys)
    assert code == 2 and out == ""


def test_a_bad_expectation_is_refused_before_any_agent_is_asked(tmp_path, capsys):
    # the agents' sockets don't exist: had verify run the mesh, it would report them (exit 3)
    inventory = write(tmp_path / "inventory.yaml",
                      "hosts:\n"
                      f"  - {{name: n1, address: 192.0.2.1, agent: 'unix:{tmp_path}/n1.sock'}}\n"
                      f"  - {{name: n2, address: 192.0.2.2, agent: 'unix:{tmp_path}/n2.sock'}}\n")
    expect = write(tmp_path / "expect.yaml", "default: allowed\nrules:\n  - {check: bgp, from: n1, to: nX, reach: blocked}\n")
    code, out, err = run(["verify", "--inventory", inventory, "--expect", expect], capsys)
    assert code == 2, err
    assert expect in err and "nX" in err
    assert len(err.strip().splitlines()) == 1
