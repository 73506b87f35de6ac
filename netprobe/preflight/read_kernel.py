"""Read the kernel's facts: release, architecture, loaded/built-in/installed modules, config.

Only sources that belong to the kernel being judged are read: /boot/config-RELEASE and
lib/modules/RELEASE for the running release (another installed kernel's files would be a
guess). With --root on an image that has no /proc, the release comes from its only
/boot/config-* when there is exactly one.
"""

from __future__ import annotations

import gzip
import os
import re

from netprobe.preflight.facts import KernelFacts
from netprobe.preflight.fsroot import Root
from netprobe.preflight.kmods import normalize

_CONFIG_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_NOT_SET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")
_KO = re.compile(r"\.ko(\.(xz|zst|gz))?$")


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_X=y/m/"value" lines, and "# CONFIG_X is not set" as "n"."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if match := _CONFIG_LINE.match(line):
            config[match[1]] = match[2].strip('"')
        elif match := _NOT_SET.match(line):
            config[match[1]] = "n"
    return config


def module_name(path: str) -> str | None:
    """"kernel/net/ipv4/ipip.ko.zst" -> "ipip"."""
    base = path.strip().rsplit("/", 1)[-1]
    if not _KO.search(base):
        return None
    return normalize(_KO.sub("", base))


def parse_modules_list(text: str) -> frozenset[str]:
    """modules.builtin (one path a line) or modules.dep ("path: deps...")."""
    names = (module_name(line.split(":", 1)[0]) for line in text.splitlines() if line.strip())
    return frozenset(n for n in names if n)


def parse_proc_modules(text: str) -> frozenset[str]:
    return frozenset(normalize(line.split()[0]) for line in text.splitlines() if line.strip())


def read_kernel(root: Root) -> KernelFacts:
    facts = KernelFacts()
    release = (root.text("proc/sys/kernel/osrelease") or "").strip()
    if release:
        facts.release, facts.release_source = release, root.show("proc/sys/kernel/osrelease")
    elif root.is_live:
        facts.release, facts.release_source = os.uname().release, "uname"
    else:
        candidates = sorted(root.path("boot").glob("config-*")) if root.path("boot").is_dir() else []
        if len(candidates) == 1:
            facts.release = candidates[0].name.removeprefix("config-")
            facts.release_source = f"the only kernel config in {root.show('boot')}"

    arch = (root.text("proc/sys/kernel/arch") or "").strip()
    if arch:
        facts.arch, facts.arch_source = arch, root.show("proc/sys/kernel/arch")
    elif root.is_live:
        facts.arch, facts.arch_source = os.uname().machine, "uname"

    loaded = root.text("proc/modules")
    if loaded is not None:
        facts.loaded, facts.loaded_source = parse_proc_modules(loaded), root.show("proc/modules")

    if facts.release:
        for base in ("lib/modules", "usr/lib/modules"):
            rel = f"{base}/{facts.release}"
            if root.path(rel).is_dir():
                facts.modules_dir = root.show(rel)
                builtin = root.text(f"{rel}/modules.builtin")
                dep = root.text(f"{rel}/modules.dep")
                facts.builtin = parse_modules_list(builtin) if builtin is not None else None
                facts.modular = parse_modules_list(dep) if dep is not None else None
                break

    facts.config, facts.config_source = _read_config(root, facts.release)
    return facts


def _read_config(root: Root, release: str | None) -> tuple[dict[str, str] | None, str | None]:
    # /proc/config.gz describes the running kernel; under --root it exists only in a live /proc.
    try:
        with gzip.open(root.path("proc/config.gz"), "rt", errors="replace") as fh:
            return parse_config(fh.read()), root.show("proc/config.gz")
    except (OSError, EOFError):
        pass
    if release:
        text = root.text(f"boot/config-{release}")
        if text is not None:
            return parse_config(text), root.show(f"boot/config-{release}")
    return None, None
