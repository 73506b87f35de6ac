"""Paths under the root preflight reads (``/`` or a mounted image given with ``--root``).

Every reader goes through ``Root`` so a test can point it at a fixture tree, and so evidence
names the file the user would open (``/proc/config.gz``, or ``DIR/proc/config.gz``).
"""

from __future__ import annotations

import os
from pathlib import Path


class Root:
    def __init__(self, root: str | os.PathLike = "/"):
        self.base = Path(root)
        self.is_live = self.base.resolve() == Path("/")

    def path(self, rel: str) -> Path:
        return self.base / rel.lstrip("/")

    def show(self, rel: str) -> str:
        """The path as the user knows it."""
        return "/" + rel.lstrip("/") if self.is_live else str(self.path(rel))

    def text(self, rel: str) -> str | None:
        """A file's text, or None when it is missing or unreadable."""
        try:
            return self.path(rel).read_text(errors="replace")
        except (OSError, ValueError):
            return None

    def __str__(self) -> str:
        return "/" if self.is_live else str(self.base)
