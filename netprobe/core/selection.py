"""``--from`` / ``--to`` / ``--only-failures``: which cells a view shows (and a verdict weighs).

Selectors are comma-separated host names, shell globs (``node-1*``) or ``role:NAME``; a selector
that matches no host is an error (a typo must not select nothing and pass). Applied to a
``MatrixStore`` as byte masks (no Cell per cell). Pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from netprobe.core.matrix_store import ALLOWED_CODES, MatrixStore
from netprobe.errors import ConfigError

_DROP_ALLOWED = bytes(0 if c in ALLOWED_CODES else c for c in range(256))


def match_hosts(selector: str | None, roles: Mapping[str, Sequence[str]], *, option: str) -> set[str] | None:
    """The hosts a selector names (None: no selector = every host)."""
    if selector is None:
        return None
    chosen: set[str] = set()
    for part in (p.strip() for p in selector.split(",")):
        if not part:
            continue
        if part.startswith("role:"):
            hit = {h for h, r in roles.items() if part[5:] in r}
        elif any(ch in part for ch in "*?["):
            hit = set(fnmatch.filter(roles, part))
        else:
            hit = {part} & set(roles)
        if not hit:
            raise ConfigError(f"{part!r} matches no host of the result", field=option)
        chosen |= hit
    return chosen


def select(store: MatrixStore, sources: set[str] | None, destinations: set[str] | None,
           only_failures: bool) -> MatrixStore:
    """A store with only the cells from ``sources`` to ``destinations`` (and only the failing
    ones); the RTT tables are shared, the code tables copied."""
    if sources is None and destinations is None and not only_failures:
        return store
    n = store.n
    out = MatrixStore.__new__(MatrixStore)
    out.__dict__.update(store.__dict__)
    rows = [i for i, h in enumerate(store.hosts) if sources is None or h in sources]
    mask = None
    if destinations is not None:
        mask = int.from_bytes(bytes(0xFF if h in destinations else 0 for h in store.hosts), "big")
    out.codes = []
    for codes in store.codes:
        new = bytearray(n * n)
        for i in rows:
            row = bytes(codes[i * n:(i + 1) * n])
            if mask is not None:
                row = (int.from_bytes(row, "big") & mask).to_bytes(n, "big")
            new[i * n:(i + 1) * n] = row
        if only_failures:
            new = bytearray(new.translate(_DROP_ALLOWED))
        out.codes.append(new)
    out.detail = {key: c for key, c in store.detail.items() if out.codes[key[0]][key[1]]}
    out.recount()
    return out


__all__ = ["match_hosts", "select"]
