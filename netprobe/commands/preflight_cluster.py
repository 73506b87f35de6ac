"""`netprobe preflight --kubeconfig`: the cluster section (the requirements page's Kubernetes rows,
read from the API), alone or with every inventory host's section (`--inventory`).

Wiring only: ``netprobe.kube.cluster_read`` fetches the objects, ``netprobe.preflight.rules_k8s``
judges them. One exit code for both sections: 3 when anything is partial (the API unreachable
or refusing a read, an agent not answering), else 1 when a requirement fails, else 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import click


def run_cluster(*, kubeconfig: str | None, context: str | None, in_cluster: bool, inventory: str | None,
                fetch: Callable[..., dict] | None, pool_cidrs: list[str] | None, service_cidr: str | None,
                profile: str, fmt: str, requirements: str = "current", host_options: dict | None = None) -> int:
    from netprobe.errors import ConfigError
    from netprobe.kube.client import ClusterError, api_client
    from netprobe.kube.cluster_read import read_cluster
    from netprobe.preflight import render, render_k8s
    from netprobe.preflight.k8s_facts import cluster_facts
    from netprobe.preflight.rules_k8s import evaluate_cluster, requirement_set, unreachable_report

    if in_cluster and (kubeconfig or context):
        raise ConfigError("--in-cluster takes no --kubeconfig or --context", field="--in-cluster")
    requirement_set(requirements)
    inventory_port = None
    if inventory:
        from netprobe.config import load_inventory

        inventory_port = load_inventory(inventory).apiserver_port
    api = api_client(kubeconfig, context, in_cluster=in_cluster)  # a bad kubeconfig: exit 2 before anything runs
    reports = fetch(inventory, pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile,
                    **(host_options or {})) if inventory else None
    server = api.configuration.host
    with api:
        try:
            raw = read_cluster(api)
        except ClusterError as exc:
            raw = None
            errors = {"api": str(exc)}
            cluster = unreachable_report(server, str(exc), requirements=requirements, profile=profile)
    if raw is not None:
        facts = cluster_facts(raw)
        errors = dict(facts.errors)
        cluster = evaluate_cluster(facts, requirements=requirements, profile=profile, pool_cidrs=pool_cidrs,
                                   service_cidr=service_cidr, apiserver_port=inventory_port)

    from netprobe.orchestration.fleet_preflight import AGENT_ITEM

    partial = bool(errors) or any(r.item(AGENT_ITEM) is not None for r in (reports or {}).values())
    failed = bool(cluster.exit_code) or any(r.exit_code for r in (reports or {}).values())

    cluster_json = render_k8s.cluster_dict(cluster, server=server, requirements=requirements, errors=errors)
    if reports is not None:
        if fmt == "json":
            both = json.loads(render.render_hosts_json(reports))
            both.update({"status": "partial" if partial else "fail" if failed else "ok", "cluster": cluster_json})
            click.echo(json.dumps(both, indent=2))
        else:
            _print(render.render_hosts_table(reports))
            _print(render_k8s.render_cluster_table(cluster, errors))
    elif fmt == "json":
        click.echo(json.dumps(cluster_json, indent=2))
    else:
        _print(render_k8s.render_cluster_table(cluster, errors))
    if errors:  # one line, whatever failed: the table says which lines it cost
        click.echo(f"netprobe: cluster preflight is partial: {'; '.join(dict.fromkeys(errors.values()))}", err=True)
    from netprobe.core.exitcode import exit_code

    return exit_code(partial=partial, failed=failed)


def _print(renderable) -> None:
    import sys

    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 120).print(renderable)
