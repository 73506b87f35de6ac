"""`netprobe --help` and every subcommand's --help: instant, and free of heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netprobe.cli import COMMANDS

PROBE = """
import sys
from netprobe.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("scapy", "trio", "pyroute2", "httpx", "hypercorn", "starlette", "rich")
               if m in sys.modules)
print(code, ",".join(heavy))
"""


def run_help(argv: list[str]) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=30)
    code, _, heavy = proc.stdout.strip().splitlines()[-1].partition(" ")
    return code, heavy


def test_top_level_help_imports_nothing_heavy():
    code, heavy = run_help(["--help"])
    assert code == "0"
    assert heavy == ""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_imports_nothing_heavy(command):
    code, heavy = run_help([command, "--help"])
    assert code == "0"
    assert "scapy" not in heavy and "trio" not in heavy and "pyroute2" not in heavy, heavy
