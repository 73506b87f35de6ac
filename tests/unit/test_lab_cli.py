"""`netprobe lab` commands that need no privileges: help, dry runs, usage and input errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

NETPROBE = [sys.executable, "-m", "netprobe"]


def run(*args, **kw):
    return subprocess.run([*NETPROBE, *args], capture_output=True, text=True, timeout=60, **kw)


def test_help_lists_the_subcommands_without_heavy_imports():
    proc = run("lab", "--help")
    assert proc.returncode == 0
    for sub in ("up", "status", "exec", "down", "firewall"):
        assert f"  {sub}" in proc.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, netprobe.commands.lab; print(sorted(m for m in ('pyroute2', 'yaml', "
         "'netprobe.lab.runtime', 'netprobe.lab.state', 'netprobe.lab.processes') "
         "if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_up_dry_run_prints_the_plan():
    proc = run("lab", "up", "demo", "--name", "dry", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("# lab dry: ") and "ip netns add nplab-dry.lan" in lines
    assert "[nplab-dry.node2] nft -f - < nft text" in lines


def test_firewall_dry_run_prints_the_hosts_rules():
    proc = run("lab", "firewall", "demo", "--host", "node2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# node2 from ") and "$ nft -f - <<'EOF'" in proc.stdout
    assert "elements = { 198.18.0.10 }" in proc.stdout


def test_firewall_of_a_host_without_rules():
    proc = run("lab", "firewall", "two-racks-router", "--host", "node2", "--dry-run")
    assert proc.returncode == 0 and "no firewall" in proc.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["lab", "up", "no-such-scenario", "--dry-run"], "no-such-scenario: no such scenario file or name"),
        (["lab", "up", "demo", "--name", "Bad.Name", "--dry-run"], "--name: lab name must be"),
        (["lab", "firewall", "demo", "--host", "nodeX", "--dry-run"], "--host: no host or router named 'nodeX'"),
        (["lab", "down"], "give a lab NAME or --all"),
        (["lab", "down", "x", "--all"], "give a lab NAME or --all"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, words):
    proc = run(*args)
    assert proc.returncode == 2
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_broken_scenario_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  - {name: a, roles: [master]}\n")
    proc = run("lab", "up", str(bad), "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"netprobe: {bad}: hosts[0].roles[0]: unknown role 'master' " \
                                  "(known: apiserver, etcd, node, typha)"


def test_down_of_a_lab_that_is_down_says_so_and_exits_0():
    proc = run("lab", "down", "hb-never-up")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "lab hb-never-up is already down (nothing to do)\n"


def test_list_names_every_scenario_and_what_it_teaches():
    from netprobe.lab.spec import available_scenarios

    proc = run("lab", "list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if not line.startswith(" ")]
    assert names == sorted(available_scenarios())
    flat = " ".join(proc.stdout.split())
    assert "demo the scenario behind" in flat and "teaches: a BGP peer list in a host firewall goes stale." in flat
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_header_summary():
    from netprobe.lab.catalog import header_summary

    text = "# x: a title.\n#\n# What it teaches: one. two\n# three.\n#\n# more\nname: x\n"
    assert header_summary(text, "x") == ("a title.", "one. two three.")
