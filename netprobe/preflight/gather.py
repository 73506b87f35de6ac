"""Read every fact of one host and judge it: the I/O half of ``netprobe.preflight.collect``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from netprobe.preflight.facts import Facts
from netprobe.preflight.fsroot import Root
from netprobe.preflight.model import Report
from netprobe.preflight.read_host import read_cni, read_hostname, read_kube, read_os, read_processes, read_sockets
from netprobe.preflight.read_kernel import read_kernel
from netprobe.preflight.read_net import read_net
from netprobe.preflight.read_tools import read_tools
from netprobe.preflight.rules import check_options, evaluate


def read_facts(root: str | os.PathLike = "/", *, live_netlink: bool | None = None) -> Facts:
    """Everything preflight needs, read from files under ``root`` and (on / only) netlink."""
    base = Root(root)
    processes = read_processes(base)
    return Facts(
        root=str(base),
        hostname=read_hostname(base),
        kernel=read_kernel(base),
        os=read_os(base),
        net=read_net(base, live_netlink=live_netlink),
        cni=read_cni(base),
        processes=processes,
        kube=read_kube(base, processes),
        sockets=read_sockets(base),
        tools=read_tools(base),
    )


def collect(
    root: str | os.PathLike = "/",
    *,
    pool_cidrs: Sequence[str] | None = None,
    service_cidr: str | None = None,
    profile: str = "calico",
    live_netlink: bool | None = None,
    **options,
) -> Report:
    """This host's preflight report. Raises ConfigError (exit 2) on bad CIDRs, profile, options
    (``requirements``, ``dataplane``, ``wireguard``, ``vxlan_port``: see ``rules.evaluate``) or fixture."""
    # Validate the options before reading anything, so bad input fails fast and alone.
    check_options(pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile, **options)
    facts = read_facts(root, live_netlink=live_netlink)
    return evaluate(facts, pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile, **options)
