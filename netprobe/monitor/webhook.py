"""POST the timeline's new events to a URL when a run changed something (``--webhook``).

One JSON body per run with changes; a webhook that fails is logged and never stops the watch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from netprobe.monitor.state import Event

SCHEMA = "netprobe.watch.changes/v1"
log = logging.getLogger("netprobe.watch")


def payload(events: Sequence[Event], *, run: int, source: str) -> dict:
    return {"schema": SCHEMA, "run": run, "source": source,
            "text": "\n".join(e.line() for e in events),  # a chat webhook shows this as is
            "changes": [e.to_dict() for e in events]}


async def post_changes(url: str, events: Sequence[Event], *, run: int, source: str, timeout: float = 5.0) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(url, json=payload(events, run=run, source=source))
        if response.status_code >= 300:
            log.warning("webhook %s answered %s", url, response.status_code)
            return False
        return True
    except httpx.HTTPError as exc:
        log.warning("webhook %s failed: %s", url, exc)
        return False
