"""This host's own packet drops during a run, from the kernel's counters (a lost probe must be a
doubt, never a firewall).

A probe or its answer can die in the hosts' own queues, not in a firewall: measured with
``bench/probe_rate.py`` (100,000 SYNs to closed ports between two namespaces), the ~1% that got
no answer were RSTs the responder's kernel made and discarded at IP output (``Ip: OutDiscards``,
lack of buffer there) and, under load, SYNs or RSTs dropped when a CPU's receive backlog held
``netdev_max_backlog`` packets (``softnet_stat``, the veths' rx/tx drops); no ICMP or RST rate
limit moved and no capture socket dropped anything.

None of those counters names the packet, and some count firewalls too: ``Ip: OutDiscards`` also
counts what this host's OUTPUT dropped, an interface's rx drops on real hardware count frames of
protocols nobody wanted. So the counters acted on (``COUNTERS``, summed as ``queue_drops``) are
the unambiguous ones this host owns: the receive backlogs (``softnet_dropped``) where the agent
runs in the host's own network namespace, its interfaces' drops (``link_dropped``) where it runs
in a namespace of its own (a lab host: the backlogs are the whole machine's, its veths' drops
its own), and the echoes the kernel had no room for. The others (``REPORTED``) travel for whoever
reads them. The mesh calls a run partial when a host whose queues dropped is an end of a cell
that got no answer where a lost packet would leave none (never arrived, or its answer never got
back, or unknown); against the rest, the retry.

Pure: the texts of /proc files and numbers in, numbers out (``net/queues.py`` reads them).
"""

from __future__ import annotations

from collections.abc import Mapping

# acted on: summed as ``queue_drops`` in an agent's stats
COUNTERS = {
    "softnet_dropped": "receive backlog (netdev_max_backlog)",
    "link_dropped": "interfaces",
    "echo_send_dropped": "echoes the kernel had no room for",  # the responder's own count (ENOBUFS)
}
# reported, not acted on: they count firewalls and noise too
REPORTED = {
    "ip_out_discards": "IP output discards (OUTPUT drops too)",
    "icmp_ratelimited": "ICMP rate limit",
}
TOTAL = "queue_drops"
_SNMP = {("Ip", "OutDiscards"): "ip_out_discards", ("Icmp", "OutRateLimitGlobal"): "icmp_ratelimited",
         ("Icmp", "OutRateLimitHost"): "icmp_ratelimited"}


def parse_softnet(text: str) -> int:
    """Packets dropped because a CPU's backlog was full: the second column of
    /proc/net/softnet_stat (hexadecimal), summed over CPUs."""
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            total += int(fields[1], 16)
    return total


def parse_snmp(text: str) -> dict[str, int]:
    """The counters of ``_SNMP`` from /proc/net/snmp (pairs of lines: names, then values)."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        proto, _, heads = names.partition(":")
        _, _, nums = values.partition(":")
        for head, num in zip(heads.split(), nums.split()):
            name = _SNMP.get((proto, head))
            if name is not None:
                out[name] = out.get(name, 0) + int(num)
    return out


def total(counters: Mapping[str, int]) -> dict[str, int]:
    """``counters`` with their sum under ``TOTAL``."""
    return {**counters, TOTAL: sum(v for k, v in counters.items() if k in COUNTERS)}


def moved(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """How much each counter grew (a counter read only once, or that went back, grew by 0),
    with the sum of ``COUNTERS`` under ``TOTAL``."""
    return total({k: max(0, after[k] - before[k]) for k in (*COUNTERS, *REPORTED) if k in before and k in after})


def from_stats(stats: Mapping[str, float]) -> dict[str, int]:
    """The drop counters among an agent's stats (absent in older agents: empty)."""
    return {k: int(stats[k]) for k in (TOTAL, *COUNTERS, *REPORTED) if k in stats}


def describe(drops: Mapping[str, int]) -> str:
    """E.g. ``12 packets (IP output, no buffer 10, interfaces 2)``."""
    parts = ", ".join(f"{COUNTERS[k]} {v}" for k, v in drops.items() if k in COUNTERS and v)
    return f"{drops.get(TOTAL, 0)} packets ({parts})"



__all__ = ["COUNTERS", "REPORTED", "TOTAL", "parse_softnet", "parse_snmp", "total", "moved", "from_stats", "describe"]
