"""Moving a session's bytes between two sans-I/O endpoints in memory: the one pump.

Both sides of the conversation are sans-I/O objects with one small surface
(:class:`Endpoint`, the h11/wsproto shape): ``receive_data(bytes)`` takes what
the peer sent (``b""`` = the link dropped), ``data_to_send()`` hands out what
should go on the air now, ``session_over`` says there is nothing more to say.
:class:`Pump` moves what one side says to the other, one chunk at a time, and
nothing else: no trio, no socket, no clock. It is what runs a session

- in the demo and the tests (:func:`pump_session`, :func:`run_session_sync`),
- in the simulator, many thousand times (coarse: :meth:`Pump.run`; frame by
  frame in trio virtual time: :meth:`Pump.next_chunk` / :meth:`Pump.deliver` /
  :meth:`Pump.cut`, with the simulator deciding when each chunk has crossed).

Over real streams the same endpoints are driven by :mod:`fwdist.trio_link`.

Two choices differ between those uses, and each is a parameter, not a copy of
the loop: who speaks next (:class:`Turns`) and whose bytes a byte budget counts
(:class:`Charge`). The agent walking away is the budget running out: the chunk
that crosses it is delivered only up to the budget, then the link drops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fwdist.lockbox import Session

if TYPE_CHECKING:
    from fwdist.app import App, SessionReport

MAX_ROUNDS = 1_000_000  # times the phone is asked before a conversation counts as stalled


class Endpoint(Protocol):
    """One side of a session, sans-I/O (the lockbox session, or :class:`fwdist.app.App`)."""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the link is gone (EOF, walk-away, reset)."""

    def data_to_send(self) -> bytes:
        """Bytes to put on the air now; ``b""`` when there is nothing to send yet."""

    @property
    def session_over(self) -> bool:
        """True once this side has nothing more to say in this session."""


class LinkEnd(enum.Enum):
    """Why a link ended, when this side did not end it itself (the value is what reports say)."""

    MAX_BYTES = "max-bytes"  # the byte budget ran out: the agent walked away
    MAX_SECONDS = "max-seconds"  # the time budget ran out: the agent walked away
    PEER_CLOSED = "peer closed the link"
    IDLE = "idle: no byte moved for the idle timeout"  # a silent peer, or one that never reads
    STALLED = "stalled: neither side has anything to send"

    @property
    def walk_away(self) -> bool:
        """A budget ran out: the agent left, nothing broke."""
        return self in (LinkEnd.MAX_BYTES, LinkEnd.MAX_SECONDS)


class Side(enum.Enum):
    PHONE = "phone"
    BOX = "box"


class Turns(enum.Enum):
    """Who is asked to speak next; the two differ only after the phone has spoken.

    Either way the phone is asked first in every round, and the conversation is
    over when a whole round (the phone asked, then the box) moved nothing.
    """

    ROUNDS = "rounds"  # phone, then box, then phone...: the demo's and the tests' sessions
    # The box speaks only when the phone has nothing to say: the simulator's link, where
    # the box's acknowledgements queue behind the phone's stream on the shared air.
    PHONE_FIRST = "phone-first"


_AFTER_PHONE_SPOKE = {Turns.ROUNDS: Side.BOX, Turns.PHONE_FIRST: Side.PHONE}


class Charge(enum.Enum):
    """Whose bytes count against a byte budget."""

    PHONE = "phone"  # what the agent's phone sends (``--max-bytes``); the box's replies are free
    AIR = "air"  # both directions: BLE air time is shared, so acknowledgements cost the transfer


@dataclass(frozen=True)
class PumpResult:
    """Bytes moved by :func:`run_session_sync`, each direction, and why it stopped.

    ``cut_bytes`` counts what the side whose chunk the budget cut had queued
    that never left (the rest of the cut frame and any frames after it).
    """

    phone_sent: int
    box_sent: int
    cut_bytes: int
    reason: LinkEnd | None


