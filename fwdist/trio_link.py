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

import contextlib
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
# How many bytes we read from the peer while our own bytes wait to leave before we stop
# reading: what an endpoint says grows with what it hears, so a peer that sends but never
# reads gets backpressure, not a growing buffer (then the idle timeout drops it: no byte
# moves either way). An honest peer reads while it sends and never comes near this.
MAX_READ_AHEAD = 16 * 1024
# A phone gives up on a box that moved no byte either way for this long (a box answers
# Hello at once and acknowledges as it persists; one that says nothing is gone or busy).
PHONE_IDLE_SECONDS = 10.0


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
    idle_seconds: float | None = None,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    first: bytes = b"",
) -> LinkStats:
    """Run one side of a session over ``stream`` until it ends; always close the stream.

    Two tasks: one feeds received bytes to the endpoint, the other sends what
    the endpoint has to say (woken whenever something arrived). The session
    ends when the endpoint is over and flushed (we half-close and give the
    peer :data:`CLOSE_GRACE_SECONDS` to finish), when the peer closes, or when
    a budget runs out: ``max_seconds`` (a ``move_on_after``) or
    ``max_send_bytes`` (the stream is cut at exactly that many bytes), or when
    no byte moved either way for ``idle_seconds`` (a silent peer, or one that
    does not read what we send: past :data:`MAX_READ_AHEAD` we stop reading
    it). ``first`` is what was already read off the stream (the
    greeting :func:`serve_box` waited for). The endpoint always receives
    ``b""`` at the end.
    """
    stats = LinkStats()
    limiter = RateLimiter(rate) if rate else None
    wakeup = _Wakeup()
    drained = _Wakeup()
    peer_gone = eof_fed = False
    sending = False  # the sender is in the middle of sending what the endpoint said
    read_ahead = 0  # bytes received since the sender began, while it is sending
    last_moved = trio.current_time()

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
            moved()
            stats.sent_bytes += len(part)
            if on_sent:
                on_sent(len(part))
        return not budget_cut

    def moved() -> None:
        nonlocal last_moved
        last_moved = trio.current_time()

    async def watchdog(cancel: trio.CancelScope, idle: float) -> None:
        while True:
            await trio.sleep_until(last_moved + idle)
            if trio.current_time() >= last_moved + idle:
                stats.reason = stats.reason or LinkEnd.IDLE
                cancel.cancel()
                return

    async def receiver(cancel: trio.CancelScope) -> None:
        nonlocal peer_gone, eof_fed, read_ahead
        while True:
            while sending and read_ahead > MAX_READ_AHEAD:  # the peer does not read: nor do we
                await drained.wait()
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except _LINK_ERRORS:
                data = b""
            moved()
            stats.received_bytes += len(data)
            read_ahead += len(data)
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
        nonlocal sending, read_ahead
        while True:
            out = endpoint.data_to_send()
            if out:
                sending, read_ahead = True, 0
                try:
                    within = await send(out)
                    sending = False
                    drained.set()
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
            if first:
                stats.received_bytes += len(first)
                endpoint.receive_data(first)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver, nursery.cancel_scope)
                nursery.start_soon(sender, nursery.cancel_scope)
                if idle_seconds is not None:
                    nursery.start_soon(watchdog, nursery.cancel_scope, idle_seconds)
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


