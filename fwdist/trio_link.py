"""Moving a session's bytes over trio streams: TCP between processes, memory streams in tests.

The endpoints are the sans-I/O ones of :mod:`fwdist.pump` (the lockbox behind
:class:`~fwdist.pump.BoxEndpoint`, or :class:`fwdist.app.App`); this module owns
only the moving of bytes over a stream, never a decision about them, so the
same box and phone code runs here as in the in-memory pump:

- in real processes over TCP (:func:`converse`, :func:`serve_box`,
  :func:`connect`, :func:`push`),
- in tests over ``trio.testing.memory_stream_pair`` (:func:`converse` again).

An agent walking away is cancellation: ``--max-seconds`` is a
``move_on_after`` around the conversation, ``--max-bytes`` cuts the outgoing
byte stream at exactly that many bytes, in the middle of a frame if that is
where the budget ends. With ``--rate`` the bytes leave in small paced slices,
so a cancellation really can land mid-frame, as on a Bluetooth link.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from fwdist.pump import Endpoint, LinkEnd

if TYPE_CHECKING:
    from fwdist.app import App, SessionReport

RECEIVE_SIZE = 4096
# With --rate, bytes leave in slices of 1/SLICES_PER_SECOND of a second's worth
# (at least MIN_SLICE bytes), so a walk-away can cut a frame in its middle.
SLICES_PER_SECOND = 50
MIN_SLICE = 16
# After our side said its last word, how long we wait for the peer's last bytes.
CLOSE_GRACE_SECONDS = 2.0


@dataclass
class LinkStats:
    """What crossed one side's link in one session.

    ``reason`` is None when this side ended the session itself (it said its
    last word and the peer closed after it); otherwise it says why the link
    ended: a budget ran out (the agent walked away) or the peer went away.
    """

    sent_bytes: int = 0
    received_bytes: int = 0
    reason: LinkEnd | None = None


class RateLimiter:
    """Paces bytes at ``bytes_per_second`` (a token bucket with no burst), in small slices."""

    def __init__(self, bytes_per_second: float) -> None:
        if not bytes_per_second > 0:
            raise ValueError("rate must be positive")
        self.rate = float(bytes_per_second)
        self.slice = max(MIN_SLICE, int(self.rate / SLICES_PER_SECOND))
        self._next_free: float | None = None

    async def wait_for(self, n: int) -> None:
        """Sleep until ``n`` more bytes may leave, then account for them."""
        now = trio.current_time()
        if self._next_free is None or self._next_free < now:
            self._next_free = now
        await trio.sleep_until(self._next_free)
        self._next_free += n / self.rate


class _Wakeup:
    """A resettable event: the sender sleeps on it until the receiver fed the endpoint."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


_LINK_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


async def converse(
    stream: trio.abc.Stream,
    endpoint: Endpoint,
    *,
    max_send_bytes: int | None = None,
    max_seconds: float | None = None,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> LinkStats:
    """Run one side of a session over ``stream`` until it ends; always close the stream.

    Two tasks: one feeds received bytes to the endpoint, the other sends what
    the endpoint has to say (woken whenever something arrived). The session
    ends when the endpoint is over and flushed (we half-close and give the
    peer :data:`CLOSE_GRACE_SECONDS` to finish), when the peer closes, or when
    a budget runs out: ``max_seconds`` (a ``move_on_after``) or
    ``max_send_bytes`` (the stream is cut at exactly that many bytes). The
    endpoint always receives ``b""`` at the end.
    """
    stats = LinkStats()
    limiter = RateLimiter(rate) if rate else None
    wakeup = _Wakeup()
    peer_gone = eof_fed = False

    async def send(data: bytes) -> bool:
        """Send ``data`` within the budgets; False if the byte budget cut it."""
        budget_cut = False
        if max_send_bytes is not None and stats.sent_bytes + len(data) > max_send_bytes:
            data = data[: max(0, max_send_bytes - stats.sent_bytes)]
            budget_cut = True
        step = limiter.slice if limiter else max(1, len(data))
        for i in range(0, len(data), step):
            part = data[i : i + step]
            if limiter:
                await limiter.wait_for(len(part))
            await stream.send_all(part)
            stats.sent_bytes += len(part)
            if on_sent:
                on_sent(len(part))
        return not budget_cut

    async def receiver(cancel: trio.CancelScope) -> None:
        nonlocal peer_gone, eof_fed
        while True:
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except _LINK_ERRORS:
                data = b""
            stats.received_bytes += len(data)
            if not data:
                if not endpoint.session_over:
                    stats.reason = stats.reason or LinkEnd.PEER_CLOSED
                peer_gone = eof_fed = True
                endpoint.receive_data(b"")
                wakeup.set()
                return
            endpoint.receive_data(bytes(data))
            wakeup.set()

    async def sender(cancel: trio.CancelScope) -> None:
        while True:
            out = endpoint.data_to_send()
            if out:
                try:
                    within = await send(out)
                except _LINK_ERRORS:
                    stats.reason = stats.reason or LinkEnd.PEER_CLOSED
                    cancel.cancel()
                    return
                if not within:
                    stats.reason = LinkEnd.MAX_BYTES
                    cancel.cancel()
                    return
                continue
            if peer_gone:
                cancel.cancel()
                return
            if endpoint.session_over:
                # Our last word is out: half-close, then let the peer finish.
                try:
                    await stream.send_eof()  # type: ignore[attr-defined]
                except (AttributeError, *_LINK_ERRORS, OSError):
                    pass
                with trio.move_on_after(CLOSE_GRACE_SECONDS):
                    while not peer_gone:
                        await wakeup.wait()
                cancel.cancel()
                return
            await wakeup.wait()

    try:
        with trio.move_on_after(math.inf if max_seconds is None else max_seconds) as timer:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver, nursery.cancel_scope)
                nursery.start_soon(sender, nursery.cancel_scope)
        if timer.cancelled_caught:
            stats.reason = LinkEnd.MAX_SECONDS
        if stats.reason is not None and stats.reason.walk_away and not peer_gone:
            # A spent byte budget stops the sending only: what the box still says about
            # the bytes that left (its acks) is heard. Out of time, the agent is gone.
            listen = endpoint if stats.reason is LinkEnd.MAX_BYTES else None
            eof_fed = True
            if listen is None:
                endpoint.receive_data(b"")
            stats.received_bytes += await _walk_away(stream, listen)
    finally:
        await trio.aclose_forcefully(stream)
        if not eof_fed:
            endpoint.receive_data(b"")
    return stats


