"""Printing a result in the format asked for: the one place commands turn results into stdout."""

from __future__ import annotations

import click


def emit_result(result, fmt: str, mismatches=None, judgement=None) -> None:
    """Render ``result`` (and the mismatches of a verify) to stdout; every format ends its last line."""
    import shutil
    import sys

    from netprobe.report import render

    from netprobe.commands.ui import current

    tty = sys.stdout.isatty()
    # a matrix must fit the terminal (piped: 100 columns, or $COLUMNS); piped lines are never wrapped
    width = shutil.get_terminal_size((100, 24)).columns
    color = current().use_color(sys.stdout)
    text = render(result, fmt, mismatches=mismatches, judgement=judgement, color=color, width=width, wrap=tty)
    click.echo(text, nl=not text.endswith("\n"), color=color)  # click strips escapes from a pipe otherwise


def emit_text(text: str) -> None:
    """Write already rendered text; every format ends its last line."""
    click.echo(text, nl=not text.endswith("\n"))
