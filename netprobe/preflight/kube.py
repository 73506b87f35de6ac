"""Small pure helpers about Kubernetes processes: command-line flags and versions."""

from __future__ import annotations

import re
from collections.abc import Sequence

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def flag_value(cmdline: Sequence[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` in an argv (the last one wins, as with pflag)."""
    value = None
    args = list(cmdline)
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "v1.28.2", "1.9", "6.18.44-fc-v595"; None when it is not one."""
    if not text:
        return None
    match = _VERSION.match(text.strip())
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def image_version(text: str, image: str) -> str | None:
    """The tag of ``image`` (e.g. kube-apiserver) in a manifest: "...kube-apiserver:v1.28.2" -> "1.28.2"."""
    match = re.search(rf"{re.escape(image)}:v?(\d+\.\d+(?:\.\d+)?)", text)
    return match[1] if match else None
