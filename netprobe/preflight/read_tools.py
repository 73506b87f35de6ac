"""Userspace tools a dataplane needs, asked for their version: ``nft --version``.

Only on the live host (root /): under --root the image's binaries are not run (they may not
even run here), so the fact stays unknown and says why.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from netprobe.preflight.facts import ToolFacts
from netprobe.preflight.fsroot import Root

_NFT_VERSION = re.compile(r"nftables v(\d+\.\d+(?:\.\d+)?)")


def read_tools(root: Root) -> ToolFacts:
    if not root.is_live:
        return ToolFacts(nft_source="with --root the image's nft is not run")
    nft = shutil.which("nft")
    if nft is None:
        return ToolFacts(nft_source="no nft on PATH")
    try:
        out = subprocess.run([nft, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return ToolFacts(nft_source=f"{nft} --version failed: {exc}")
    match = _NFT_VERSION.search(out)
    if not match:
        return ToolFacts(nft_source=f"{nft} --version said {out.strip()[:60]!r}")
    return ToolFacts(match[1], f"{nft} --version")
