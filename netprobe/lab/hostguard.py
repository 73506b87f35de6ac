"""Is this a lab host, and what would loading a scenario's firewall here replace?

``netprobe lab firewall`` loads a scenario's text into the network namespace it runs in; an nft
text usually starts with ``flush ruleset``. On a real Kubernetes node that deletes Calico's and
kube-proxy's rules, so the command refuses unless this is a lab host (``LAB_MARKER`` left by the
Vagrant provisioner, or one of the netns lab's ``nplab-`` namespaces) or it is told explicitly;
either way it says what it replaces. The decision is pure (``replaced``); reading the host is
the rest of this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from netprobe.lab import firewall as fw
from netprobe.lab.names import NETNS_DIR, PREFIX

# Written by the Vagrant provisioner (deploy/vagrant-provision.sh) before it applies a host's
# firewall: "this machine is a throw-away lab VM". One line, e.g. "demo node2".
LAB_MARKER = Path("/etc/netprobe/lab-host")
TOOL_TIMEOUT = 10.0


def current_lab_netns(netns_dir: Path = NETNS_DIR) -> str | None:
    """The name of the lab namespace (``nplab-LAB.HOST``) this process runs in, else None."""
    try:
        me = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    try:
        names = sorted(p.name for p in netns_dir.iterdir() if p.name.startswith(PREFIX))
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(netns_dir / name)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            return name
    return None


def lab_host_reason(marker: Path = LAB_MARKER) -> str | None:
    """Why this is a lab host (the provisioner's marker, or a lab namespace); None when it is not."""
    if marker.is_file():
        return f"{marker} exists (a lab VM)"
    ns = current_lab_netns()
    if ns is not None:
        return f"this is lab namespace {ns}"
    return None


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def loaded_nft_tables() -> list[str] | None:
    """``family name`` of every nft table here (iptables-nft's too); None when nft is missing."""
    out = _run(["nft", "list", "tables"])
    if out is None:
        return None
    return [line.split(None, 1)[1].strip() for line in out.splitlines() if line.startswith("table ")]


def loaded_ipsets() -> list[str]:
    out = _run(["ipset", "list", "-n"])
    return [] if out is None else [line.strip() for line in out.splitlines() if line.strip()]


def _nft_named_tables(text: str) -> list[str]:
    """``family name`` of each table an nft text flushes, deletes or redefines."""
    names = []
    for _, line in fw._lines(text):
        words = line.split("#", 1)[0].replace("{", " ").split()
        for verb in ("table", "flush", "delete", "destroy"):
            if words[:1] == [verb] and (verb == "table" or words[1:2] == ["table"]):
                rest = words[1:] if verb == "table" else words[2:]
                if rest and rest[0] in ("ip", "ip6", "inet", "arp", "bridge", "netdev") and len(rest) > 1:
                    names.append(f"{rest[0]} {rest[1]}")
                elif rest:
                    names.append(f"ip {rest[0]}")
    return list(dict.fromkeys(names))


def flushes_ruleset(text: str) -> bool:
    return any(line.split("#", 1)[0].split() == ["flush", "ruleset"] for _, line in fw._lines(text))


def replaced(firewall: fw.Firewall, nft_tables: list[str] | None, ipsets: list[str]) -> list[str]:
    """What loading ``firewall`` deletes or overwrites of what is loaded here, one item each."""
    out: list[str] = []
    if firewall.nft:
        if flushes_ruleset(firewall.nft):
            if nft_tables is None:
                out.append("every nft table (`flush ruleset`; nft could not list them)")
            else:
                out += [f"nft table {t} (`flush ruleset`)" for t in nft_tables]
        else:
            present = set(nft_tables or ())
            out += [f"nft table {t}" for t in _nft_named_tables(firewall.nft) if t in present]
    for kind in fw.RESTORE_KINDS:
        text = firewall.text(kind)
        if text:
            tables = [line[1:].strip() for _, line in fw._lines(text) if line.startswith("*")]
            out += [f"{kind} table {t} (every chain and rule in it)" for t in dict.fromkeys(tables)]
    if firewall.ipset:
        made = []
        for _, line in fw._lines(fw.normalize_ipset(firewall.ipset)):
            words = line.split()
            if words[0] in ("create", "-N") and len(words) > 1:
                made.append(words[1])
        out += [f"ipset {s} (its members)" for s in made if s in ipsets]
    return out


def what_it_replaces(firewall: fw.Firewall) -> list[str]:
    """``replaced`` against what this namespace has loaded right now."""
    return replaced(firewall, loaded_nft_tables(), loaded_ipsets())


__all__ = ["LAB_MARKER", "current_lab_netns", "lab_host_reason", "replaced", "what_it_replaces", "flushes_ruleset"]
