"""Server-sent events for the dashboard: the sections whose HTML changed, as they change.

The stream polls a snapshot (a dict of section id -> HTML) every ``interval`` seconds and
sends only the sections that differ from what this client last got; the first event carries
them all, so a page rendered a moment before the stream opened catches up. Polling, not a
notification bus, because reports arrive in bursts through many server processes and the
database is the one place that sees them all. A comment line every ``keepalive`` seconds
lets the server notice a client that went away. Sans-I/O: the snapshot and the sleep are
injected, so a test drives the stream without a clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

Snapshot = Callable[[], Awaitable[Mapping[str, str] | None]]  # None: end the stream
Sleep = Callable[[float], Awaitable[None]]

EVENT = "sections"
RETRY_MS = 2000  # how soon EventSource reconnects after the server went away


def frame(event: str, data: str) -> bytes:
    """One event in the text/event-stream format (a data line per line of ``data``)."""
    lines = [f"event: {event}"] + [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


async def stream(
    snapshot: Snapshot, sleep: Sleep, interval: float, keepalive: float = 15.0
) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MS}\n\n".encode()
    sent: dict[str, str] = {}
    quiet = 0.0
    while True:
        got = await snapshot()
        if got is None:  # the session ended (token revoked) or the page's subject is gone
            return
        now = dict(got)
        changed = {k: v for k, v in now.items() if sent.get(k) != v}
        if changed:
            sent |= changed
            quiet = 0.0
            yield frame(EVENT, json.dumps(changed, separators=(",", ":"), sort_keys=True))
        elif quiet >= keepalive:
            quiet = 0.0
            yield b": keep-alive\n\n"
        await sleep(interval)
        quiet += interval
