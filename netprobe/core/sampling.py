"""Whom each host probes, fast at any size, and sampling for repeated runs.

``plan_peers`` gives every host its peers with the check ids wanted towards each, without a
``PlannedCell`` per cell: the checks wanted from A to B depend only on A's and B's roles, so
each (source roles, destination roles) pair is worked out once and the ``Peer`` objects are
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

from netprobe.core.checks import IPV6_NOT_PROBED, Check, Direction, Skipped


def _wants(check: Check, src_roles: frozenset[str], dst_roles: frozenset[str]) -> bool:
    if check.from_role is not None and check.from_role not in src_roles:
        return False
    if check.direction is Direction.BOTH:
        return check.from_role is None or check.from_role in dst_roles
    return check.to_role in dst_roles


def plan_peers(hosts: Sequence[tuple[str, str, frozenset[str]]], checks: Sequence[Check], peer_type,
               sample: tuple[int, int] | None = None):
    """({host: (peer_type(name, address, check ids), ...)}, skipped): the same pairs and
    skipped reasons as ``checks.plan_cells``, hosts in inventory order, peers in inventory order.
    With ``sample`` (k, run): each host's k peers of that run, chosen without listing all N^2 pairs."""
    skipped: list[Skipped] = []
    live: list[Check] = []
    for check in checks:
        if check.family != 4:
            skipped.append(Skipped(check.id, IPV6_NOT_PROBED))
            continue
        sources = [h for h in hosts if check.from_role is None or check.from_role in h[2]]
        if check.direction is Direction.BOTH:
            targets = sources
        else:
            targets = [h for h in hosts if check.to_role in h[2]]
            if not targets:
                skipped.append(Skipped(check.id, f"no host has role {check.to_role!r}"))
                continue
        names = {h[0] for h in targets}
        if not any(len(names - {s[0]}) for s in sources):
            skipped.append(Skipped(check.id, "no pair of distinct hosts to probe"))
            continue
        live.append(check)
    wanted: dict[tuple[frozenset, frozenset], tuple[str, ...]] = {}
    peer_of: dict[tuple[int, tuple[str, ...]], object] = {}
    groups: dict[frozenset, list[int]] = {}  # destinations by role set, in inventory order
    for j, (_name, _address, dst_roles) in enumerate(hosts):
        groups.setdefault(dst_roles, []).append(j)
    place = {id(m): {j: at for at, j in enumerate(m)} for m in groups.values()}  # host index -> place in its group

    def peer(j: int, ids: tuple[str, ...]):
        p = peer_of.get((j, ids))
        if p is None:
            p = peer_of[(j, ids)] = peer_type(hosts[j][0], hosts[j][1], ids)
        return p

    out = {}
    for i, (src, _addr, src_roles) in enumerate(hosts):
        # the peers of src: every host of each role set src wants something from, but src itself
        parts = []
        for dst_roles, members in groups.items():
            key = (src_roles, dst_roles)
            ids = wanted.get(key)
            if ids is None:
                ids = wanted[key] = tuple(c.id for c in live if _wants(c, src_roles, dst_roles))
            if ids:
                parts.append((members, ids))
        if sample is None:
            chosen = sorted((j, ids) for members, ids in parts for j in members if j != i)
        else:
            # the virtual list of src's peers (group after group), sampled without building it
            own = [place[id(members)].get(i) for members, _ids in parts]  # where src sits in each group
            sizes = [len(members) - (at is not None) for (members, _ids), at in zip(parts, own)]
            total = sum(sizes)
            picked = []
            for index in sample_indices(src, total, sample[0], sample[1]):
                for (members, ids), size, at in zip(parts, sizes, own):
                    if index < size:
                        if at is not None:
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
