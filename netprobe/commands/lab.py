"""`netprobe lab`: cluster hosts in network namespaces, wired like racks, with real firewalls.

Only click is imported here at module level; each command imports what it needs, so
`netprobe --help` stays instant. New subcommands attach with ``@lab.command()`` here, or live in
a module of their own listed in ``LabGroup.LAZY``.
"""

from __future__ import annotations

import click


class LabGroup(click.Group):
    """The subcommands below, plus any in ``LAZY`` (name -> module, attribute), imported only
    when used -- so a subcommand can live in a module of its own (``lab run`` does)."""

    LAZY: dict[str, tuple[str, str]] = {"run": ("netprobe.commands.lab_run", "run")}

    def _lazy(self, name: str) -> click.Command | None:
        import importlib

        module, attr = self.LAZY[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            return None  # a LAZY entry whose module is missing is simply not offered

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n in self.LAZY if n not in self.commands and self._lazy(n) is not None]
        return sorted([*super().list_commands(ctx), *lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from netprobe.commands.ui import add_options

        cmd = super().get_command(ctx, name)
        if cmd is None and name in self.LAZY:
            cmd = self._lazy(name)
        return None if cmd is None else add_options(cmd)


@click.group(cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
def lab() -> None:
    """Cluster hosts in network namespaces with real nftables/iptables firewalls.

    \b
    SCENARIO is a scenario file or a name from scenarios/ (e.g. demo).
    Needs root. Nothing is added to the root network namespace; every namespace is
    named nplab-LAB.NODE and state lives in /run/netprobe/lab/LAB.
    """


def _say(text: str = "", **style) -> None:
    from netprobe.commands.ui import say

    say(text, **style)


@lab.command()
@click.argument("scenario")
@click.option("--name", "name", help="Lab name (default: the scenario's name); two labs need two names.")
@click.option("--dry-run", is_flag=True, help="Print the plan (every step, in order) and change nothing.")
@click.option("--responders", is_flag=True, help="Also start a responder in every host, ready for `netprobe mesh`.")
def up(scenario: str, name: str | None, dry_run: bool, responders: bool) -> int:
    """Bring a scenario's lab up and leave it up (take it down with `lab down`)."""
    from netprobe.lab.spec import load_scenario

    spec = load_scenario(scenario)
    if dry_run:
        from netprobe.lab.runtime import plan_for

        lab_name, steps = plan_for(spec, name)
        _say(f"# lab {lab_name}: {len(steps)} steps")
        for step in steps:
            _say(step.describe())
        return 0
    from netprobe.lab.processes import signal_guard
    from netprobe.lab.runtime import bring_up

    # one guard from the first step to the last responder: a SIGTERM anywhere in between takes
    # the whole lab down again (never half up with `lab status` saying "up")
    with signal_guard("raise"):
        the_lab = bring_up(spec, name)
        if responders:
            _start_responders(the_lab, spec)
    _say(f"lab {the_lab.name} is up (scenario {spec.name}, profile {spec.profile})", fg="green")
    for h in spec.hosts:
        six = f" {h.address6}" if h.address6 else ""
        _say(f"  {h.name:<12} {h.address:<15} {','.join(sorted(h.roles)):<22} {the_lab.netns(h.name)}{six}")
    for r in spec.routers:
        addrs = ", ".join(f"{a} ({s})" for s, a in (*r.addresses, *r.addresses6))
        _say(f"  {r.name:<12} router: {addrs}")
    _say(f"inventory: {the_lab.inventory_path}")
    if responders:
        _say(f"mesh:      netprobe mesh -i {the_lab.inventory_path}")
    _say(f"try:       netprobe lab exec {the_lab.name} {spec.hosts[0].name} -- ip -br addr")
    _say(f"down:      netprobe lab down {the_lab.name}")
    return 0


def _start_responders(the_lab, spec) -> None:
    """Responders in every host, waited for; the lab comes down again if they don't start."""
    import trio

    from netprobe.lab.runtime import tear_down_lab
    from netprobe.orchestration.lab_session import start_responders, wait_for_agents
    from netprobe.config import inventory_token, load_inventory

    try:
        inventory = load_inventory(str(the_lab.inventory_path))
        start_responders(the_lab, [h.name for h in spec.hosts])
        trio.run(wait_for_agents, inventory, inventory_token(inventory))
    except BaseException:
        tear_down_lab(the_lab)
        raise


@lab.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--long", "-l", "long_", is_flag=True, help="The whole 'What it teaches' paragraph of each.")
def list_(fmt: str, long_: bool) -> int:
    """The scenarios there are (scenarios/, $NETPROBE_SCENARIOS) and what each teaches."""
    from netprobe.lab.catalog import catalog

    infos = catalog()
    if fmt == "json":
        import json

        _say(json.dumps([{"name": i.name, "title": i.title, "teaches": i.teaches, "path": i.path} for i in infos],
                        indent=2))
        return 0
    if not infos:
        _say("no scenarios found (looked in scenarios/ and $NETPROBE_SCENARIOS)")
        return 0
    import textwrap

    width = max(len(i.name) for i in infos)
    for i in infos:
        if long_:
            _say(f"{i.name}: {i.title}")
            _say(textwrap.fill(i.teaches or i.title, width=78, initial_indent="  ", subsequent_indent="  "))
            _say()
        else:
            _say(textwrap.fill(i.title, width=78, initial_indent=f"{i.name:<{width}}  ",
                               subsequent_indent=" " * (width + 2)))
            if i.teaches:
                _say(textwrap.fill(f"teaches: {i.lesson}", width=78, initial_indent=" " * (width + 2),
                                   subsequent_indent=" " * (width + 4)))
    return 0


@lab.command()
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def status(name: str | None, fmt: str) -> int:
    """Show the labs that are up (or one lab), their namespaces and processes.

    Exit 1 when a lab is not healthy (a namespace or process is gone) or stray
    nplab- namespaces are left over.
    """
    import json

    from netprobe.lab.state import lab_names, lab_status, open_lab, stray_namespaces

    if name is not None:
        open_lab(name)  # a clear error when there is no such lab
    labs = [lab_status(n) for n in ([name] if name else lab_names())]
    stray = [] if name else stray_namespaces()
    if fmt == "json":
        _say(json.dumps({"labs": [s.to_dict() for s in labs], "stray_namespaces": stray}, indent=2))
    else:
        if not labs and not stray:
            _say("no lab is up")
        for s in labs:
            _say(f"{s.name}: scenario {s.scenario}, {s.status}" + ("" if s.healthy else " (NOT healthy)"),
                 fg="green" if s.healthy else "red")
            for h in s.hosts:
                _say(f"  {h['name']:<12} {h['address']:<15} {','.join(h['roles'])}")
            missing = [ns for ns, ok in s.namespaces.items() if not ok]
            _say(f"  namespaces: {len(s.namespaces) - len(missing)}/{len(s.namespaces)} present"
                 + (f" (missing: {', '.join(missing)})" if missing else ""))
            for log_name, (pid, alive) in s.processes.items():
                _say(f"  process {log_name:<24} pid {pid:<8} {'running' if alive else 'DEAD'}")
        if stray:
            _say(f"stray namespaces (no lab state; `netprobe lab down --all` removes them): {', '.join(stray)}",
                 fg="yellow")
    return 0 if all(s.healthy for s in labs) and not stray else 1


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, host: str, command: tuple[str, ...]) -> int:
    """Run COMMAND inside HOST's namespace of lab NAME: lab exec NAME HOST -- CMD...

    Exits with COMMAND's exit code.
    """
    from netprobe.lab.runtime import require_root
    from netprobe.lab.state import open_lab

    require_root()
    the_lab = open_lab(name)
    if host not in the_lab.namespaces and host not in the_lab.scenario.short_names.values():
        from netprobe.errors import ConfigError

        raise ConfigError(f"lab {name} has no host {host!r} (known: {', '.join(the_lab.namespaces)})", field="HOST")
    try:
        return the_lab.exec(host, list(command)).returncode
    except FileNotFoundError as exc:
        from netprobe.errors import LabError

        raise LabError(f"cannot run {command[0]!r}: {exc.strerror}") from None


@lab.command()
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Every netprobe lab, and any nplab- namespace left over.")
def down(name: str | None, everything: bool) -> int:
    """Take a lab down: stop its processes, delete its namespaces, remove its state.

    A lab that is already down is no error: it says so and exits 0.
    """
    from netprobe.errors import ConfigError
    from netprobe.lab.runtime import tear_down, tear_down_all

    if bool(name) == everything:
        raise ConfigError("give a lab NAME or --all (not both)", field="NAME")
    if not everything:
        from netprobe.lab.runtime import is_up

        if not is_up(name):
            _say(f"lab {name} is already down (nothing to do)")
            return 0
    results = tear_down_all() if everything else {name: tear_down(name)}
    if not results:
        _say("no lab was up")
    for lab_name, done in results.items():
        _say(f"{lab_name}: removed {len(done['namespaces'])} namespaces, stopped {len(done['pids'])} processes")
    return 0


@lab.command()
@click.argument("scenario")
@click.option("--host", "host", required=True, help="The host (or router) whose firewall to apply.")
@click.option("--dry-run", is_flag=True, help="Print the commands and their input; apply nothing.")
@click.option("--replace-firewall", is_flag=True,
              help="This is not a lab host (no /etc/netprobe/lab-host, not a lab namespace): replace its "
                   "firewall anyway. On a cluster node that deletes Calico's and kube-proxy's rules.")
def firewall(scenario: str, host: str, dry_run: bool, replace_firewall: bool) -> int:
    """Apply one host's firewall from SCENARIO to the current network namespace.

    This is how a VM (see the Vagrantfile) gets its part of a scenario: the same
    commands the netns lab runs inside the host's namespace. A scenario's nft text
    usually starts with `flush ruleset`, so this refuses on a host that is not a lab
    host (the Vagrant provisioner leaves /etc/netprobe/lab-host; a lab namespace is
    one) unless --replace-firewall is given, and says what it replaces.
    """
    from netprobe.lab import firewall as fw
    from netprobe.lab.spec import load_scenario

    spec = load_scenario(scenario)
    rules, field = spec.firewall_of(host)
    cmds = fw.commands(rules)
    if dry_run:
        click.echo(fw.render(f"{host} from {spec.source}", cmds), nl=False)
        return 0
    import os

    from netprobe.errors import ConfigError, PrivilegeError
    from netprobe.lab.apply import apply_firewall
    from netprobe.lab.hostguard import LAB_MARKER, lab_host_reason, what_it_replaces

    if os.geteuid() != 0:
        raise PrivilegeError("applying a firewall needs root (or use --dry-run)")
    if not cmds:
        _say(f"{host}: no firewall to apply")
        return 0
    lost = what_it_replaces(rules)
    why = lab_host_reason()
    if why is None and not replace_firewall:
        listed = "; ".join(lost) if lost else "nothing loaded now"
        raise ConfigError(
            f"refusing to load {host}'s firewall from {spec.source}: this is not a lab host (no {LAB_MARKER}, "
            f"not a lab namespace) and it would replace: {listed}. Give --replace-firewall if this host's "
            f"firewall is yours to replace (or --dry-run to see the commands)", field="--host")
    for item in lost:
        click.echo(f"{host}: replacing {item}", err=True)
    apply_firewall(rules, source=spec.source, field=field)
    _say(f"{host}: applied {len(cmds)} command(s) from {spec.source}"
         + ("" if why else " (not a lab host: --replace-firewall)"))
    return 0
