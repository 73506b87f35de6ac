"""`netprobe preflight`: can this host run Calico? One line per requirement, with evidence.

Only click is imported at module level; the readers, rules and rich load when the command runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import click

PROFILE_NAMES = "calico, calico-noipip, calico-vxlan, calico-wireguard, canal"

# fetch_reports(inventory_path, *, pool_cidrs, service_cidr, profile) -> dict[host name, Report]
FetchReports = Callable[..., dict]


def _resolve(fetch: FetchReports | str) -> FetchReports:
    """A callable, or "module:attr" imported only when --inventory is used (keeps --help instant)."""
    if callable(fetch):
        return fetch
    module, _, attr = fetch.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_command(fetch_reports: FetchReports | str) -> click.Command:
    """Build the command; ``fetch_reports`` gathers every host's Report through the agents for
    --inventory (tests inject a fake)."""

    @click.command("preflight")
    @click.option("--pool-cidr", "pool_cidrs", multiple=True, metavar="CIDR",
                  help="Pod IP pool (repeatable). Default 192.168.0.0/16, or 10.244.0.0/16 for canal.")
    @click.option("--service-cidr", metavar="CIDR[,CIDR]",
                  help="Service (ClusterIP) range; default: kube-apiserver's, when it runs here.")
    @click.option("--profile", default="calico", show_default=True, help=f"One of: {PROFILE_NAMES}.")
    @click.option("--requirements", "requirements", type=click.Choice(["current", "legacy"]), default="current",
                  show_default=True,
                  help="current: Calico today (kernel >= 5.10, kube-proxy iptables/ipvs/nftables, ...); "
                       "legacy: the old requirements page (kernel >= 3.10, ...). Each line names its set.")
    @click.option("--dataplane", type=click.Choice(["iptables", "nftables", "bpf"]), default="iptables",
                  show_default=True,
                  help="Calico's dataplane: nftables adds kernel >= 5.13, nft >= 1.0.1 and kube-proxy in nftables "
                       "mode; bpf adds kernel >= 5.3 (5.8+ recommended), VXLAN and no IP-in-IP.")
    @click.option("--wireguard", is_flag=True,
                  help="WireGuard encryption is on: the wireguard module and UDP 51820 "
                       "(implied by --profile calico-wireguard).")
    @click.option("--vxlan-port", type=click.IntRange(1, 65535), default=None,
                  help="The UDP port the mesh probes for vxlan [default: the inventory's vxlan_port with "
                       "--inventory, else the profile's: 8472 for canal, 4789 otherwise]; VXLAN devices found "
                       "on a different port are flagged.")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
    @click.option("--root", default="/", metavar="DIR", show_default=True,
                  help="Read /proc, /sys, /etc, /boot and lib/modules under DIR (a mounted image, a "
                       "fixture). Host addresses/routes then come from DIR/netprobe-addrs.json, else unknown.")
    @click.option("--live-netlink", is_flag=True,
                  help="With --root, still read addresses/routes from this host's netlink "
                       "(e.g. a container sharing the host's network, its / mounted at DIR).")
    @click.option("--inventory", metavar="FILE", help="Every host of the inventory, through the agents.")
    @click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
                  help="Check the cluster, not this host: the requirements page's Kubernetes rows, read "
                       "from its API. With --inventory: hosts and cluster, one exit code (3 when partial).")
    @click.option("--context", default=None, help="kubeconfig context (default: the current one).")
    @click.option("--in-cluster", is_flag=True, help="The cluster section, with the pod's service account.")
    def preflight(pool_cidrs, service_cidr, profile, requirements, dataplane, wireguard, vxlan_port, fmt, root,
                  live_netlink, inventory, kubeconfig=None, context=None, in_cluster=False) -> int:
        """Check this host against Calico's node and kernel requirements.

        \b
        Status per requirement: ok, fail, warn (look at it), unknown (nothing to read).
        Exit 0 when nothing fails, 1 when something fails, 2 on bad input, 3 (--inventory)
        when an agent could not be asked.
        """
        from netprobe.core.exitcode import exit_code
        from netprobe.errors import ConfigError
        from netprobe.preflight import render
        from netprobe.preflight.rules import check_options

        options = {"requirements": requirements, "dataplane": dataplane, "wireguard": wireguard,
                   "vxlan_port": vxlan_port}
        check_options(pool_cidrs=pool_cidrs or None, service_cidr=service_cidr, profile=profile, **options)
        if kubeconfig or context or in_cluster:
            if root != "/":
                raise ConfigError("--root reads one host; it cannot be combined with --kubeconfig", field="--root")
            from netprobe.commands.preflight_cluster import run_cluster

            return run_cluster(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, inventory=inventory,
                               fetch=lambda inv, **opts: _fetch(fetch_reports, inv, **opts),
                               pool_cidrs=list(pool_cidrs) or None, service_cidr=service_cidr, profile=profile,
                               fmt=fmt, requirements=requirements, host_options=options)
        if inventory:
            if root != "/":
                raise ConfigError("--root reads one host; it cannot be combined with --inventory", field="--root")
            reports = _fetch(fetch_reports, inventory, pool_cidrs=list(pool_cidrs) or None,
                             service_cidr=service_cidr, profile=profile, **options)
            if fmt == "json":
                click.echo(render.render_hosts_json(reports))
            else:
                import shutil
                import sys

                width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 120
                _print(render.render_hosts(reports, width=width))
            from netprobe.orchestration.fleet_preflight import AGENT_ITEM

            # partial: an agent could not be asked (its report is that one unknown item)
            return exit_code(partial=any(r.item(AGENT_ITEM) is not None for r in reports.values()),
                             failed=any(r.exit_code for r in reports.values()))

        import os

        if not os.path.isdir(root):
            raise ConfigError(f"{root!r} is not a directory", field="--root")
        from netprobe.preflight import collect

        report = collect(root, pool_cidrs=list(pool_cidrs) or None, service_cidr=service_cidr, profile=profile,
                         live_netlink=True if live_netlink else None, **options)
        if fmt == "json":
            click.echo(render.render_report_json(report))
        else:
            _print(render.render_report_table(report))
        return exit_code(partial=False, failed=bool(report.exit_code))

    return preflight


def _fetch(fetch_reports, inventory: str, **options) -> dict:
    return _resolve(fetch_reports)(inventory, **options)


def _print(renderable) -> None:
    import sys

    from netprobe.commands.ui import console

    # A pipe or a file gets 120 columns rather than rich's 80, so evidence stays on one line.
    console(width=None if sys.stdout.isatty() else 120).print(renderable)


preflight = make_command("netprobe.orchestration.fleet_preflight:fetch_preflight")
