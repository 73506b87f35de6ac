"""The ``--from`` / ``--to`` / ``--only-failures`` options of mesh, verify and diff
(docs/design.md "CLI"): the view, and the verdict, are scoped to the selected cells; a saved
result (``-o``) always keeps every cell."""

from __future__ import annotations

import click


def selection_options(f):
    f = click.option("--only-failures", is_flag=True, default=False,
                     help="Show only blocked and unknown cells (and mismatches/changes among them).")(f)
    f = click.option("--to", "to_hosts", default=None, metavar="HOSTS",
                     help="Only flows to these hosts: names, globs (node-1*), role:NAME; comma-separated.")(f)
    f = click.option("--from", "from_hosts", default=None, metavar="HOSTS",
                     help="Only flows from these hosts: names, globs (node-1*), role:NAME; comma-separated.")(f)
    return f


class Scope:
    def __init__(self, from_hosts, to_hosts, only_failures):
        self.from_hosts, self.to_hosts, self.only_failures = from_hosts, to_hosts, only_failures

    @property
    def active(self) -> bool:
        return bool(self.from_hosts or self.to_hosts or self.only_failures)

    def _sets(self, result):
        from netprobe.core.selection import match_hosts

        roles = {h.name: h.roles for h in result.hosts}
        for name in result.store.hosts:
            roles.setdefault(name, ())
        return (match_hosts(self.from_hosts, roles, option="--from"),
                match_hosts(self.to_hosts, roles, option="--to"))

    def result(self, result):
        """The result as the view shows it (the same object when nothing is selected)."""
        if not self.active:
            return result
        import dataclasses

        from netprobe.core.selection import select

        src, dst = self._sets(result)
        return dataclasses.replace(result, cells=select(result.store, src, dst, self.only_failures))

    def keep(self, result, items):
        """Mismatches or changes whose flow lies in the selection (failing ones only with --only-failures)."""
        if not self.active:
            return list(items)
        src, dst = self._sets(result)
        kept = []
        for item in items:
            if (src is None or item.src in src) and (dst is None or item.dst in dst):
                kept.append(item)
        return kept
