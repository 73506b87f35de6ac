"""Preflight: can this host run Calico at all? Host checks from Calico's node and kernel
requirements, each with a status (ok/fail/warn/unknown) and the evidence read.

Layout: ``facts`` (plain data) <- ``read_*`` (files, pyroute2) ; ``rules`` / ``rules_cluster`` /
``kmods`` / ``overlap`` (pure judgement) -> ``model.Report`` -> ``render`` (pure).
"""

from __future__ import annotations

from netprobe.preflight.model import Item, Report, Status

__all__ = ["Item", "Report", "Status", "collect"]


def collect(root="/", *, pool_cidrs=None, service_cidr=None, profile="calico", live_netlink=None, **options) -> Report:
    """Read this host (files under ``root``, and netlink when root is /) and judge it.

    See ``netprobe.preflight.gather.collect``; imported lazily so ``import netprobe.preflight``
    stays cheap for callers that only need the model.
    """
    from netprobe.preflight.gather import collect as _collect

    return _collect(root, pool_cidrs=pool_cidrs, service_cidr=service_cidr, profile=profile,
                    live_netlink=live_netlink, **options)
