"""`netprobe probe TARGET`: probe one host from this one, no responder needed."""

from __future__ import annotations

import click

from netprobe.commands.mesh import MTU_HELP
from netprobe.core.mtu import MTU_RANGE


@click.command()
@click.argument("target")
@click.option("--checks", "checks", default=None, metavar="LIST",
              help="Comma-separated check ids (bgp, ipip, mtu, typha, vxlan, wireguard, wireguard6, apiserver, etcd). "
                   "Default: the profile's.")
@click.option("--profile", default="calico", show_default=True,
              help="calico, calico-noipip, calico-vxlan, calico-wireguard or canal: picks the checks when --checks is "
                   "not given, and the overlay the mtu check measures.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
              help="Longest reply window per attempt, in seconds; once answers arrive it adapts to 4x the slowest RTT seen (at least 0.2 s).")
@click.option("--retries", type=click.IntRange(0, 5), default=1, show_default=True,
              help="Extra attempts for probes that got no answer.")
@click.option("--apiserver-port", type=click.IntRange(1, 65535), default=6443, show_default=True)
@click.option("--vni", type=click.IntRange(0, 2**24 - 1), default=1, show_default=True,
              help="VXLAN network identifier of the vxlan probe.")
@click.option("--vxlan-port", type=click.IntRange(1, 65535), default=None,
              help="UDP port of the vxlan probe [default: the profile's: 8472 for canal, else 4789].")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Cluster token (or NETPROBE_TOKEN): lets a responder on TARGET echo UDP/IPIP/VXLAN probes.")
@click.option("--mtu", type=click.IntRange(*MTU_RANGE), default=None, metavar="BYTES", help=MTU_HELP)
@click.option("--no-explain", "no_explain", is_flag=True,
              help="Do not explain blocked checks (by default: this host's own egress rule that refused a "
                   "probe, or the last hop a network block reached, with TTL-limited copies).")
def probe(target, checks, profile, fmt, timeout, retries, apiserver_port, vni, vxlan_port, token_file, mtu,
          no_explain):
    """Probe TARGET (an IPv4 or IPv6 address, or a name) from this host with crafted raw
    packets, one probe per check (the checks probed over TARGET's address family).

    \b
    Verdicts, in nmap's words: open, closed, filtered, rejected (ICMP type/code and
    who sent it), answered. Without a responder on TARGET, reach is claimed only where
    the sender alone can know (e.g. this host's own firewall refused the send, or a
    tc/netdev egress hook dropped the probe: it never left); elsewhere it is 'unknown'
    (run `netprobe mesh` for the full answer). Needs root or CAP_NET_RAW. Exit 1 when a
    check is blocked; 3 when the kernel dropped captured packets, or this host's own queues
    dropped packets while a probe went unanswered (a verdict may be wrong).
    """
    from netprobe.config import parse_checks, read_token
    from netprobe.core.exitcode import probe_exit_code
    from netprobe.orchestration.one_shot import run_probe
    from netprobe.report.probe_table import render_probe

    from netprobe.core.checks import family_of
    from netprobe.errors import ConfigError
    from netprobe.net.route import resolve_target

    selected = parse_checks(profile, checks, apiserver_port=apiserver_port, vxlan_port=vxlan_port)
    address = resolve_target(target)
    family = family_of(address)
    for check in [c for c in selected if family not in c.families]:
        click.echo(f"netprobe: {check.id} skipped: it is not probed over IPv{family} ({address})", err=True)
    selected = [c for c in selected if family in c.families]
    if not selected:
        raise ConfigError(f"no check left to probe over IPv{family} ({address})", field="--checks")
    token = read_token(token_file, required=False)
    cells, stats = run_probe(target, selected, timeout=timeout, retries=retries, vni=vni, token=token,
                             address=address, mtu=mtu, explain=not no_explain)
    click.echo(render_probe(cells, stats, fmt=fmt, color=_use_color()), nl=False, color=_use_color())
    drops = stats.get("kernel_drops", 0)
    if drops:
        click.echo(f"netprobe: the kernel dropped {drops} captured packets: a verdict may be wrong", err=True)
    from netprobe.core import queues

    lost = queues.from_stats(stats)
    code = probe_exit_code(cells, drops, lost.get(queues.TOTAL, 0))
    if lost.get(queues.TOTAL) and code == 3 and not drops:
        click.echo(f"netprobe: this host's own queues dropped {queues.describe(lost)} while probing: a probe "
                   "without an answer may be a lost packet, not a firewall", err=True)
    return code


def _use_color() -> bool:
    from netprobe.commands.ui import current

    return current().use_color(click.get_text_stream("stdout"))
