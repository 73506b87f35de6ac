"""Names the lab gives things, and where it keeps them, so two labs run side by side and
`lab down --all` finds only ours.

Every namespace is ``nplab-<lab>.<node>``: the prefix marks it as netprobe's, the dot cannot
appear in a lab or node name, so ``nplab-a.x`` and ``nplab-a-b.x`` never get confused.
"""

from __future__ import annotations

import re
from pathlib import Path

from netprobe.errors import ConfigError

PREFIX = "nplab-"
STATE_ROOT = Path("/run/netprobe/lab")
NETNS_DIR = Path("/run/netns")  # where `ip netns` (and we) name namespaces
LAB_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")


def check_lab_name(name: str, *, field: str = "--name") -> str:
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise ConfigError(f"lab name must be 1-24 lowercase letters, digits or '-', got {name!r}", field=field)
    return name


SHORT_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
SHORT_MAX = 24


def short_names(nodes: list[str]) -> dict[str, str]:
    """A short name per node for namespaces, sockets and log files: the name itself when it is
    already short (letters, digits, '-', up to 32), else its first DNS label cut to 24
    characters (``ip-198-18-5-99.eu-west-1.compute.internal`` -> ``ip-198-18-5-99``), made
    unique with ``-2``, ``-3``... Names that are short already keep theirs; the rest follow in order."""
    out = {n: n for n in nodes if SHORT_NAME_RE.match(n)}
    taken = set(out.values())
    for n in nodes:
        if n in out:
            continue
        base = re.sub(r"[^a-z0-9-]", "-", n.split(".", 1)[0].lower())[:SHORT_MAX].strip("-") or "host"
        candidate, i = base, 1
        while candidate in taken:
            i += 1
            suffix = f"-{i}"
            candidate = base[:SHORT_MAX - len(suffix)].rstrip("-") + suffix
        out[n] = candidate
        taken.add(candidate)
    return out


def netns_name(lab: str, node: str) -> str:
    """The namespace of a host, router or segment fabric of a lab."""
    return f"{PREFIX}{lab}.{node}"


def parse_netns(ns: str) -> tuple[str, str] | None:
    """(lab, node) of one of our namespace names, None for any other namespace."""
    if not ns.startswith(PREFIX) or "." not in ns:
        return None
    lab, _, node = ns[len(PREFIX):].partition(".")
    return (lab, node) if lab and node else None


def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab
