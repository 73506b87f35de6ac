"""The CLI's side of #9 item 3: short tokens refused, --allow checked, plain tcp:// warned about.
Every case fails before any socket is opened."""

from __future__ import annotations

import pytest
from helpers import run_cli

from netprobe.agent.server import parse_listen, plain_tcp_warning


@pytest.mark.parametrize("command", [
    ["responder", "--listen", "unix:/nonexistent/a.sock"],
    ["mesh", "-i", "{inv}"],
    ["probe", "192.0.2.1"],
])
def test_a_token_under_16_bytes_is_refused_in_one_line(tmp_path, capsys, command):
    (tmp_path / "token").write_text("fifteen-bytes!!\n")
    (tmp_path / "inv.yaml").write_text("token_file: token\nhosts: [{name: a, address: 192.0.2.1}]\n")
    argv = [a.replace("{inv}", str(tmp_path / "inv.yaml")) for a in command]
    if "-i" not in argv:
        argv += ["--token-file", str(tmp_path / "token")]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert "token is 15 bytes; at least 16 are needed" in err and err.count("\n") == 1


def test_a_short_token_from_the_environment_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETPROBE_TOKEN", "short")
    code, _, err = run_cli(["responder", "--listen", "unix:/nonexistent/a.sock"], capsys)
    assert code == 2 and "NETPROBE_TOKEN is 5 bytes" in err


@pytest.mark.parametrize("allow", ["10.0.0.1/8", "2001:db8::1/64", "node-network"])
def test_allow_takes_networks_only(tmp_path, capsys, allow):
    (tmp_path / "token").write_text("x" * 32)
    code, _, err = run_cli(["responder", "--listen", "unix:/nonexistent/a.sock", "--token-file",
                            str(tmp_path / "token"), "--allow", allow], capsys)
    assert code == 2 and "--allow" in err and err.count("\n") == 1


def test_allow_takes_ipv4_and_ipv6_networks():
    from netprobe.agent.server import parse_allow

    assert [str(n) for n in parse_allow(["198.51.100.0/24", "2001:db8:0:1::/64"])] == ["198.51.100.0/24",
                                                                                       "2001:db8:0:1::/64"]


@pytest.mark.parametrize("listen, warned", [
    ("tcp://0.0.0.0:7879", True), ("tcp://192.0.2.11:7879", True), ("tcp://127.0.0.1:7879", False),
    ("tcp://[::1]:7879", False), ("https://192.0.2.11:7879", False), ("unix:/run/netprobe.sock", False),
])
def test_plain_tcp_off_loopback_is_warned_about(listen, warned):
    warning = plain_tcp_warning(parse_listen(listen))
    assert (warning is not None) == warned
    if warned:
        assert "readable by anyone on the path" in warning and "https://" in warning


# #9 item 5: the three CLI inputs the issue names, through the commands, as one line and exit 2
INVENTORY = "token_file: token\nhosts:\n  - {name: a, address: 192.0.2.1, agent: 'unix:/nonexistent'}\n" \
            "  - {name: b, address: 192.0.2.2, agent: 'unix:/nonexistent'}\n"


@pytest.mark.parametrize("files, command, words", [
    ({"inv.yaml": INVENTORY + "checks:\n  - {id: x, proto: tcp, port: 1, to_role: [etcd]}\n"},
     ["mesh", "-i", "inv.yaml"], "checks[0].to_role: unknown role ['etcd']"),
    ({"inv.yaml": INVENTORY, "exp.yaml": "default: allowed\nrules:\n  - {check: bgp, 1: a, from: a, to: b, reach: blocked}\n"},
     ["verify", "-i", "inv.yaml", "--expect", "exp.yaml"], "rules[0].1: unknown key 1"),
    ({"inv.yaml": INVENTORY, "exp.yaml": "default: allowed\n7: x\ntrue: y\nrules: []\n"},
     ["verify", "-i", "inv.yaml", "--expect", "exp.yaml"], "unknown key"),
    ({"sc.yaml": "name: sc1\nprofile: [calico]\nsegments: []\nhosts: []\n"},
     ["lab", "firewall", "sc.yaml", "--host", "a", "--dry-run"], "profile: unknown profile ['calico']"),
    ({"sc.yaml": "name: sc1\nprofile: [calico]\nsegments: []\nhosts: []\n"},
     ["lab", "up", "sc.yaml", "--dry-run"], "profile: unknown profile ['calico']"),
])
def test_the_issues_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, files, command, words):
    (tmp_path / "token").write_text("t" * 32)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(command, capsys)
    assert code == 2, err
    assert words in err and err.count("\n") == 1, err
