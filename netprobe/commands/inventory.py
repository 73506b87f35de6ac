"""`netprobe inventory`: write the inventory from a cluster's API (nodes, Typha, apiserver)."""

from __future__ import annotations

import click


def cluster_options(f):
    """--kubeconfig/--context/--in-cluster and what to read; shared with `netprobe watch`."""
    f = click.option("--agent-namespace", default="netprobe", show_default=True,
                     help="Namespace of the netprobe-responder DaemonSet (its 'control' port is the agents' port).")(f)
    f = click.option("--agent-port", type=click.IntRange(1, 65535), default=None,
                     help="Agents' port; default: the DaemonSet's, else 7879.")(f)
    f = click.option("--calico-namespace", "calico_namespaces", multiple=True,
                     help="Where calico-typha pods run (repeatable); default: calico-system and kube-system.")(f)
    f = click.option("--in-cluster", is_flag=True,
                     help="Use the pod's service account (default when KUBERNETES_SERVICE_HOST is set and no --kubeconfig).")(f)
    f = click.option("--context", default=None, help="kubeconfig context (default: the current one).")(f)
    f = click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
                     help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config).")(f)
    return f


def cluster_settings(kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace) -> dict:
    import os

    from netprobe.errors import ConfigError
    from netprobe.kube.build import CALICO_NAMESPACES

    if in_cluster and (kubeconfig or context):
        raise ConfigError("--in-cluster takes no --kubeconfig or --context", field="--in-cluster")
    if not in_cluster and not kubeconfig and not context and os.environ.get("KUBERNETES_SERVICE_HOST"):
        in_cluster = True
    return {"kubeconfig": kubeconfig, "context": context, "in_cluster": in_cluster,
            "calico_namespaces": tuple(calico_namespaces) or CALICO_NAMESPACES, "agent_port": agent_port,
            "agent_namespace": agent_namespace}


@click.command()
@cluster_options
@click.option("--token-file", default=None, metavar="PATH",
              help="Written as the inventory's token_file (e.g. /etc/netprobe/token, the Secret's mount).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
def inventory(kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace, token_file, output):
    """Write the inventory from the cluster: every node (its InternalIP) with role node;
    apiserver and etcd from the control-plane labels and the apiserver's endpoints (their
    port becomes apiserver_port); typha where calico-typha pods run; each agent at its node's
    address and the responder DaemonSet's port. What was left out (a node without an
    InternalIP, IPv6 addresses) is listed on stderr and as comments.

    \b
    Needs: list nodes, list pods in the Calico namespaces, get endpoints default/kubernetes
    (deploy/kubernetes/rbac.yaml). Exit 2: bad kubeconfig/context; 3: API unreachable or refusing.
    Example:  netprobe inventory --kubeconfig ~/.kube/config --context prod -o inventory.yaml
    """
    import sys

    from netprobe.config import write_file
    from netprobe.kube.build import to_inventory
    from netprobe.kube.client import build_from_cluster

    settings = cluster_settings(kubeconfig, context, in_cluster, calico_namespaces, agent_port, agent_namespace)
    built, server = build_from_cluster(settings, token_file)
    if not built.document["hosts"]:
        from netprobe.kube.client import ClusterError

        for note in built.notes:
            click.echo(f"netprobe: {note}", err=True)
        raise ClusterError(f"the cluster at {server} lists no node with an IPv4 InternalIP: no inventory written")
    to_inventory(built)  # what we write must load: fail here, not in the next mesh
    text = built.to_yaml(header=f"netprobe inventory from the Kubernetes API at {server}")
    for note in built.notes:
        click.echo(f"netprobe: {note}", err=True)
    if output:
        write_file(output, text)
        hosts = built.document["hosts"]
        click.echo(f"wrote {output}: {len(hosts)} hosts", err=True)
    else:
        sys.stdout.write(text)
    return 0
