"""`netprobe man`: the man page (roff), generated from the click commands themselves, so it
never drifts from `--help`. `make man` writes it to docs/netprobe.1; `man ./docs/netprobe.1`.

The root command comes from the click context (never an import of ``netprobe.cli``: imports
point downward).
"""

from __future__ import annotations

import click

from netprobe import __version__

SECTIONS_AFTER = """\
.SH "COMMON OPTIONS"
Every command also takes \\-\\-color auto|always|never, \\-q/\\-\\-quiet, \\-v/\\-\\-verbose and \\-h/\\-\\-help.
.SH "EXIT STATUS"
0 as required or expected; 1 a requirement, expectation or baseline failed; 2 bad usage or bad
input (one line naming the file and field); 3 the run was partial (an agent failed); 130 interrupted.
.SH ENVIRONMENT
.TP
.B NETPROBE_TOKEN
The cluster token when no token file is given.
.TP
.B NO_COLOR
Any non-empty value turns colour off (unless \\-\\-color always).
.TP
.B NETPROBE_SCENARIOS
Colon-separated directories searched for lab scenarios by name.
.SH "SHELL COMPLETION"
bash: eval "$(_NETPROBE_COMPLETE=bash_source netprobe)";
zsh: eval "$(_NETPROBE_COMPLETE=zsh_source netprobe)";
fish: _NETPROBE_COMPLETE=fish_source netprobe | source
.SH "SEE ALSO"
README.md and docs/design.md of the netprobe source.
"""


def _esc(text: str) -> str:
    """Escape roff: backslashes, leading dots/quotes, and hyphens in option names."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def _help_roff(cmd: click.Command) -> list[str]:
    """The command's help as roff paragraphs; click's \\b blocks stay as written (.nf)."""
    import inspect

    out: list[str] = []
    for para in inspect.cleandoc(cmd.help or "").split("\n\n"):
        if para.startswith("\b"):
            body = para[1:].lstrip("\n")
            out += [".PP", ".nf", _esc(inspect.cleandoc(body)), ".fi"]
        elif para.strip():
            out += [".PP", _esc(" ".join(para.split()))]
    return out


def _walk(cmd: click.Command, ctx: click.Context, path: list[str]):
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            yield from _walk(sub, click.Context(sub, parent=ctx, info_name=name), [*path, name])


def render_man(root: click.Command, prog: str = "netprobe") -> str:
    out = [f'.TH {prog.upper()} 1 "" "{prog} {__version__}" "User Commands"',
           ".\\\" generated from the click commands by `netprobe man` (make man): do not edit",
           ".SH NAME", f"{prog} \\- {_esc((root.help or '').splitlines()[0].strip())}",
           ".SH SYNOPSIS", f".B {prog}", "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]..."]
    ctx = click.Context(root, info_name=prog)
    for path, cmd, sub_ctx in _walk(root, ctx, [prog]):
        title = " ".join(path)
        out.append(".SH DESCRIPTION" if len(path) == 1 else f'.SH "{_esc(title.upper())}"')
        if len(path) > 1:
            pieces = " ".join(cmd.collect_usage_pieces(sub_ctx))
            out += [".PP", f".B {_esc(title)}", _esc(pieces)]
        out += _help_roff(cmd)
        shared = set() if len(path) == 1 else {"--color", "--quiet", "--verbose", "--help"}
        records = [p.get_help_record(sub_ctx) for p in cmd.get_params(sub_ctx)
                   if isinstance(p, click.Option) and not shared & set(p.opts)]
        for opts, text in (r for r in records if r):
            out += [".TP", f".B {_esc(opts)}", _esc(text) or "\\&"]
    out.append(SECTIONS_AFTER.rstrip("\n"))
    return "\n".join(out) + "\n"


@click.command(hidden=True)
@click.pass_context
def man(ctx: click.Context) -> int:
    """Print the man page (roff), generated from the commands: netprobe man > netprobe.1"""
    click.echo(render_man(ctx.find_root().command), nl=False)
    return 0


__all__ = ["render_man", "man"]
