"""The habits every command shares: ``--color auto|always|never`` (``NO_COLOR`` honoured),
``-q``/``--quiet`` and ``-v``/``--verbose``.

They are options of ``netprobe`` itself (``netprobe -q mesh ...``) and of every subcommand
(``netprobe mesh -q ...``); both land in one ``Ui`` on the root click context, so a command asks
``current()`` and never parses them itself. Only click and the standard library are imported.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import IO

import click

COLOR_CHOICES = ("auto", "always", "never")


@dataclass
class Ui:
    color: str = "auto"
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0

    def use_color(self, stream: IO | None = None) -> bool:
        """``always``/``never`` win; ``auto`` is off under NO_COLOR (any non-empty value), else a tty."""
        if self.color == "always":
            return True
        if self.color == "never" or os.environ.get("NO_COLOR"):
            return False
        stream = sys.stdout if stream is None else stream
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False


def current() -> Ui:
    """The Ui of the command being run (a default one outside click)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return Ui()
    root = ctx.find_root()
    if not isinstance(root.obj, Ui):
        root.obj = Ui()
    return root.obj


def _set_color(ctx: click.Context, _param, value):
    if value is not None:
        current().color = value


def _set_quiet(ctx: click.Context, _param, value):
    if value:
        current().verbosity = -1


def _set_verbose(ctx: click.Context, _param, value):
    if value:
        ui = current()
        ui.verbosity = max(ui.verbosity, 0) + value
        logging.basicConfig(stream=sys.stderr, level=logging.INFO if ui.verbosity == 1 else logging.DEBUG,
                            format="%(name)s: %(message)s")


def options() -> list[click.Option]:
    return [
        click.Option(["--color"], type=click.Choice(COLOR_CHOICES), default=None, expose_value=False,
                     is_eager=True, callback=_set_color,
                     help="Colour the output: auto (a terminal, unless NO_COLOR is set), always, never."),
        click.Option(["-q", "--quiet"], is_flag=True, default=False, expose_value=False, is_eager=True,
                     callback=_set_quiet, help="No progress or informational messages on stderr; errors only."),
        click.Option(["-v", "--verbose"], count=True, expose_value=False, is_eager=True, callback=_set_verbose,
                     help="More on stderr: timings and what each step did (-vv: debug logs)."),
    ]


def add_options(command: click.Command) -> click.Command:
    """Give ``command`` the shared options (once; a command may be looked up many times)."""
    if not getattr(command, "_netprobe_ui", False):
        taken = {o for p in command.params for o in getattr(p, "opts", [])}
        command.params.extend(o for o in options() if not (set(o.opts) & taken))
        command._netprobe_ui = True  # type: ignore[attr-defined]
    return command


def info(message: str) -> None:
    """An informational line on stderr, unless --quiet."""
    if not current().quiet:
        click.echo(message, err=True)


def detail(message: str) -> None:
    """A line on stderr with --verbose only."""
    if current().verbosity > 0:
        click.echo(message, err=True)


def say(text: str = "", **style) -> None:
    """A line on stdout, styled when colour is on."""
    ui = current()
    if style:
        click.secho(text, color=ui.use_color(sys.stdout), **style)
    else:
        click.echo(text)


def console(*, stderr: bool = False, width: int | None = None):
    """A rich Console that follows --color and NO_COLOR."""
    from rich.console import Console

    on = current().use_color(sys.stderr if stderr else sys.stdout)
    return Console(stderr=stderr, width=width, force_terminal=True if current().color == "always" else None,
                   no_color=not on, color_system="auto" if on else None)


__all__ = ["Ui", "COLOR_CHOICES", "current", "options", "add_options", "info", "detail", "say", "console"]
