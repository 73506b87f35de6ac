"""A host's firewall as the operator wrote it: native ``nft``, ``iptables-restore`` and ``ipset`` text.

Pure: checks the text's shape early (so a typo fails at load time naming file and field, not
halfway through ``lab up``) and turns it into the commands that load it. The same commands
serve the netns lab (run inside a namespace) and a real VM (``netprobe lab firewall``), so
a scenario means the same thing in both.

Load order: ``ipset`` first (rules refer to sets), then ``nft`` (an operator's ruleset
usually starts with ``flush ruleset``, which must not wipe what iptables loads next), then
``iptables-restore`` (whichever backend the host's ``iptables`` is: nft here),
``iptables-legacy-restore`` (the ``iptables-legacy`` key: rules in the kernel's old x_tables,
which nft cannot list, as on hosts that still run the legacy binaries) and ``ip6tables-restore``.
Every command replaces what it loads, so applying twice gives the same firewall.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("ipset", "nft", "iptables", "iptables-legacy", "ip6tables")  # the scenario keys, in load order
RESTORE_KINDS = ("iptables", "iptables-legacy", "ip6tables")  # iptables-restore text, loaded by KIND-restore
IPTABLES_TABLES = frozenset({"filter", "nat", "mangle", "raw", "security"})
IPSET_COMMANDS = frozenset({"create", "add", "del", "flush", "destroy", "swap", "rename", "-N", "-A", "-D", "-F", "-X"})


class FirewallTextError(ValueError):
    """The text is not what its tool loads. The message says which line and why."""


@dataclass(frozen=True)
class Firewall:
    """The native text for each tool (None: that tool loads nothing)."""

    nft: str | None = None
    iptables: str | None = None
    ip6tables: str | None = None
    ipset: str | None = None
    iptables_legacy: str | None = None  # the scenario key ``iptables-legacy``

    def text(self, kind: str) -> str | None:
        """The text for one of ``KINDS``."""
        return getattr(self, kind.replace("-", "_"))

    @property
    def empty(self) -> bool:
        return not any(self.text(k) for k in KINDS)


@dataclass(frozen=True)
class FirewallCommand:
    """One program fed one text on stdin. ``kind`` is the scenario key it comes from."""

    kind: str
    argv: tuple[str, ...]
    text: str

    def render(self) -> str:
        return f"$ {' '.join(self.argv)} <<'EOF'\n{self.text}EOF\n"


def _lines(text: str):
    for n, line in enumerate(text.splitlines(), 1):
        yield n, line.strip()


def check_nft(text: str) -> None:
    """Reject what is surely not an nft ruleset: no statements, unbalanced braces or quotes."""
    depth = 0
    statements = 0
    for n, line in _lines(text):
        code = line.split("#", 1)[0]
        if not code:
            continue
        statements += 1
        if code.count('"') % 2:
            raise FirewallTextError(f"line {n}: unbalanced quote")
        code = re.sub(r'"[^"]*"', '""', code)
        depth += code.count("{") - code.count("}")
        if depth < 0:
            raise FirewallTextError(f"line {n}: '}}' closes nothing")
    if not statements:
        raise FirewallTextError("no nft statements")
    if depth:
        raise FirewallTextError(f"{depth} '{{' never closed")


def check_iptables_restore(text: str) -> None:
    """``iptables-restore`` format: ``*table`` sections of chain/rule lines, each ending in COMMIT."""
    table = None
    tables = 0
    for n, line in _lines(text):
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if table is not None:
                raise FirewallTextError(f"line {n}: *{line[1:]} starts before *{table} has its COMMIT")
            table = line[1:]
            if table not in IPTABLES_TABLES:
                known = ", ".join(sorted(IPTABLES_TABLES))
                raise FirewallTextError(f"line {n}: unknown table *{table} (known: {known})")
            tables += 1
        elif line == "COMMIT":
            if table is None:
                raise FirewallTextError(f"line {n}: COMMIT outside a *table section")
            table = None
        elif table is None:
            raise FirewallTextError(f"line {n}: {line.split()[0]!r} outside a *table section (start one with *filter)")
        elif line.startswith(":"):
            if len(line.split()) < 2:
                raise FirewallTextError(f"line {n}: a chain line is ':NAME POLICY [packets:bytes]'")
        elif not line.startswith("-"):
            raise FirewallTextError(f"line {n}: expected ':CHAIN', '-A ...' or COMMIT, got {line.split()[0]!r}")
    if table is not None:
        raise FirewallTextError(f"*{table} has no COMMIT")
    if not tables:
        raise FirewallTextError("no *table section (iptables-restore format starts with e.g. *filter)")


def normalize_ipset(text: str) -> str:
    """``ipset restore`` text from an operator's lines: drops comments and a leading ``ipset``,
    and flushes each set right after creating it, so applying again (``-exist``) leaves exactly
    the members written here, not the union with an earlier run's."""
    out = []
    for n, line in _lines(text):
        if not line or line.startswith("#"):
            continue
        if line.startswith("ipset "):
            line = line[len("ipset "):].strip()
        if line.split()[0] not in IPSET_COMMANDS:
            raise FirewallTextError(
                f"line {n}: {line.split()[0]!r} is not an ipset command (create, add, del, flush, destroy, swap)"
            )
        out.append(line)
        words = line.split()
        if words[0] in ("create", "-N") and len(words) > 1:
            out.append(f"flush {words[1]}")
    if not out:
        raise FirewallTextError("no ipset commands")
    return "\n".join(out) + "\n"


def check(kind: str, text: str) -> None:
    """Raise FirewallTextError when ``text`` cannot be ``kind``'s input."""
    if kind == "nft":
        check_nft(text)
    elif kind in RESTORE_KINDS:
        check_iptables_restore(text)
    elif kind == "ipset":
        normalize_ipset(text)
    else:
        raise FirewallTextError(f"unknown firewall kind {kind!r} (known: {', '.join(KINDS)})")


def commands(firewall: Firewall) -> list[FirewallCommand]:
    """The programs that load ``firewall``, in load order. Texts always end with a newline."""
    out = []
    for kind in KINDS:
        text = firewall.text(kind)
        if not text:
            continue
        if not text.endswith("\n"):
            text += "\n"
        if kind == "ipset":
            out.append(FirewallCommand(kind, ("ipset", "restore", "-exist"), normalize_ipset(text)))
        elif kind == "nft":
            out.append(FirewallCommand(kind, ("nft", "-f", "-"), text))
        else:
            out.append(FirewallCommand(kind, (f"{kind}-restore",), text))
    return out


def render(owner: str, cmds: list[FirewallCommand]) -> str:
    """What ``--dry-run`` prints: a shell-like transcript of the commands and their input."""
    if not cmds:
        return f"# {owner}: no firewall (nothing to apply)\n"
    return f"# {owner}: {len(cmds)} command(s)\n" + "".join(c.render() for c in cmds)
