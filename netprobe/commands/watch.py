"""`netprobe watch`: the mesh every --interval, with Prometheus metrics and a live page."""

from __future__ import annotations

import click

from netprobe.commands.inventory import cluster_options

DEFAULT_LISTEN = "tcp://127.0.0.1:9879"


@click.command()
@click.option("--inventory", "-i", "inventory_path", type=click.Path(dir_okay=False), default=None,
              help="Inventory file, re-read every run. Without it the inventory comes from the cluster's API.")
@cluster_options
@click.option("--interval", type=click.FloatRange(0.5, 86400), default=60, show_default=True,
              help="Seconds from the start of one run to the start of the next.")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="Serve /metrics, the live page (/), /result.json and /healthz here: tcp://ADDR:PORT.")
@click.option("--webhook", default=None, metavar="URL", help="POST the changes (JSON) here after every run that had any.")
@click.option("--profile", default="calico", show_default=True,
              help="calico (bgp, ipip, typha, apiserver, etcd), calico-noipip, calico-vxlan, "
                   "calico-wireguard, or canal.")
@click.option("--checks", default=None, metavar="LIST", help="Comma-separated check ids; replaces the profile's list.")
@click.option("--timeout", type=click.FloatRange(0.05, 30), default=1.0, show_default=True,
              help="Longest reply window per probe attempt, in seconds.")
@click.option("--retries", type=click.IntRange(0, 5), default=1, show_default=True,
              help="Extra attempts for probes that got no answer.")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Cluster token; default: the inventory's token_file, else NETPROBE_TOKEN.")
@click.option("--runs", type=click.IntRange(1, None), default=None,
              help="Stop after this many runs (exit code of the last one, as mesh's); default: until SIGTERM.")
def watch(inventory_path, kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace, interval,
          listen, webhook, profile, checks, timeout, retries, token_file, runs):
    """Run the mesh continuously and serve what it finds: Prometheus metrics
    (netprobe_flow_blocked{check,family,src,dst,where} for every blocked or unknown flow, netprobe_cells,
    netprobe_flow_rtt_seconds, netprobe_agent_up, ...), a live page with a heatmap per check and a
    timeline of changes, and the last result as JSON. The inventory (a file, or the cluster's
    nodes, Typha and apiserver) is read again before every run, so new nodes join.

    \b
    Examples:
      netprobe watch -i inventory.yaml --interval 30 --listen tcp://127.0.0.1:9879
      netprobe watch --kubeconfig ~/.kube/config --token-file token --webhook https://chat.example/hook
      netprobe watch --in-cluster --token-file /etc/netprobe/token/token   # the Deployment's way
    """
    import signal

    import trio

    from netprobe.agent.server import parse_listen
    from netprobe.errors import ConfigError
    from netprobe.orchestration.watch import WatchConfig, cluster_source, file_source, run_watch, setup_logging

    where = parse_listen(listen)
    if where.kind != "tcp":
        raise ConfigError(f"watch serves plain HTTP on tcp://ADDR:PORT, got {listen!r}", field="--listen")
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise ConfigError(f"expected an http(s) URL, got {webhook!r}", field="--webhook")
    cluster_given = kubeconfig or context or in_cluster or calico_namespaces or agent_port
    if inventory_path and cluster_given:
        raise ConfigError("give --inventory FILE or the cluster options (--kubeconfig, --context, --in-cluster), "
                          "not both", field="--inventory")
    custom = ()
    if inventory_path:
        from netprobe.config import load_inventory

        custom = load_inventory(inventory_path).custom_checks  # a typo fails now, not in the first run
        source, source_name = file_source(inventory_path), inventory_path
    else:
        import os

        from netprobe.commands.inventory import cluster_settings

        settings = cluster_settings(kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace)
        if not (settings["in_cluster"] or kubeconfig or os.environ.get("KUBECONFIG")
                or os.path.exists(os.path.expanduser("~/.kube/config"))):
            raise ConfigError("give --inventory FILE, or --kubeconfig FILE / --in-cluster to read the cluster",
                              field="--inventory")
        # a kubeconfig or context that doesn't load fails now (exit 2); an API down is a failed run
        from netprobe.kube.client import api_client

        api_client(settings["kubeconfig"], settings["context"], in_cluster=settings["in_cluster"]).close()
        source = cluster_source(settings, token_file)
        source_name = "the cluster (in-cluster)" if settings["in_cluster"] else \
            f"the cluster ({settings['kubeconfig'] or 'kubeconfig'}{', ' + context if context else ''})"
    if checks is not None or profile != "calico":
        from netprobe.config import parse_checks

        parse_checks(profile, checks, custom=custom)  # unknown names fail now
    setup_logging()
    cfg = WatchConfig(source=source, source_name=source_name, interval=float(interval), profile=profile,
                      checks=checks, token_file=token_file, timeout=timeout, retries=retries, webhook=webhook,
                      max_runs=runs)
    final = {}

    async def main():
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async def until_signal():
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        break

                nursery.start_soon(until_signal)

                def on_run(state):
                    final["state"] = state
                    if runs is not None and state.runs + state.outcomes["failed"] >= runs:
                        nursery.cancel_scope.cancel()

                cfg.on_run = on_run
                binds_state = await nursery.start(run_watch, cfg, where.host, where.port)
                click.echo(f"netprobe watch serving on {', '.join(binds_state[0])} "
                           f"(every {interval:g} s from {source_name})", err=True)

    trio.run(main)
    state = final.get("state")
    if runs is None or state is None:
        return 0
    if state.last is None or state.last_error:
        return 3
    from netprobe.core.exitcode import mesh_exit_code

    return mesh_exit_code(state.last)
