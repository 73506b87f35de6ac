"""`lab list`: the scenarios there are and what each teaches, read from each file's header.

Every scenario starts with a comment: ``# NAME: one-line title`` then a ``What it teaches:``
paragraph. ``header_summary`` is pure (text in); ``catalog`` reads the scenario directories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    title: str      # the first header line after "NAME:"
    teaches: str    # the "What it teaches:" paragraph, joined into one line
    path: str

    @property
    def lesson(self) -> str:
        """The first sentence of what it teaches (or the title when there is none)."""
        if not self.teaches:
            return self.title
        return _SENTENCE_END.split(self.teaches, 1)[0]


def header_summary(text: str, name: str) -> tuple[str, str]:
    """(title, teaches) from the leading comment block of a scenario file."""
    comments = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comments.append(line[1:].strip())
    title = ""
    if comments:
        first = comments[0]
        title = first.split(":", 1)[1].strip() if first.split(":", 1)[0].strip() == name else first
    teaches: list[str] = []
    for line in comments[1:]:
        if line.lower().startswith("what it teaches:"):
            teaches.append(line.split(":", 1)[1].strip())
        elif teaches:
            if not line:
                break
            teaches.append(line)
    return title, " ".join(t for t in teaches if t)


def catalog() -> list[ScenarioInfo]:
    """Every scenario found by name (``lab.spec.available_scenarios``), sorted by name."""
    from netprobe.lab.spec import available_scenarios

    out = []
    for name, path in sorted(available_scenarios().items()):
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:20_000]
        except OSError:
            head = ""
        title, teaches = header_summary(head, name)
        out.append(ScenarioInfo(name, title, teaches, str(path)))
    return out


__all__ = ["ScenarioInfo", "header_summary", "catalog"]
