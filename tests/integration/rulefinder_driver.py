"""A RuleFinder in its own process, run by tests/integration/test_rulefinder_netns.py with
`ip netns exec NS`, as the agent runs it inside a host's namespace (trio starts subprocesses
from worker threads: a test process stepping into a namespace could not take `nft` along).

    python rulefinder_driver.py '{"flows": [[proto, src, dst, sport, dport, direction], ...],
                                  "mode": "results" | "cancel" | "hold", "timeout": 0.5}'

Prints one JSON line when armed (``table``, ``arm_s``), then reads one line from stdin (the
test sent its probes: ``{"expected": [packets per flow]}``); ``results`` prints the answer
per flow and ``result_s``; ``cancel`` cancels ``results`` after 0.1 s; ``hold`` waits to be
killed, or cancelled ``cancel_after`` seconds after it began arming.
"""

from __future__ import annotations

import json
import sys

import trio

from netprobe.core.trace import Flow
from netprobe.net.rulefinder import RuleFinder


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


async def main(spec: dict) -> None:
    flows = [(Flow(*f[:5]), f[5]) for f in spec["flows"]]
    began = trio.current_time()
    with trio.CancelScope() as scope:
        if "cancel_after" in spec:
            scope.deadline = began + spec["cancel_after"]
        async with RuleFinder(flows) as finder:
            say(table=finder.table, arm_s=trio.current_time() - began)
            if spec["mode"] == "hold":
                await trio.sleep_forever()
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            expected = dict(zip((f for f, _ in flows), json.loads(line)["expected"]))
            began = trio.current_time()
            if spec["mode"] == "cancel":
                scope.deadline = began + 0.1
            found = await finder.results(expected_packets=expected, timeout=spec.get("timeout", 0.5))
            result_s = trio.current_time() - began
        say(result_s=result_s, found=[{"rule": r.to_dict()} if hasattr(r, "to_dict") else {"reason": r.reason}
                                      for r in found.values()])
    if scope.cancelled_caught:
        say(cancelled=True)


if __name__ == "__main__":
    trio.run(main, json.loads(sys.argv[1]))