class _Caller:
    """A connection waiting for the box: its stream and, once it spoke, its first bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.first = b""
        self.scope = trio.CancelScope()  # cancelled when a fresher caller takes its seat


class _WaitingRoom:
    """The connections waiting for the one conversation a box holds at a time.

    A caller counts only once it has spoken (a phone opens with Hello): one that
    says nothing within ``greet_seconds`` is hung up on, so silent connections
    never reach the box. At most ``seats`` callers wait; a new one takes the seat
    of the oldest, so the freshest connection is never starved. Callers that
    spoke are served in the order they spoke.
    """

    def __init__(self, seats: int, greet_seconds: float) -> None:
        if seats < 1 or not greet_seconds > 0:
            raise ValueError("a waiting room needs a seat and a positive greeting time")
        self.seats = seats
        self.greet_seconds = greet_seconds
        self._waiting: list[_Caller] = []  # oldest first
        self._ready: list[_Caller] = []  # spoke, in the order they spoke
        self._arrived = _Wakeup()

    async def greet(self, stream: trio.SocketStream, on_drop: Callable[[str], None]) -> None:
        """Seat the caller and wait for its first bytes (a task per caller)."""
        caller = _Caller(stream)
        if len(self._waiting) >= self.seats:
            # the oldest caller still silent gives up its seat, else the oldest of all
            old = next((c for c in self._waiting if not c.first), self._waiting[0])
            self._leave(old)
            old.scope.cancel()
            await trio.aclose_forcefully(old.stream)
            on_drop("evicted: a fresher connection took its seat")
        self._waiting.append(caller)
        with caller.scope:
            with trio.move_on_after(self.greet_seconds), contextlib.suppress(*_LINK_ERRORS):
                caller.first = bytes(await stream.receive_some(RECEIVE_SIZE))
            if caller.first:
                self._ready.append(caller)
                self._arrived.set()
                return
            self._leave(caller)
            await trio.aclose_forcefully(stream)
            on_drop("silent: said nothing")

    async def close(self) -> None:
        """Hang up on everyone still waiting."""
        for caller in list(self._waiting):
            self._leave(caller)
            caller.scope.cancel()
            await trio.aclose_forcefully(caller.stream)

    def _leave(self, caller: _Caller) -> None:
        if caller in self._waiting:
            self._waiting.remove(caller)
        if caller in self._ready:
            self._ready.remove(caller)

    async def next(self) -> _Caller:
        """The caller that spoke first among those waiting (it leaves the room)."""
        while not self._ready:
            await self._arrived.wait()
        caller = self._ready[0]
        self._leave(caller)
        return caller


async def serve_box(
    listener: trio.SocketListener,
    handle: Callable[[trio.SocketStream, bytes], Awaitable[None]],
    max_sessions: int | None = None,
    *,
    seats: int = 8,
    greet_seconds: float = 5.0,
    on_drop: Callable[[str], None] | None = None,
) -> int:
    """Accept connections all the time and hand them to ``handle`` one at a time.

    A lockbox has one radio and one conversation at a time, so ``handle`` runs
    once per session, with the stream and the first bytes the phone sent; it
    owns the stream (it must close it). Meanwhile others wait in a
    :class:`_WaitingRoom` of ``seats`` seats, where a caller that stays silent
    for ``greet_seconds`` is dropped and the oldest gives its seat to a new one
    (``on_drop`` hears why). Returns how many sessions ran.
    """
    room = _WaitingRoom(seats, greet_seconds)
    drop = on_drop or (lambda why: None)
    served = 0
    async with trio.open_nursery() as nursery:

        async def accept() -> None:
            while True:
                stream = await listener.accept()
                nursery.start_soon(room.greet, stream, drop)

        nursery.start_soon(accept)
        try:
            while max_sessions is None or served < max_sessions:
                caller = await room.next()
                await handle(caller.stream, caller.first)
                served += 1
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await room.close()
    return served


async def push(
    phone: App,
    host: str,
    port: int,
    *,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    idle_seconds: float | None = PHONE_IDLE_SECONDS,
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> SessionReport:
    """One phone session with the box at ``host:port``, walking away at the budgets given.

    The report counts what really left; when a budget ended the link (the
    agent walked away) or the box fell silent for ``idle_seconds``, that is the
    report's reason, else the phone's own. A box that refuses the phone's
    protocol version (version-1 firmware) is called again with
    :meth:`App.fallback`; the report counts both links.
    """
    stream = await connect(host, port)
    stats = await converse(stream, phone, max_send_bytes=max_bytes, max_seconds=max_seconds,
                           idle_seconds=idle_seconds, rate=rate, on_sent=on_sent)
    r = stats.reason
    link = r.value if r is not None and (r.walk_away or r is LinkEnd.IDLE) else None
    report = phone.report(sent_bytes=stats.sent_bytes, link_reason=link)
    retry = phone.fallback()
    if retry is None:
        return report
    # version-1 firmware refused our Hello: connect again speaking version 1 (budget: what is left)
    left = None if max_bytes is None else max(0, max_bytes - report.sent_bytes)
    again = await push(retry, host, port, max_bytes=left, max_seconds=max_seconds,
                       idle_seconds=idle_seconds, rate=rate, on_sent=on_sent)
    return again.after(report)
