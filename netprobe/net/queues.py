"""Read this host's packet-drop counters (``core/queues.py`` says which and why): the receive
backlogs (/proc/net/softnet_stat: the machine's, shared by every namespace) in the host's own
network namespace, the interfaces' rx/tx drops (/sys/class/net) in a namespace of its own, IP
output discards and the ICMP rate limit (/proc/net/snmp) in either. Qdisc drops need no reading: a qdisc that drops a raw probe makes its send
fail with ENOBUFS (the sender waits and sends it again), and one that drops a reply the kernel
made counts in IP output discards. Best effort: a source that cannot be read is left out, and
only counters read at both ends of a run are compared. ~1 ms."""

from __future__ import annotations

import os

from netprobe.core import queues


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _link_dropped() -> int | None:
    total, base = 0, "/sys/class/net"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    for name in names:
        if name == "lo":
            continue
        for side in ("rx_dropped", "tx_dropped"):
            text = _read(f"{base}/{name}/statistics/{side}")
            if text and text.strip().isdigit():
                total += int(text)
    return total


def in_host_namespace() -> bool | None:
    """Does this process share the network namespace of PID 1 (the host's, or a hostNetwork
    container's)? None when that cannot be read."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return None


def read_counters() -> dict[str, int]:
    """The counters of ``core/queues.py`` that could be read now (cumulative since boot): the
    receive backlogs in the host's own namespace, the interfaces' drops in a namespace of its own."""
    out: dict[str, int] = {}
    if in_host_namespace():
        text = _read("/proc/net/softnet_stat")
        if text is not None:
            out["softnet_dropped"] = queues.parse_softnet(text)
    else:
        links = _link_dropped()
        if links is not None:
            out["link_dropped"] = links
    text = _read("/proc/net/snmp")
    if text is not None:
        out.update(queues.parse_snmp(text))
    return out
