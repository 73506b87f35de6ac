"""What one agent lets its callers make it probe: the caps that keep a token holder from turning
the responder into a scanner (docs/design.md, "Caps").

Per request (checked when the request is parsed, ``netprobe/agent/protocol.py``): at most
``MAX_TARGETS`` targets and ``MAX_PROBES`` (target, check) pairs. Per minute (here): at most
``probes_per_minute`` pairs and ``targets_per_minute`` distinct target addresses, over a sliding
60-second window; an optional allow-list of networks every target must be in.

Pure: the clock is passed in.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field

MINUTE = 60.0


class OverBudget(Exception):
    """Refused; ``retry_after`` seconds until the window has room again (None: never)."""

    def __init__(self, message: str, retry_after: int | None):
        self.retry_after = retry_after
        super().__init__(message)


class NotAllowed(Exception):
    """A target outside the allow-list."""


@dataclass
class ProbeBudget:
    probes_per_minute: int
    targets_per_minute: int
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # either family; an address is in
                                                                          # a network of its own family only
    _probes: deque = field(default_factory=deque)              # (time, pairs) per admitted request
    _targets: OrderedDict = field(default_factory=OrderedDict)  # address -> last time asked

    def admit(self, addresses: list[str], probes: int, *, now: float) -> None:
        """Charge a request for ``probes`` pairs to ``addresses``, or raise without charging."""
        if self.allow:
            for a in addresses:
                ip = ipaddress.ip_address(a)
                if not any(ip in net for net in self.allow):
                    raise NotAllowed(f"target {a} is outside this agent's allowed networks "
                                     f"({', '.join(map(str, self.allow))})")
        horizon = now - MINUTE
        while self._probes and self._probes[0][0] <= horizon:
            self._probes.popleft()
        while self._targets and next(iter(self._targets.values())) <= horizon:
            self._targets.popitem(last=False)
        used = sum(n for _, n in self._probes)
        if probes > self.probes_per_minute:
            raise OverBudget(f"{probes} probes in one request; this agent makes at most {self.probes_per_minute} "
                             "a minute", None)
        if used + probes > self.probes_per_minute:
            raise OverBudget(f"over {self.probes_per_minute} probes a minute ({used} in the last minute)",
                             self._retry(now, self._probes[0][0]))
        new = {a for a in addresses if a not in self._targets}
        if len(self._targets) + len(new) > self.targets_per_minute:
            oldest = next(iter(self._targets.values()), now)
            raise OverBudget(f"over {self.targets_per_minute} distinct targets a minute "
                             f"({len(self._targets)} in the last minute, {len(new)} new)", self._retry(now, oldest))
        self._probes.append((now, probes))
        for a in addresses:
            self._targets[a] = now
            self._targets.move_to_end(a)

    @staticmethod
    def _retry(now: float, oldest: float) -> int:
        return max(1, int(oldest + MINUTE - now) + 1)
