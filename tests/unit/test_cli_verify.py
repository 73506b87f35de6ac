"""`netprobe verify --result R (--expect E | --baseline B)` and `netprobe diff OLD NEW` end to end
through ``netprobe.cli.main``, on result files written with ``netprobe.core.result``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli as run
from netprobe.core.checks import CHECKS
from netprobe.core.result import SCHEMA, Cell, Evidence, HostInfo, Reach, Result, Verdict, Where

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


def test_json_format_with_expect_carries_the_mismatches_and_the_result(tmp_path, capsys):
    res = result(allowed("bgp", "n2", "n1"), blocked("bgp", "n1", "n2"))
    r = write_result(tmp_path / "r.json", res)
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", r, "--expect", e, "--format", "json"], capsys)
    assert code == 1
    data = json.loads(out)  # the whole of stdout, nothing before or after
    assert data["schema"] == "netprobe.verdict/v1"
    assert data["mode"] == "expect" and data["status"] == "fail" and data["exit_code"] == 1
    assert data["counts"]["mismatches"] == 1 and data["counts"]["failing"] == 1
    assert data["findings"] == [{
        "check": "bgp", "src": "n1", "dst": "n2", "kind": "mismatch", "failing": True, "rule": None,
        "expected": {"reach": "allowed", "where": None, "verdict": None},
        "got": {"reach": "blocked", "where": "destination-ingress", "verdict": "filtered"}}]
    assert Result.from_dict(data["result"]).cells == res.cells
    assert err == ""


def test_json_format_with_expect_that_holds(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e, "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["status"] == "ok" and data["findings"] == []


def test_fail_on_is_for_baselines(tmp_path, capsys):
    r = write_result(tmp_path / "r.json", result())
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, err = run(["verify", "--result", r, "--expect", e, "--fail-on", "changes"], capsys)
    assert code == 2 and out == "" and "--fail-on" in err


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


def test_baseline_with_a_regression_exits_1_and_lists_it(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    after = result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1"), allowed("etcd", "n2", "n1"))
    r = write_result(tmp_path / "after.json", after)
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 1
    section = out.split("Regressions since the baseline:\n", 1)[1].split("\n\n", 1)[0]
    assert section.splitlines() == [
        "  bgp n1 -> n2: was allowed (open), now blocked at destination-ingress (filtered)"]
    assert "1 regression, 0 fixes, 0 other changes (fail on regressions: 1 failing)." in out


def test_baseline_identical_exits_0(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    r = write_result(tmp_path / "after.json", result())
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 0 and "No changes since the baseline." in out


def test_baseline_ignores_rtt_and_verdict_only_changes(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result(allowed("bgp", "n1", "n2")))
    closed = Cell("bgp", "n1", "n2", Reach.ALLOWED, None, Verdict.CLOSED, 9.9, OPEN)
    r = write_result(tmp_path / "after.json", result(closed))
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 0 and "No changes since the baseline." in out


def test_baseline_a_fix_passes_unless_every_change_fails(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1")))
    r = write_result(tmp_path / "after.json", result(allowed("bgp", "n1", "n2"), allowed("bgp", "n2", "n1")))
    code, out, _ = run(["verify", "--result", r, "--baseline", b], capsys)
    assert code == 0
    assert "Fixes since the baseline:" in out and "Regressions" not in out
    code, out, _ = run(["verify", "--result", r, "--baseline", b, "--fail-on", "changes"], capsys)
    assert code == 1 and "(fail on changes: 1 failing)" in out


def test_baseline_json_format_carries_the_changes(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result())
    r = write_result(tmp_path / "after.json", result(blocked("bgp", "n1", "n2")))
    code, out, _ = run(["verify", "--result", r, "--baseline", b, "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["schema"] == "netprobe.verdict/v1" and data["mode"] == "baseline"
    kinds = {(f["check"], f["src"], f["dst"]): (f["kind"], f["failing"]) for f in data["findings"]}
    assert kinds == {("bgp", "n1", "n2"): ("regression", True), ("bgp", "n2", "n1"): ("regression", True),
                     ("etcd", "n2", "n1"): ("regression", True)}
    assert data["counts"]["regressions"] == 3 and data["result"]["schema"] == SCHEMA


def junit_counts(xml: str) -> dict[str, int]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    return {k: int(root.get(k)) for k in ("tests", "failures", "errors")}


def test_baseline_junit_identical_has_no_failures(tmp_path, capsys):
    """Blocked cells that were blocked before are no failure: failures are the failing changes."""
    same = result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1"))
    b = write_result(tmp_path / "before.json", same)
    r = write_result(tmp_path / "after.json", same)
    code, out, _ = run(["verify", "--result", r, "--baseline", b, "--format", "junit"], capsys)
    assert code == 0 and junit_counts(out)["failures"] == 0


def test_baseline_junit_failures_are_the_regressions(tmp_path, capsys):
    b = write_result(tmp_path / "before.json", result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1"),
                                                       allowed("etcd", "n2", "n1")))
    # n1->n2 fixed, n2->n1 broken, etcd gone
    r = write_result(tmp_path / "after.json", result(allowed("bgp", "n1", "n2"), blocked("bgp", "n2", "n1")))
    code, out, _ = run(["verify", "--result", r, "--baseline", b, "--format", "junit"], capsys)
    assert code == 1 and junit_counts(out)["failures"] == 2
    assert 'type="regression"' in out and 'type="fix"' not in out


def test_expect_junit_failures_are_the_mismatches(tmp_path, capsys):
    unknown = Cell("bgp", "n2", "n1", Reach.UNKNOWN, None, Verdict.ERROR, None, Evidence(sent=True))
    r = write_result(tmp_path / "r.json", result(blocked("bgp", "n1", "n2"), unknown))
    e = write(tmp_path / "e.yaml", ALL_ALLOWED)
    code, out, _ = run(["verify", "--result", r, "--expect", e, "--format", "junit"], capsys)
    assert code == 1 and junit_counts(out) == {"tests": 2, "failures": 2, "errors": 0}


def test_diff_lists_changes_and_exits_1(tmp_path, capsys):
    old = result()
    new = result(blocked("bgp", "n1", "n2", Where.NETWORK), allowed("bgp", "n2", "n1"))  # etcd n2->n1 gone
    o, n = write_result(tmp_path / "old.json", old), write_result(tmp_path / "new.json", new)
    code, out, err = run(["diff", o, n], capsys)
    assert code == 1 and err == ""
    assert out.splitlines()[:3] == [
        "Regressions:",
        "  bgp n1 -> n2: was allowed (open), now blocked at network (filtered)",
        "  etcd n2 -> n1: was allowed (open), now absent",
    ]


def test_diff_identical_exits_0(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result())
    n = write_result(tmp_path / "new.json", result())
    code, out, _ = run(["diff", o, n], capsys)
    assert code == 0 and out == "No changes.\n"


def test_diff_a_fix_exits_0_and_is_apart_from_regressions(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result(blocked("bgp", "n1", "n2")))
    n = write_result(tmp_path / "new.json", result(allowed("bgp", "n1", "n2")))
    code, out, _ = run(["diff", o, n], capsys)
    assert code == 0 and out.startswith("Fixes:\n  bgp n1 -> n2: was blocked at destination-ingress (filtered), now")
    assert run(["diff", o, n, "--fail-on", "changes"], capsys)[0] == 1


def test_diff_new_allowed_cell_is_a_change_that_passes(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result(allowed("bgp", "n1", "n2")))
    n = write_result(tmp_path / "new.json", result(allowed("bgp", "n1", "n2"), allowed("bgp", "n2", "n1")))
    code, out, _ = run(["diff", o, n], capsys)
    assert code == 0 and "Other changes:\n  bgp n2 -> n1: was absent, now allowed (open)" in out


@pytest.mark.parametrize("fmt", ["json", "markdown", "junit", "table"])
def test_diff_every_format_carries_the_same_verdict(tmp_path, capsys, fmt):
    o = write_result(tmp_path / "old.json", result(blocked("bgp", "n1", "n2"), allowed("bgp", "n2", "n1")))
    n = write_result(tmp_path / "new.json", result(allowed("bgp", "n1", "n2"), blocked("bgp", "n2", "n1")))
    code, out, _ = run(["diff", o, n, "--format", fmt], capsys)
    assert code == 1
    if fmt == "json":
        data = json.loads(out)
        assert data["mode"] == "diff" and data["counts"]["regressions"] == 1 and data["counts"]["fixes"] == 1
        assert {"old", "new"} <= set(data)
    elif fmt == "junit":
        assert junit_counts(out)["failures"] == 1
    else:
        assert ("| bgp | n2 | n1 |" if fmt == "markdown" else "bgp n2 -> n1") in out
        assert "1 regression, 1 fix, 0 other changes" in out


def test_diff_partial_run_exits_3(tmp_path, capsys):
    o = write_result(tmp_path / "old.json", result())
    n = write_result(tmp_path / "new.json", result(errors=[{"host": "n2", "message": "agent unreachable"}]))
    assert run(["diff", o, n], capsys)[0] == 3


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
