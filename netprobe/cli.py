"""The `netprobe` command: a thin click shell.

Subcommands live in ``netprobe.commands.*`` and are imported only when invoked, so
``netprobe --help`` never pays for scapy, trio or pyroute2.
"""

from __future__ import annotations

import importlib
import sys

import click

from netprobe import __version__
from netprobe.commands import ui

# name -> (module, attribute, one-line help shown by `netprobe --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "probe": ("netprobe.commands.probe", "probe", "Probe one target from this host (no responder needed)."),
    "responder": ("netprobe.commands.responder", "responder", "Run the agent: taps, raw sockets, control API."),
    "mesh": ("netprobe.commands.mesh", "mesh", "Probe every host pair through the agents; print the matrix."),
    "verify": ("netprobe.commands.mesh", "verify", "Compare a run against an expectation or a baseline."),
    "diff": ("netprobe.commands.mesh", "diff", "Show what changed between two result files."),
    "preflight": ("netprobe.commands.preflight", "preflight", "Check hosts against Calico's node and kernel requirements."),
    "lab": ("netprobe.commands.lab", "lab", "Cluster hosts in network namespaces with real firewalls."),
    "inventory": ("netprobe.commands.inventory", "inventory", "Write the inventory from a Kubernetes cluster's API."),
    "watch": ("netprobe.commands.watch", "watch", "Run the mesh continuously; serve Prometheus metrics and a live page."),
}
# commands that work but are not listed by --help (nor in the man page they generate)
HIDDEN: dict[str, tuple[str, str]] = {"man": ("netprobe.commands.man", "man")}


class LazyGroup(click.Group):
    """Import a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in HIDDEN:
            module, attr = HIDDEN[name]
        elif name in COMMANDS:
            module, attr, _ = COMMANDS[name]
        else:
            return None
        return ui.add_options(getattr(importlib.import_module(module), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netprobe")
def cli() -> None:
    """Prove that a Kubernetes/Calico cluster's hosts reach each other through their firewalls.

    \b
    Exit codes: 0 as required/expected; 1 a requirement or expectation failed;
    2 bad usage or bad input; 3 the run itself failed or was partial.
    --color, -q and -v work here and after any command; NO_COLOR is honoured.
    Shell completion: eval "$(_NETPROBE_COMPLETE=bash_source netprobe)" (zsh_source, fish_source).
    """


ui.add_options(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run click, turn NetprobeError into one line on stderr and its exit code."""
    from netprobe.errors import NetprobeError

    try:
        # Commands return their exit code (an int) or None for 0.
        code = cli.main(args=argv, prog_name="netprobe", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other bad input (no usage block)
        where = exc.ctx.command_path if exc.ctx is not None else "netprobe"
        click.echo(f"{where}: {exc.format_message()} (see --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"netprobe: {exc.format_message()}", err=True)
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except NetprobeError as exc:
        click.echo(f"netprobe: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BaseExceptionGroup as group:  # trio nurseries wrap what their tasks raised
        exc = _first_leaf(group, NetprobeError)
        if exc is None:
            if _first_leaf(group, KeyboardInterrupt) is not None:
                click.echo("interrupted", err=True)
                sys.exit(130)
            raise
        click.echo(f"netprobe: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _first_leaf(group: BaseExceptionGroup, kind: type) -> BaseException | None:
    """The first exception of ``kind`` inside nested exception groups."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_leaf(exc, kind)
            if found is not None:
                return found
        elif isinstance(exc, kind):
            return exc
    return None