async def _walk_away(stream: trio.abc.Stream, listen: Endpoint | None) -> int:
    """End the link after a walk-away so the peer gets every byte that left, then EOF.

    Closing a TCP socket with unread input makes the kernel send a reset, and
    a reset can make the peer's kernel drop bytes it received but its process
    had not read yet: how much of the last frames survived would then depend
    on scheduling. So: half-close (the peer reads up to the cut, then EOF) and
    read what the peer still says until it closes too, for a short while:
    handed to ``listen`` if given (then it gets ``b""`` at the end), else
    discarded. Returns how many bytes were read.
    """
    heard = 0
    with trio.move_on_after(CLOSE_GRACE_SECONDS):
        try:
            await stream.send_eof()  # type: ignore[attr-defined]
            while data := await stream.receive_some(RECEIVE_SIZE):
                heard += len(data)
                if listen is not None:
                    listen.receive_data(bytes(data))
        except (AttributeError, *_LINK_ERRORS, OSError):
            pass
    if listen is not None:
        listen.receive_data(b"")
    return heard


def parse_hostport(text: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port), with a one-line error for anything else."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must look like HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def connect(host: str, port: int, timeout: float = 10.0) -> trio.SocketStream:
    """Open a TCP stream to a box; OSError becomes ConnectionError with one clear line."""
    with trio.move_on_after(timeout) as scope:
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as e:
            reason = e.strerror or str(e)
            raise ConnectionError(f"cannot reach a box at {host}:{port}: {reason}") from None
    assert scope.cancelled_caught
    raise ConnectionError(f"cannot reach a box at {host}:{port}: timed out after {timeout:g}s")


async def open_listener(host: str, port: int) -> trio.SocketListener:
    """One TCP listener; 'port in use' and friends become ConnectionError with one line."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=8)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConnectionError(f"cannot listen on {host}:{port}: the port is in use") from None
        raise ConnectionError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    for extra in listeners[1:]:
        await extra.aclose()
    return listeners[0]


def listener_port(listener: trio.SocketListener) -> int:
    port: int = listener.socket.getsockname()[1]
    return port


async def serve_box(
    listener: trio.SocketListener,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    max_sessions: int | None = None,
) -> int:
    """Accept connections one at a time and hand each to ``handle``; return how many ran.

    A lockbox has one radio and one conversation at a time: while a session
    runs, the next phone waits in the listen backlog. ``handle`` owns the
    stream (it must close it).
    """
    served = 0
    while max_sessions is None or served < max_sessions:
        stream = await listener.accept()
        await handle(stream)
        served += 1
    return served


async def push(
    phone: App,
    host: str,
    port: int,
    *,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> SessionReport:
    """One phone session with the box at ``host:port``, walking away at the budgets given.

    The report counts what really left; when a budget ended the link (the
    agent walked away) that is the report's reason, else the phone's own.
    """
    stream = await connect(host, port)
    stats = await converse(stream, phone, max_send_bytes=max_bytes, max_seconds=max_seconds,
                           rate=rate, on_sent=on_sent)
    walked = stats.reason.value if stats.reason and stats.reason.walk_away else None
    return phone.report(sent_bytes=stats.sent_bytes, link_reason=walked)
