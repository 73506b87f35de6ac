"""`netprobe mesh`, `verify` and `diff`: run the matrix, judge it, compare runs."""

from __future__ import annotations

import click

from netprobe.commands.selection import Scope, selection_options
from netprobe.core.mtu import MTU_RANGE

FORMATS = ["table", "json", "junit", "markdown", "html"]


def execute_mesh(inventory, profile, checks, timeout, retries, token_file, output, sample=None, rate=None, mtu=None,
                 explain=True):
    """Run the mesh over a loaded inventory with a progress bar on stderr, save JSON if asked."""
    import sys
    import time

    import trio

    from netprobe.config import inventory_token, parse_checks, write_file
    from netprobe.orchestration.mesh_run import run_mesh

    selected = parse_checks(profile, checks, apiserver_port=inventory.apiserver_port,
                            vxlan_port=inventory.vxlan_port, custom=inventory.custom_checks)
    token = inventory_token(inventory, token_file)

    async def go(progress):
        return await run_mesh(inventory, selected, token=token, timeout=timeout, retries=retries,
                              profile=None if checks else profile, progress=progress, sample=sample, rate=rate,
                              mtu=mtu, explain=explain)

    from netprobe.commands.ui import console, current, detail

    started = time.monotonic()
    if sys.stderr.isatty() and not current().quiet:
        from rich.progress import Progress

        with Progress(console=console(stderr=True), transient=True) as bar:
            tasks = {}

            def progress(stage, done, total):
                if stage not in tasks:
                    label = {"probe": "probing", "observe": "collecting observations"}.get(stage,
                                                                                          "explaining blocked flows")
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done)

            result = trio.run(go, progress)
    else:
        result = trio.run(go, None)
    detail(f"mesh: {len(result.cells)} cells, {len(inventory.hosts)} agents, {len(result.errors)} errors "
           f"in {time.monotonic() - started:.2f} s")
    if output:
        write_file(output, result.to_json())  # OUTPUT.gz is gzipped
    return inventory, result


def _sample_option(f):
    f = click.option("--rate", type=click.IntRange(10, 1_000_000), default=None, metavar="PPS",
                     help="Probes per second each agent sends (default: the agent's, 20000), so a burst to "
                          "thousands of peers does not overflow queues.")(f)
    f = click.option("--sample-run", type=click.IntRange(0), default=None, metavar="N",
                     help="Run counter for --sample (default: minutes since 1970, so repeated runs rotate); "
                          "every pair is probed within ceil(peers/K) consecutive counters.")(f)
    f = click.option("--sample", type=click.IntRange(1), default=None, metavar="K",
                     help="Each host probes only K of its peers this run (for repeated runs at scale); "
                          "the result marks which cells were sampled.")(f)
    return f


def sample_arg(sample, sample_run):
    if sample is None:
        return None
    if sample_run is None:
        import time

        sample_run = int(time.time() // 60)
    return (sample, sample_run)


def explain_option(f):
    return click.option("--no-explain", "no_explain", is_flag=True,
                        help="Do not explain blocked cells (by default each names the rule that dropped it, "
                             "or the last hop it reached, and a fix; at most one more reply window a run).")(f)


def _common_options(f):
    f = click.option("--token-file", type=click.Path(dir_okay=False), default=None,
                     help="Cluster token; default: the inventory's token_file, else NETPROBE_TOKEN.")(f)
    f = click.option("--retries", type=click.IntRange(0, 5), default=1, show_default=True,
                     help="Extra attempts for probes that got no answer.")(f)
    f = click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
                     help="Longest reply window per attempt, in seconds; once answers arrive it adapts to 4x the slowest RTT seen (at least 0.2 s).")(f)
    f = click.option("--checks", default=None, metavar="LIST",
                     help="Comma-separated check ids; replaces the profile's list.")(f)
    f = click.option("--profile", default="calico", show_default=True,
                     help="calico (bgp, ipip, mtu, typha, apiserver, etcd), calico-noipip, calico-vxlan, "
                          "calico-wireguard, or canal.")(f)
    return f


MTU_HELP = ("Full outer packet size the mtu check requires of the overlay's path (DF probes of that size must "
            "arrive) [default: the MTU of the sender's interface towards each peer].")


@click.command()
@click.option("--inventory", "-i", "inventory_path", required=True, type=click.Path(dir_okay=False),
              help="Inventory YAML: hosts, roles, agent addresses, token_file.")
@_common_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Also save the result JSON here (for `verify --baseline` and `diff`); NAME.gz is gzipped.")
@_sample_option
@click.option("--mtu", type=click.IntRange(*MTU_RANGE), default=None, metavar="BYTES", help=MTU_HELP)
@explain_option
@selection_options
def mesh(inventory_path, profile, checks, timeout, retries, token_file, fmt, output, rate, sample, sample_run,
         mtu, no_explain, from_hosts, to_hosts, only_failures):
    """Make every host pair probe each other through the agents and print one reachability
    matrix per check: allowed, or blocked and where it died (S source-egress, N network,
    D destination-ingress, R return-path).

    \b
    Exit: 0 every cell allowed; 1 a cell blocked or unproven; 3 an agent failed (its cells
    are 'unknown' and its error is listed); 2 bad input.
    """
    from netprobe.commands.output import emit_result
    from netprobe.config import load_inventory
    from netprobe.core.exitcode import mesh_exit_code

    _inventory, result = execute_mesh(load_inventory(inventory_path), profile, checks, timeout, retries, token_file,
                                      output, sample_arg(sample, sample_run), rate, mtu, explain=not no_explain)
    shown = Scope(from_hosts, to_hosts, only_failures).result(result)
    emit_result(shown, fmt)
    return mesh_exit_code(shown)