class Pump:
    """Two endpoints and the chunk between them: ask, deliver (or cut), close.

    :meth:`next_chunk` asks the endpoints in :class:`Turns` order and returns
    the next chunk to cross, or None when the conversation is over (``reason``
    then says STALLED if neither side had finished). The caller delivers it
    whole (:meth:`deliver`) or cut (:meth:`cut`: the first ``sent`` bytes
    arrive, then the link drops). :meth:`close` tells both endpoints the link
    is gone; :meth:`run` is the whole loop under a byte budget.
    """

    def __init__(
        self,
        box: Endpoint,
        phone: Endpoint,
        turns: Turns = Turns.ROUNDS,
        max_rounds: int = MAX_ROUNDS,
    ) -> None:
        self.box = box
        self.phone = phone
        self.after_phone = _AFTER_PHONE_SPOKE[turns]
        self.max_rounds = max_rounds
        self.phone_sent = 0
        self.box_sent = 0
        self.chunk = b""  # the chunk last handed out by next_chunk
        self.speaker = Side.PHONE  # who said it
        self.cut_prefix = b""  # what left of the chunk the link dropped in, if it did
        self.reason: LinkEnd | None = None
        self.over = False  # nothing more crosses: quiet, stalled, or cut
        self.closed = False  # both endpoints were told the link is gone
        self._turn = Side.PHONE
        self._rounds = 0
        self._moved = False  # whether the current round moved a chunk

    @property
    def air(self) -> int:
        """Bytes that crossed, both directions, including the part of a cut chunk that left."""
        return self.phone_sent + self.box_sent

    def next_chunk(self) -> bytes | None:
        """The next chunk to cross (``speaker`` says whose), or None when nothing more will."""
        if self.over:
            return None
        while True:
            side = self._turn
            if side is Side.PHONE:
                if self._rounds >= self.max_rounds:
                    self._stop(LinkEnd.STALLED)
                    return None
                self._rounds += 1
                self._moved = False
                out = self.phone.data_to_send()
                self._turn = self.after_phone if out else Side.BOX
            else:
                out = self.box.data_to_send()
                self._turn = Side.PHONE
                if not out and not self._moved:
                    quiet = self.phone.session_over or self.box.session_over
                    self._stop(None if quiet else LinkEnd.STALLED)
                    return None
            if out:
                self._moved = True
                self.chunk, self.speaker = out, side
                return out

    def deliver(self) -> None:
        """The chunk from :meth:`next_chunk` arrived whole."""
        if self.speaker is Side.PHONE:
            self.phone_sent += len(self.chunk)
            self.box.receive_data(self.chunk)
        else:
            self.box_sent += len(self.chunk)
            self.phone.receive_data(self.chunk)

    def cut(self, sent: int, reason: LinkEnd = LinkEnd.MAX_BYTES) -> None:
        """The link dropped after the first ``sent`` bytes of the chunk: they arrive, no more."""
        self.cut_prefix = self.chunk[:sent]
        if sent:
            if self.speaker is Side.PHONE:
                self.box.receive_data(self.cut_prefix)
            else:
                self.phone.receive_data(self.cut_prefix)
        if self.speaker is Side.PHONE:
            self.phone_sent += sent
        else:
            self.box_sent += sent
        self._stop(reason)

    def close(self) -> None:
        """The link is gone: each endpoint gets ``receive_data(b"")``, once, box first."""
        if not self.closed:
            self.closed = self.over = True
            self.box.receive_data(b"")
            self.phone.receive_data(b"")

    def run(self, budget: int | None = None, charge: Charge = Charge.PHONE) -> PumpResult:
        """Move chunks until the conversation is over or ``budget`` bytes are spent; then close.

        The chunk that would cross the budget is cut at it (:meth:`cut`).
        """
        used = cut = 0
        while (chunk := self.next_chunk()) is not None:
            charged = charge is Charge.AIR or self.speaker is Side.PHONE
            if budget is not None and charged and used + len(chunk) > budget:
                room = max(0, budget - used)
                cut = len(chunk) - room
                self.cut(room)
                break
            self.deliver()
            if charged:
                used += len(chunk)
        self.close()
        return PumpResult(self.phone_sent, self.box_sent, cut, self.reason)

    def _stop(self, reason: LinkEnd | None) -> None:
        self.over = True
        self.reason = reason


def run_session_sync(
    box: Endpoint,
    phone: Endpoint,
    budget_bytes: int | None = None,
    max_rounds: int = MAX_ROUNDS,
) -> PumpResult:
    """Move bytes between two endpoints until both are done or the phone's budget is spent.

    ``budget_bytes`` bounds what the phone sends (the agent walks away after
    that many bytes): the frame that crosses the budget is delivered only up
    to the budget and then the link drops, so the box sees a cut frame and
    EOF, exactly as over TCP. Both endpoints always get ``receive_data(b"")``
    at the end. The box must already have been opened by the caller (its
    opening frame queued); nothing here knows about time.
    """
    return Pump(box, phone, Turns.ROUNDS, max_rounds).run(budget_bytes, Charge.PHONE)


class SessionBox(Protocol):
    """What a lockbox offers a link (:class:`fwdist.lockbox.Lockbox` has exactly this)."""

    @property
    def session(self) -> Session: ...

    def open_session(self, now: int = 0) -> bytes: ...

    def receive_data(self, data: bytes, now: int = 0) -> bytes: ...

    def end_session(self, now: int = 0) -> None: ...


class BoxEndpoint:
    """Adapts a lockbox (bytes in, bytes out per call) to the :class:`Endpoint` surface.

    Constructing it opens the session (``open_session``); ``receive_data(b"")``
    ends it (``end_session``): the box forgets the frame it was in the middle
    of, keeps what it persisted, and is ready for its idle step.
    """

    def __init__(self, box: SessionBox, now: int = 0) -> None:
        self.box = box
        self.now = now
        self._out = bytearray(box.open_session(now))
        self.ended = False

    def receive_data(self, data: bytes) -> None:
        if self.ended:
            return
        if not data:
            self.ended = True
            self.box.end_session(self.now)
            return
        self._out += self.box.receive_data(data, self.now)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def session_over(self) -> bool:
        return self.ended or self.box.session is Session.DONE


def pump_session(
    box: SessionBox, phone: App, budget_bytes: int | None = None, now: int = 0
) -> SessionReport:
    """One whole session between a lockbox and a phone, in memory, no trio.

    The box's session is opened and ended here; its idle step (build, install)
    is the caller's, as in a real box. A box that refuses the phone's protocol
    version (version-1 firmware) gets a second link with :meth:`App.fallback`,
    and the report counts both. The report counts what really crossed:
    ``sent_bytes`` stops at the budget, and the frame the budget cut counts as
    sent and as overhead, never as payload.
    """
    result = run_session_sync(BoxEndpoint(box, now), phone, budget_bytes)
    link = result.reason if result.reason in (LinkEnd.MAX_BYTES, LinkEnd.STALLED) else None
    report = phone.report(sent_bytes=result.phone_sent, link_reason=link.value if link else None)
    retry = phone.fallback()
    if retry is None:
        return report
    # version-1 firmware refused our Hello: reconnect speaking version 1, on what budget is left
    left = None if budget_bytes is None else max(0, budget_bytes - report.sent_bytes)
    return pump_session(box, retry, left, now).after(report)
