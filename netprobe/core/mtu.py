"""The overlay's path MTU, found without ICMP (docs/design.md, "The mtu check"). Pure.

The ``mtu`` check sends its overlay's probe (IPIP or VXLAN) padded to the full outer size the
overlay must carry, with DF, in the run's first window like every other probe. Its echo coming
back (or, in a mesh, the destination accepting it) is the only thing that makes the cell allowed.
Otherwise ``MtuSearch`` finds the largest outer packet that does arrive: each step sends
``FANOUT`` sizes spread over the interval still open, all at once, and after one reply window the
largest size echoed is the new lower bound and the smallest larger size not echoed the upper one.
Silence is the only answer a too-big probe gets when fragmentation-needed is filtered (the
overlay black hole), so every step of a blocked search costs one reply window: 3 steps for a
full size of 1,500 bytes, 4 for 9,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FANOUT = 15          # sizes per step
MAX_STEPS = 4        # enough for any size in MTU_RANGE (a span of 16^4 = 65,536 bytes)
MTU_RANGE = (576, 9216)  # the full sizes a run may require: IPv4's minimum to jumbo frames
OVERHEAD = {"ipip": 20, "vxlan": 50}  # outer bytes each overlay adds to a pod's IPv4 packet
# An mtu probe is charged as this many probes in an agent's budget (docs/design.md, "Caps"): any
# probe sends at most 6 packets (retries <= 5), an mtu probe's search FANOUT * MAX_STEPS more.
BUDGET_WEIGHT = 1 + FANOUT * MAX_STEPS // 6


def pod_mtu(overlay: str, path_mtu: int) -> int:
    """The largest pod MTU an overlay path of ``path_mtu`` outer bytes carries."""
    return path_mtu - OVERHEAD[overlay]


def mtu_words(overlay: str | None, path_mtu: int, mtu: int) -> str:
    """E.g. ``path MTU 1400 < 1500: IPIP pods need MTU <= 1380``."""
    if path_mtu >= mtu:
        return f"path MTU >= {mtu}"
    if overlay not in OVERHEAD:
        return f"path MTU {path_mtu} < {mtu}"
    return f"path MTU {path_mtu} < {mtu}: {overlay.upper()} pods need MTU <= {pod_mtu(overlay, path_mtu)}"


@dataclass
class MtuSearch:
    """The largest outer size between ``floor`` (the unpadded probe) and ``required`` that
    arrives, given that ``required`` did not (yet). Sizes not echoed within their step's window
    count as too big; an echo that comes later still counts (a loss, not the path, kept it back)."""

    required: int
    floor: int
    fanout: int = FANOUT
    lo: int = field(init=False)   # the largest size echoed (floor - 1: none yet)
    hi: int = field(init=False)   # the smallest size above ``lo`` not echoed
    steps: int = field(default=0, init=False)
    _flight: dict[int, bool] = field(default_factory=dict, init=False)  # this step's sizes -> echoed
    _missed: set[int] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.lo = self.floor - 1
        self._missed.add(self.required)
        self._settle()

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= 1

    @property
    def path_mtu(self) -> int | None:
        """The largest size known to arrive; None when no size did."""
        return self.lo if self.lo >= self.floor else None

    def next_step(self) -> list[int]:
        """Close the step in flight (its sizes not echoed are too big) and return the sizes of
        the next one; empty when the search is over. The first step includes the smallest
        probe: when not even that comes back (no responder, or the overlay blocked outright),
        there is nothing to search."""
        self._missed.update(size for size, echoed in self._flight.items() if not echoed)
        self._flight = {}
        self._settle()
        if self.done or self.steps >= MAX_STEPS or (self.steps and self.path_mtu is None):
            return []
        self.steps += 1
        span = self.hi - self.lo
        if span - 1 <= self.fanout:
            sizes = list(range(self.lo + 1, self.hi))
        elif self.steps == 1:
            sizes = [self.floor + j * (self.hi - self.floor) // self.fanout for j in range(self.fanout)]
        else:
            sizes = [self.lo + j * span // (self.fanout + 1) for j in range(1, self.fanout + 1)]
        self._flight = dict.fromkeys(sizes, False)
        return sizes

    def echoed(self, size: int) -> None:
        """A probe of ``size`` arrived (its echo came back)."""
        if size in self._flight:
            self._flight[size] = True
        self._missed.discard(size)
        if size > self.lo:
            self.lo = size
            self._settle()

    def _settle(self) -> None:
        self.hi = min((s for s in self._missed if s > self.lo), default=self.required + 1)

