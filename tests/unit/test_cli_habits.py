"""The habits users expect of a CLI: --color auto|always|never with NO_COLOR, -q/-v anywhere,
shell completion and the man page from the click commands."""

from __future__ import annotations

import io

import click
import pytest

from helpers import cell, result, run_cli
from netprobe.commands.ui import Ui


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(("color", "no_color", "tty", "on"), [
    ("auto", "", True, True), ("auto", "1", True, False), ("auto", "", False, False),
    ("always", "1", False, True), ("never", "", True, False),
])
def test_use_color(monkeypatch, color, no_color, tty, on):
    monkeypatch.setenv("NO_COLOR", no_color)
    assert Ui(color=color).use_color(Tty() if tty else io.StringIO()) is on


def _saved(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(result(cell(reach="blocked", where="destination-ingress"), cell(src="b", dst="a")).to_json())
    expect = tmp_path / "e.yaml"
    expect.write_text("default: allowed\n")
    return ["--result", str(path), "--expect", str(expect)]


@pytest.mark.parametrize("where", ["before", "after"])
def test_color_always_colours_even_a_pipe_and_beats_no_color(tmp_path, capsys, monkeypatch, where):
    monkeypatch.setenv("NO_COLOR", "1")
    argv = ["--color", "always", "verify", *_saved(tmp_path)] if where == "before" else \
        ["verify", *_saved(tmp_path), "--color", "always"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 1 and "\x1b[" in out


def test_color_never_and_a_pipe_have_no_escapes(tmp_path, capsys):
    assert "\x1b[" not in run_cli(["verify", *_saved(tmp_path)], capsys)[1]
    assert "\x1b[" not in run_cli(["verify", *_saved(tmp_path), "--color", "never"], capsys)[1]


def test_quiet_and_verbose_are_accepted_everywhere(tmp_path, capsys):
    for argv in (["-q", "verify", *_saved(tmp_path)], ["verify", "-v", *_saved(tmp_path)],
                 ["lab", "-q", "list"], ["lab", "list", "-q"], ["diff", "--help"]):
        code, out, err = run_cli(argv, capsys)
        assert code in (0, 1), (argv, err)


def test_quiet_silences_info_but_not_errors(capsys):
    from netprobe.commands import ui

    @click.command()
    def cmd():
        ui.info("chatter")
        ui.detail("details")
        click.echo("error line", err=True)

    ui.add_options(cmd)
    for args, chatter, details in ((["-q"], False, False), ([], True, False), (["-v"], True, True)):
        with pytest.raises(SystemExit):
            cmd.main(args, standalone_mode=True)
        err = capsys.readouterr().err
        assert ("chatter" in err) is chatter and ("details" in err) is details and "error line" in err


def _manpage(capsys) -> str:
    code, out, _ = run_cli(["man"], capsys)
    assert code == 0
    return out


def test_man_page_documents_every_command_and_option(capsys):
    from netprobe.cli import cli

    page = _manpage(capsys)
    ctx = click.Context(cli, info_name="netprobe")
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert f'.SH "NETPROBE {name.upper()}"' in page
        for param in cmd.params:
            if isinstance(param, click.Option) and "--color" not in param.opts:
                assert param.opts[-1].replace("-", "\\-") in page, (name, param.opts)
    assert '.SH "NETPROBE LAB LIST"' in page and ".SH \"SHELL COMPLETION\"" in page
    assert "man" not in cli.list_commands(ctx)  # hidden from --help


def test_committed_man_page_is_up_to_date(capsys):
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "docs" / "netprobe.1"
    assert committed.read_text(encoding="utf-8") == _manpage(capsys), "run `make man`"


def test_shell_completion_completes_commands_and_options():
    import os
    import subprocess
    import sys

    env = {**os.environ, "_NETPROBE_COMPLETE": "bash_complete", "COMP_WORDS": "netprobe diff --fa", "COMP_CWORD": "2"}
    proc = subprocess.run([sys.executable, "-m", "netprobe"], env=env, capture_output=True, text=True, timeout=30)
    assert "--fail-on" in proc.stdout
