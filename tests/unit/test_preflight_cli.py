"""`netprobe preflight` end to end on fixture trees, bad input (exit 2, one line), --inventory
through an injected fetcher, and the renderers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import run_cli as run
from netprobe.commands.preflight import make_command
from netprobe.preflight.model import Item, Report, Status
from netprobe.preflight.render import (column_label, render_hosts_json, render_hosts_table, render_report_json,
                                       render_report_table, summary, to_text)

DATA = Path(__file__).resolve().parent.parent / "data" / "preflight" / "ubuntu-node"



def test_json_on_the_checked_in_tree(capsys):
    code, out, err = run(["preflight", "--root", str(DATA), "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 1 and data["status"] == "fail" and err == ""
    assert {i["id"]: i["status"] for i in data["items"]}["module:ipt_rpfilter"] == "fail"
    assert Report.from_dict(data).exit_code == 1


def test_table_on_the_checked_in_tree(capsys):
    code, out, _ = run(["preflight", "--root", str(DATA)], capsys)
    assert code == 1
    assert "preflight node1" in out and "module ipt_rpfilter" in out and "preflight FAIL" in out


def test_options_reach_the_rules(capsys):
    # a pool away from the host's 192.168.10.0/24 (the fixture) and a service range inside the pool
    code, out, _ = run(["preflight", "--root", str(DATA), "--format", "json", "--profile", "calico-noipip",
                        "--pool-cidr", "172.16.0.0/16", "--service-cidr", "172.16.200.0/24"], capsys)
    items = {i["id"]: i for i in json.loads(out)["items"]}
    assert items["pool:172.16.0.0/16"]["status"] == "ok"
    assert items["service-range"]["status"] == "fail"
    assert "module:ipip" not in items


def test_exit_0_when_nothing_fails(tmp_path, capsys):
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("5.10.0\n")
    code, out, _ = run(["preflight", "--root", str(tmp_path), "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["counts"]["fail"] == 0 and data["counts"]["unknown"] > 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--pool-cidr", "10.0.0.0/33"], "--pool-cidr"),
        (["--pool-cidr", "10.0.0.1/8"], "did you mean 10.0.0.0/8"),
        (["--service-cidr", "nope"], "--service-cidr"),
        (["--profile", "weave"], "unknown profile"),
        (["--root", "/nonexistent/netprobe"], "--root"),
        (["--inventory", "inv.yaml", "--root", "/tmp"], "--root"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    code, out, err = run(["preflight", *args], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err


def test_bad_input_in_a_real_process():
    proc = subprocess.run([sys.executable, "-m", "netprobe", "preflight", "--pool-cidr", "300.0.0.0/8"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("netprobe: --pool-cidr:")


def test_inventory_that_does_not_exist_is_one_line_exit_2(capsys, tmp_path):
    missing = tmp_path / "inv.yaml"
    code, _, err = run(["preflight", "--inventory", str(missing)], capsys)
    assert code == 2 and str(missing) in err and len(err.strip().splitlines()) == 1


def report(host, *statuses):
    return Report(items=tuple(Item(f"module:m{i}", "kernel modules", f"m{i}", s, f"evidence {i}")
                              for i, s in enumerate(statuses)), host=host)


def test_inventory_with_an_injected_fetcher():
    calls = []

    def fetch(inventory, **options):
        calls.append((inventory, options))
        return {"node2": report("node2", Status.OK, Status.FAIL), "node1": report("node1", Status.OK, Status.OK)}

    cmd = make_command(fetch)
    result = CliRunner().invoke(cmd, ["--inventory", "inv.yaml", "--format", "json", "--pool-cidr", "10.10.0.0/16"],
                                standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == 1
    assert calls == [("inv.yaml", {"pool_cidrs": ["10.10.0.0/16"], "service_cidr": None, "profile": "calico",
                                   "requirements": "current", "dataplane": "iptables", "wireguard": False,
                                   "vxlan_port": None})]
    data = json.loads(result.output)
    assert data["status"] == "fail" and list(data["hosts"]) == ["node1", "node2"]

    ok = make_command(lambda inv, **_: {"node1": report("node1", Status.OK, Status.WARN)})
    table = CliRunner().invoke(ok, ["--inventory", "inv.yaml"], standalone_mode=False)
    assert table.return_value == 0 and "node1" in table.output


def test_fetcher_given_as_import_string(monkeypatch):
    """"module:attr" is imported only when --inventory runs, so --help stays instant."""
    import types

    module = types.ModuleType("fake_agents")
    module.fetch_reports = lambda inventory, **options: {"a": report("a", Status.OK)}
    monkeypatch.setitem(sys.modules, "fake_agents", module)
    cmd = make_command("fake_agents:fetch_reports")
    result = CliRunner().invoke(cmd, ["--inventory", "x", "--format", "json"], standalone_mode=False)
    assert result.exception is None and result.return_value == 0
    assert list(json.loads(result.output)["hosts"]) == ["a"]


def test_render_report_table_and_json():
    rep = report("node1", Status.OK, Status.FAIL, Status.WARN, Status.UNKNOWN)
    text = to_text(render_report_table(rep))
    for word in ("✓ ok", "✗ fail", "! warn", "? unknown", "evidence 1", "preflight FAIL"):
        assert word in text
    assert summary(rep) == "preflight FAIL: 1 ok, 1 fail, 1 warn, 1 unknown"
    assert summary(report("n", Status.OK, Status.UNKNOWN)) == "preflight OK: 1 ok, 1 unknown"
    assert json.loads(render_report_json(rep))["items"][1]["status"] == "fail"


def test_render_hosts_table():
    reports = {"node2": report("node2", Status.OK, Status.FAIL),
               "node1": Report(items=(Item("module:m0", "k", "m0", Status.WARN, "e"),), host="node1")}
    text = to_text(render_hosts_table(reports), width=100)
    lines = text.splitlines()
    header = next(line for line in lines if "host" in line)
    assert "m0" in header and "m1" in header
    node1 = next(line for line in lines if "node1" in line)
    node2 = next(line for line in lines if "node2" in line)
    assert lines.index(node1) < lines.index(node2)
    assert "!" in node1 and "-" in node1  # warned on m0; m1 not checked there
    assert "✓" in node2 and "✗" in node2 and "m1" in node2.split("✗", 1)[1]
    data = json.loads(render_hosts_json(reports))
    assert data["schema"] == "netprobe.preflight-hosts/v1" and data["status"] == "fail"


def test_column_labels():
    assert column_label("module:nf_conntrack_netlink") == "ct_netlink"
    assert column_label("port:179/tcp") == "179/tcp"
    assert column_label("pool:192.168.0.0/16") == "192.168.0.0/16"
    assert column_label("arch") == "arch"


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from netprobe.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['preflight', '--help']); assert r.exit_code == 0, r.output; "
            "print(','.join(m for m in ('rich', 'pyroute2', 'yaml', 'netprobe.preflight.rules') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def _fleet(n_bad: int) -> dict[str, Report]:
    """Real-sized reports: every requirement of the calico profile, some failing."""
    from dataclasses import replace

    from netprobe.preflight.facts import Facts
    from netprobe.preflight.rules import evaluate

    base = evaluate(Facts())
    out = {}
    for i, host in enumerate(["cp1", "ip-198-18-5-99.eu-west-1.compute.internal", "node2"]):
        items = tuple(replace(item, status=Status.FAIL if (i and k < n_bad) else Status.OK,
                              evidence=f"evidence of {item.id} on {host}")
                      for k, item in enumerate(base.items))
        out[host] = replace(base, items=items, host=host)
    return out


@pytest.mark.parametrize("n_bad", [0, 2, 19])
def test_hosts_are_readable_at_80_columns(n_bad):
    from netprobe.preflight.render import render_hosts

    reports = _fleet(n_bad)
    text = to_text(render_hosts(reports, width=80), width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    for host in reports:  # every host whole on one line: never folded
        assert any(host in line for line in lines), text
    if n_bad == 2:  # a column per requirement that is not ok somewhere, the rest counted
        header = next(line for line in lines if " host " in line)
        assert [c.strip() for c in header.strip("┃ ").split("┃")][1:] == ["arch", "kernel"]
        total = len(next(iter(reports.values())).items)
        assert f"{total - 2} more requirements are ok on every host" in " ".join(text.split())
    if n_bad == 19:  # too many to be columns: a per-host list of what fails
        assert "✗ ipip:" in text and "evidence of kernel on node2" in " ".join(text.split())


def test_a_fleet_that_fits_keeps_the_full_matrix():
    from netprobe.preflight.render import render_hosts

    reports = {"node2": report("node2", Status.OK, Status.FAIL)}
    assert render_hosts(reports, width=80).__class__.__name__ == "Table"
    assert "to look at" in to_text(render_hosts(reports, width=80), width=80)