def _fail_on_option(f):
    return click.option(
        "--fail-on", "fail_on", type=click.Choice(["regressions", "changes"]), default=None,
        help="With --baseline (and for diff): fail on regressions only (a cell proven before is worse or gone; "
             "the default), or on every change, fixes too.")(f)


@click.command()
@click.option("--inventory", "-i", "inventory_path", type=click.Path(dir_okay=False), default=None,
              help="Inventory to run the mesh on now (not needed with --result).")
@click.option("--expect", "expect_path", type=click.Path(dir_okay=False), default=None,
              help="Expectation YAML: which cells must be allowed or blocked.")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False), default=None,
              help="A saved result: every cell whose reach changed since is reported.")
@click.option("--result", "result_path", type=click.Path(dir_okay=False), default=None,
              help="Judge this saved result instead of running the mesh.")
@_common_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@_fail_on_option
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Save the new result JSON here.")
@explain_option
@selection_options
def verify(inventory_path, expect_path, baseline_path, result_path, profile, checks, timeout, retries, token_file,
           fmt, fail_on, output, no_explain, from_hosts, to_hosts, only_failures):
    """Prove a firewall change: compare a run (made now, or --result) against an expectation
    (--expect) or a run saved before the change (--baseline). Every format lists the same
    findings, each with what was expected (or was) and what was got; against a baseline,
    regressions apart from fixes.

    \b
    Exit: 0 as expected; 1 a mismatch (--expect), a regression (--baseline, or any change
    with --fail-on changes); 3 the run was partial; 2 bad input.

    \b
    Example:
      netprobe mesh -i inventory.yaml -o before.json     # before the change
      netprobe verify -i inventory.yaml --baseline before.json
    """
    from netprobe.commands.output import emit_result
    from netprobe.config import load_result, read_text
    from netprobe.errors import ConfigError

    if (expect_path is None) == (baseline_path is None):
        raise ConfigError("give exactly one of --expect FILE or --baseline RESULT.json")
    if result_path is None and inventory_path is None:
        raise ConfigError("give --inventory to run the mesh now, or --result RESULT.json")
    if expect_path is not None and fail_on is not None:
        raise ConfigError("--fail-on applies to --baseline: with --expect every mismatch fails", field="--fail-on")
    # every input is read and checked before the mesh runs: a typo must cost no probing
    from netprobe.core.checks import CHECKS

    if result_path is not None:
        result = load_result(result_path)
        inventory = None
        hosts = {h.name: frozenset(h.roles) for h in result.hosts} or None
        known = [*CHECKS, *(c["id"] for c in result.checks if isinstance(c, dict) and "id" in c)]
    else:
        from netprobe.config import load_inventory

        result = None
        inventory = load_inventory(inventory_path)
        hosts = {h.name: h.roles for h in inventory.hosts}
        known = [*CHECKS, *(c.id for c in inventory.custom_checks)]
    expectation = baseline = None
    if expect_path is not None:
        from netprobe.core.expect import load_expectation_text

        # names checked against the hosts and checks: a typo must not select nothing and pass
        expectation = load_expectation_text(read_text(expect_path), source=expect_path, hosts=hosts,
                                            checks=list(dict.fromkeys(known)))
    else:
        baseline = load_result(baseline_path)
    if result is None:
        _inv, result = execute_mesh(inventory, profile, checks, timeout, retries, token_file, output,
                                    explain=not no_explain)
    from netprobe.core import verdicts

    if expectation is not None:
        from netprobe.core.expect import compare

        scope = Scope(from_hosts, to_hosts, only_failures)
        judgement = verdicts.from_mismatches(scope.keep(result, compare(expectation, result)),
                                             partial=bool(result.errors))
    else:
        from netprobe.core.result import diff as diff_results

        scope = Scope(from_hosts, to_hosts, only_failures)
        judgement = verdicts.from_changes(scope.keep(result, diff_results(baseline, result)), mode="baseline",
                                          fail_on=fail_on or "regressions",
                                          partial=bool(result.errors or baseline.errors))
    emit_result(scope.result(result), fmt, judgement=judgement)
    return judgement.exit_code


@click.command()
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@_fail_on_option
@selection_options
def diff(old, new, fmt, fail_on, from_hosts, to_hosts, only_failures):
    """Show the cells whose reach (or where) changed between two saved results: regressions
    (proven before, worse or gone now), fixes (allowed now) and other changes, each with
    what it was and what it is.

    \b
    Exit: 0 no regression (or no change at all with --fail-on changes); 1 otherwise;
    3 either run was partial; 2 bad input.
    """
    from netprobe.commands.output import emit_text
    from netprobe.config import load_result
    from netprobe.core import verdicts
    from netprobe.core.result import diff as diff_results
    from netprobe.report import render_diff

    old_result, new_result = load_result(old), load_result(new)
    changes = Scope(from_hosts, to_hosts, only_failures).keep(new_result, diff_results(old_result, new_result))
    judgement = verdicts.from_changes(changes, mode="diff", fail_on=fail_on or "regressions",
                                      partial=bool(old_result.errors or new_result.errors))
    emit_text(render_diff(judgement, old_result, new_result, fmt))
    return judgement.exit_code
