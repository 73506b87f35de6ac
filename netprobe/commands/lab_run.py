"""`netprobe lab run`: the whole product on the built-in lab, in one command."""

from __future__ import annotations

import click

from netprobe.commands.mesh import explain_option


@click.command()
@click.argument("scenario", default="demo")
@click.option("--name", default=None, help="Lab name (default: the scenario's name).")
@click.option("--checks", default=None, metavar="LIST", help="Comma-separated check ids; replaces the scenario's profile.")
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
              help="Longest reply window per attempt, in seconds (adapts to the RTT once answers arrive).")
@click.option("--retries", type=click.IntRange(0, 5), default=1, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit", "markdown"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Also save the result JSON here.")
@explain_option
def run(scenario, name, checks, timeout, retries, fmt, output, no_explain):
    """Bring SCENARIO's lab up (a name from scenarios/ or a path; default: demo), start a
    responder in every host namespace (unix sockets, a fresh token), run the mesh, verify it
    against the scenario's expectation, print the matrix, and tear the lab down.

    \b
    Exit 0 iff the expectation holds; 1 if a cell differs (each is named); 3 if an agent
    failed, whatever the cells; 2 for a bad scenario. Needs root.
    """
    import sys

    from netprobe.commands.output import emit_result
    from netprobe.config import write_file
    from netprobe.orchestration.lab_session import run_scenario

    def ready(lab, hosts, seconds):
        from netprobe.commands.ui import info

        info(f"lab {lab.name}: up, {hosts} responders ready in {seconds:.1f} s; probing ...")

    outcome = run_scenario(scenario, name=name, timeout=timeout, retries=retries, checks=checks, on_ready=ready,
                           explain=not no_explain)
    if output:
        write_file(output, outcome.result.to_json())
    emit_result(outcome.result, fmt, outcome.mismatches)
    if fmt == "table":
        verdict = "holds" if outcome.exit_code == 0 else "does NOT hold"
        click.echo(f"scenario {outcome.scenario.name}: expectation {verdict}; lab removed.", file=sys.stdout)
    return outcome.exit_code
