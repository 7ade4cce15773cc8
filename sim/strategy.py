"""What a strategy is to the engine: a per-box model that turns an access into bytes.

A :class:`Strategy` makes one :class:`BoxModel` per box. At every access the
engine calls :meth:`BoxModel.access` with the shared draws; the model moves at
most ``access.budget`` bytes (the bytes that fit before the walk-away), updates
its :class:`Progress` and returns the bytes it put on the air. Models never draw
random numbers: everything random is in the :class:`~sim.draws.Access`.

Models that can also run frame by frame implement :meth:`BoxModel.open_session`:
the trio link in :mod:`sim.link` then delivers frames with one ``trio.sleep``
each under ``move_on_after``, which checks that the budget arithmetic equals a
real cancel at the exact byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sim.draws import Access, BoxDraw

BLOCK = 16 * 1024  # granularity of a partial phone cache for the raw-image strategies


@dataclass
class Progress:
    """Byte accounting of one box under one strategy.

    ``air``: every byte on the air, both directions, including the frame lost at
    the walk-away. ``overhead``: delivered bytes that are protocol, not payload
    (headers, handshakes, manifests, piece tables). ``kept``: payload bytes the
    box holds now. ``payload``: payload bytes the strategy must deliver in all.
    Whatever was on the air and is neither overhead nor kept at the end was
    wasted (lost frames, discarded partial objects, restarted transfers).
    """

    payload: int
    air: int = 0
    overhead: int = 0
    kept: int = 0
    done: bool = False
    errors: int = 0  # sessions after which the real box failed or reverted an install (a bug)

    @property
    def wasted(self) -> int:
        return self.air - self.overhead - self.kept


class FrameSession(Protocol):
    """A session driven frame by frame (the fine-grained link mode)."""

    def next_frame(self) -> int | None:
        """Size in bytes of the next frame to send, or None when the session has nothing more."""

    def delivered(self) -> None:
        """The frame announced by :meth:`next_frame` arrived whole."""

    def lost(self, sent: int) -> None:
        """The walk-away cut the frame in flight after ``sent`` of its bytes."""

    def finish(self) -> None:
        """The link is gone (done or cut): settle the box's state and the byte accounting."""


class BoxModel(Protocol):
    progress: Progress

    def access(self, a: Access) -> int:
        """Run one session within ``a.budget`` bytes; return the bytes on the air."""

    def open_session(self, a: Access) -> FrameSession | None:
        """The same session, frame by frame, or None if this model has no frame-level mode."""


class Strategy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def new_box(self, box: BoxDraw) -> BoxModel: ...
