"""Names the rule that dropped a flow in this network namespace (docs/design.md, "The explain
round").

A stand-in with exactly the interface of the rulefinder branch's module (issue #10's contract):
it names nothing and adds no table, so the explain round runs end to end before that branch
lands; its version (an nft trace table, iptables-legacy counters, the sweep) replaces this file
at merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from netprobe.core.trace import Flow, NotNamed, RuleFound

NOT_AVAILABLE = "rule finder not available"


class RuleFinder:
    """Async context manager over ``flows`` ((flow, "ingress" | "egress") pairs)."""

    def __init__(self, flows: Sequence[tuple[Flow, str]], *, nft: str = "nft"):
        self.flows = list(flows)
        self.nft = nft

    async def __aenter__(self) -> RuleFinder:
        return self

    async def results(self, *, expected_packets: Mapping[Flow, int],
                      timeout: float) -> dict[Flow, RuleFound | NotNamed]:
        return {flow: NotNamed(NOT_AVAILABLE) for flow, _hook in self.flows}

    async def __aexit__(self, *exc) -> None:
        return None


def sweep_leftovers(*, nft: str = "nft") -> int:
    """Deletes every ``netprobe_trace_*`` table a crashed agent left; the stand-in adds none."""
    return 0
