"""Whom each host probes, fast at any size, and sampling for repeated runs.

``plan_peers`` gives every host its peers with the check ids wanted towards each, without a
``PlannedCell`` per cell: the checks wanted from A to B depend only on A's and B's roles and
address families, so each (source kind, destination kind) pair is worked out once and the ``Peer`` objects are
shared (at 1,000 hosts: 1 million references, not 2 million cell objects).

``--sample K`` (``sample_peers``): each host probes K of its M peers. Its peers are put in an
order of its own -- an affine permutation ``t -> (a*t + b) mod M`` keyed by a hash of the host's
name (``gcd(a, M) = 1``) -- and run ``r`` takes positions ``r*K .. r*K+K-1`` of it, cyclically:
stable for a host from run to run, independent between hosts, and every pair is probed within
``ceil(M/K)`` consecutive runs. (Rendezvous hashing would rank all N^2 pairs by hash every run;
this costs O(K) per host and gives the exact coverage bound.) Pure.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from netprobe.core.checks import Check, Direction, Skipped, no_pair_reason


def _wants(check: Check, src_roles: frozenset[str], dst_roles: frozenset[str]) -> bool:
    if check.from_role is not None and check.from_role not in src_roles:
        return False
    if check.direction is Direction.BOTH:
        return check.from_role is None or check.from_role in dst_roles
    return check.to_role in dst_roles


def _families(host: tuple) -> frozenset[int]:
    return frozenset(f for f, address in ((4, host[1]), (6, host[3])) if address)


def _live(hosts: Sequence[tuple], checks: Sequence[Check]) -> tuple[list[Check], list[Skipped]]:
    """The checks with at least one pair to probe, and why each other one is skipped (the same
    reasons as ``checks.plan_cells``)."""
    present = {f for h in hosts for f in _families(h)}
    skipped: list[Skipped] = []
    live: list[Check] = []
    for check in checks:
        if check.direction is Direction.TO_ROLE and not any(check.to_role in h[2] for h in hosts):
            skipped.append(Skipped(check.id, f"no host has role {check.to_role!r}"))
            continue
        for family in check.families:
            sources = [h for h in hosts if (check.from_role is None or check.from_role in h[2])
                       and family in _families(h)]
            targets = sources if check.direction is Direction.BOTH else [
                h for h in hosts if check.to_role in h[2] and family in _families(h)]
            names = {h[0] for h in targets}
            if any(len(names - {s[0]}) for s in sources):
                live.append(check)
                break
        else:
            skipped.append(Skipped(check.id, no_pair_reason(check, present)))
    return live, skipped


def plan_peers(hosts: Sequence[tuple[str, str | None, frozenset[str], str | None]], checks: Sequence[Check],
               peer_type, sample: tuple[int, int] | None = None):
    """({host: (peer_type(name, address, check ids, address6, check ids over IPv6), ...)}, skipped):
    the same pairs and skipped reasons as ``checks.plan_cells``, hosts in inventory order, peers in
    inventory order. ``hosts`` are (name, IPv4 address or None, roles, IPv6 address or None).
    With ``sample`` (k, run): each host's k peers of that run, chosen without listing all N^2 pairs."""
    live, skipped = _live(hosts, checks)
    wanted: dict[tuple, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    peer_of: dict[tuple, object] = {}
    groups: dict[tuple[frozenset, frozenset], list[int]] = {}  # destinations by (roles, families), in inventory order
    for j, host in enumerate(hosts):
        groups.setdefault((host[2], _families(host)), []).append(j)
    members_set = {id(m): set(m) for m in groups.values()}

    def ids_for(src_kind: tuple[frozenset, frozenset], dst_kind: tuple[frozenset, frozenset]):
        common = src_kind[1] & dst_kind[1]
        return tuple(tuple(c.id for c in live if family in common and family in c.families
                           and _wants(c, src_kind[0], dst_kind[0])) for family in (4, 6))

    def peer(j: int, ids: tuple[tuple[str, ...], tuple[str, ...]]):
        p = peer_of.get((j, ids))
        if p is None:
            name, address, _roles, address6 = hosts[j]
            p = peer_of[(j, ids)] = peer_type(name, address if ids[0] else None, ids[0],
                                              address6 if ids[1] else None, ids[1])
        return p

    out = {}
    for i, host in enumerate(hosts):
        src = host[0]
        src_kind = (host[2], _families(host))
        # the peers of src: every host of each kind src wants something from, but src itself
        parts = []
        for dst_kind, members in groups.items():
            key = (src_kind, dst_kind)
            ids = wanted.get(key)
            if ids is None:
                ids = wanted[key] = ids_for(src_kind, dst_kind)
            if ids[0] or ids[1]:
                parts.append((members, ids))
        if sample is None:
            chosen = sorted((j, ids) for members, ids in parts for j in members if j != i)
        else:
            # the virtual list of src's peers (group after group), sampled without building it
            sizes = [len(members) - (i in members_set[id(members)]) for members, _ids in parts]
            total = sum(sizes)
            picked = []
            for index in sample_indices(src, total, sample[0], sample[1]):
                for (members, ids), size in zip(parts, sizes):
                    if index < size:
                        if i in members_set[id(members)]:
                            at = members.index(i)
                            index += index >= at
                        picked.append((members[index], ids))
                        break
                    index -= size
            chosen = sorted(picked)
        out[src] = tuple(peer(j, ids) for j, ids in chosen)
    return out, skipped


def _key(name: str, modulus: int) -> tuple[int, int]:
    """(a, b) with gcd(a, modulus) == 1, from a hash of the host's name."""
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    a = int.from_bytes(digest[:8], "big") % modulus or 1
    while math.gcd(a, modulus) != 1:
        a = a % modulus + 1
    return a, int.from_bytes(digest[8:], "big") % modulus


def sample_indices(name: str, m: int, k: int, run: int) -> list[int]:
    """Which of a host's ``m`` peers (by index) run ``run`` probes: ``k`` of them (all if k >= m)."""
    if k >= m:
        return list(range(m))
    a, b = _key(name, m)
    start = (run * k) % m
    return sorted((a * ((start + t) % m) + b) % m for t in range(k))


def sample_peers(peers: Mapping[str, Sequence], k: int, run: int) -> dict[str, tuple]:
    """Every host's sample of its peers for run ``run`` (a counter the caller keeps)."""
    return {src: tuple(p[i] for i in sample_indices(src, len(p), k, run)) for src, p in peers.items()}


def runs_to_cover(m: int, k: int) -> int:
    return max(1, math.ceil(m / k))


__all__ = ["plan_peers", "sample_indices", "sample_peers", "runs_to_cover"]
