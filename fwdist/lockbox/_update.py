"""The update machine: journal records, and the table that says which may follow which.

What the box holds across sessions, phones and power cuts (:class:`PState`) is
changed only by journal records (:func:`apply_record`), each allowed or refused
by the table :data:`PHASES` of ``(phase, record kind) -> phase``, so the state
after a reboot is exactly the replay of what reached flash.

Each record kind is a named tuple; on the flash a record is the msgpack array
``[kind, *fields]`` (:func:`record_wire`, :func:`record_from_wire`).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple, assert_never

from fwdist import protocol as p
from fwdist.lockbox._config import LockboxError
from fwdist.lockbox._state import Prev, PState, Stream, TargetRec

TABLE = p.TABLE  # the stream id of the piece table


class Rec(enum.IntEnum):
    """Journal record kinds; the first element of each record array."""

    TARGET = 1
    ALLOC = 2
    REPLACE = 3
    TRIM = 4
    PROGRESS = 5
    DONE = 6
    KEEP = 7
    DROP_PREV = 8
    RESET = 9
    BUILT = 10
    TRIAL = 11
    REVERT = 12
    CONFIRM = 13
    FAIL = 14


class Target(NamedTuple):
    """A release becomes the target (its manifest is in manifest slot ``mslot``)."""

    tag: bytes
    version: str
    counter: int
    mslot: int
    mlen: int
    table_sha256: bytes


class Alloc(NamedTuple):
    """Staging sector ``sector`` (erased just before) is the next sector of stream ``sid``."""

    sid: int
    sector: int


class Replace(NamedTuple):
    """Sector number ``position`` of stream ``sid`` moves to ``sector`` (a torn tail relocated)."""

    sid: int
    position: int
    sector: int


class Trim(NamedTuple):
    """Stream ``sid`` keeps only its first ``keep`` sectors (after a reboot)."""

    sid: int
    keep: int


class Progress(NamedTuple):
    """Stream ``sid`` holds ``received`` bytes (one per data frame)."""

    sid: int
    received: int


class Done(NamedTuple):
    """Stream ``sid`` is whole and matches its hash."""

    sid: int


class Keep(NamedTuple):
    """Piece ``sid`` of the new table is piece ``prev_sid`` of the replaced one: adopt it."""

    sid: int
    prev_sid: int
    size: int


class DropPrev(NamedTuple):
    """The replaced target's pieces are given up (their sectors are free)."""


class Reset(NamedTuple):
    """Stream ``sid`` failed its hash: forget it, free its sectors."""

    sid: int


class Built(NamedTuple):
    """Every piece verified, and the new image built and checked in the other slot."""


class Trial(NamedTuple):
    """The new image boots in test mode."""


class Revert(NamedTuple):
    """Reset during the trial: the old image runs, the install is tried again later."""


class Confirm(NamedTuple):
    """The new image passed its self-test and runs from now on."""

    version: str
    counter: int
    sha256: bytes
    size: int


class Fail(NamedTuple):
    """The target is given up (bad build, failed self-test, manifest no longer valid)."""


Record = (Target | Alloc | Replace | Trim | Progress | Done | Keep | DropPrev | Reset | Built
          | Trial | Revert | Confirm | Fail)

RECORD_TYPES: dict[Rec, type[Record]] = {
    Rec.TARGET: Target, Rec.ALLOC: Alloc, Rec.REPLACE: Replace, Rec.TRIM: Trim,
    Rec.PROGRESS: Progress, Rec.DONE: Done, Rec.KEEP: Keep, Rec.DROP_PREV: DropPrev,
    Rec.RESET: Reset, Rec.BUILT: Built, Rec.TRIAL: Trial, Rec.REVERT: Revert,
    Rec.CONFIRM: Confirm, Rec.FAIL: Fail,
}
KIND: dict[type[Record], Rec] = {cls: kind for kind, cls in RECORD_TYPES.items()}


def record_wire(rec: Record) -> list[Any]:
    """The array a record is on the flash: its kind, then its fields in order."""
    return [KIND[type(rec)], *rec]


def record_from_wire(w: list[Any]) -> Record:
    try:
        cls = RECORD_TYPES[Rec(w[0])]
        return cls(*w[1:])
    except (ValueError, TypeError, IndexError):
        raise LockboxError(f"unknown journal record {w!r}") from None


# --------------------------------------------------------------------------- the table

_B = p.BoxState
_TRANSFER = (Rec.ALLOC, Rec.REPLACE, Rec.TRIM, Rec.PROGRESS, Rec.DONE, Rec.KEEP, Rec.RESET)

UPDATE_PHASES = (_B.IDLE, _B.RECEIVING, _B.BUILT, _B.TESTING)
"""The phases the journal can hold (the others in :class:`~fwdist.protocol.BoxState` are
reports derived from these)."""

PHASES: dict[tuple[p.BoxState, Rec], p.BoxState] = {
    (_B.IDLE, Rec.TARGET): _B.RECEIVING,
    (_B.IDLE, Rec.DROP_PREV): _B.IDLE,
    (_B.RECEIVING, Rec.TARGET): _B.RECEIVING,  # a newer release replaces the target
    **{(_B.RECEIVING, rec): _B.RECEIVING for rec in (*_TRANSFER, Rec.DROP_PREV)},
    (_B.RECEIVING, Rec.BUILT): _B.BUILT,  # every piece verified, the new image checked
    (_B.RECEIVING, Rec.FAIL): _B.IDLE,  # the image did not build to the signed SHA-256
    (_B.BUILT, Rec.TARGET): _B.RECEIVING,  # a newer release while waiting to install
    (_B.BUILT, Rec.DROP_PREV): _B.BUILT,
    (_B.BUILT, Rec.TRIAL): _B.TESTING,  # boot the new image in test mode
    (_B.BUILT, Rec.FAIL): _B.IDLE,  # the stored manifest no longer verifies
    (_B.TESTING, Rec.CONFIRM): _B.IDLE,  # self-test passed: the new image runs
    (_B.TESTING, Rec.FAIL): _B.IDLE,  # self-test failed (or too many trials): old image
    (_B.TESTING, Rec.REVERT): _B.BUILT,  # reset during the trial: old image, try again later
}
"""The update machine: (phase, journal record) -> phase after it. Other records are refused."""


def phase_of(s: PState) -> p.BoxState:
    return _B.IDLE if s.target is None else s.target.phase


def apply_record(s: PState, rec: Record) -> None:
    """Change ``s`` by one journal record (the only way persistent state changes).

    The record must be allowed in the current phase by :data:`PHASES`, and the
    phase after it is checked against the table too.
    """
    kind = KIND[type(rec)]
    before = phase_of(s)
    after = PHASES.get((before, kind))
    if after is None:
        raise LockboxError(f"journal record {kind.name} is not allowed in phase {before.name}")
    _apply(s, rec)
    if phase_of(s) != after:
        raise LockboxError(f"{kind.name} in {before.name} led to {phase_of(s).name}, "
                           f"not {after.name}")


def _apply(s: PState, rec: Record) -> None:
    t = s.target
    if isinstance(rec, Target):
        if t is not None and t.streams.get(TABLE, Stream()).done:
            tbl = t.streams[TABLE]
            s.prev = Prev(t.table_sha256, tbl.received, tbl.sectors,
                          {i: st.sectors for i, st in t.streams.items() if i >= 0 and st.done})
        s.target = TargetRec(*rec)
        return
    if isinstance(rec, DropPrev):
        s.prev = None
        return
    if t is None:  # PHASES allows no other record without a target
        raise LockboxError(f"journal record {rec!r} needs a target")
    match rec:
        case Progress(sid, received):  # first: one per data frame
            t.stream(sid).received = received
        case Alloc(sid, sector):
            t.stream(sid).sectors.append(sector)
        case Replace(sid, position, sector):
            t.stream(sid).sectors[position] = sector
        case Trim(sid, keep):
            st = t.stream(sid)
            st.sectors = st.sectors[:keep]
        case Done(sid):
            t.stream(sid).done = True
        case Keep(sid, prev_sid, size):
            assert s.prev is not None
            t.streams[sid] = Stream(size, True, s.prev.pieces.pop(prev_sid))
        case Reset(sid):
            t.streams.pop(sid, None)
        case Built() | Revert():
            t.phase = _B.BUILT
        case Trial():
            t.phase = _B.TESTING
            t.trials += 1
        case Confirm(version, counter, sha256, size):
            s.running_version, s.running_counter = version, counter
            s.running_sha256, s.running_size = sha256, size
            s.active ^= 1
            s.last = (version, True)
            s.target = s.prev = None
        case Fail():
            s.failed = [*s.failed, t.tag][-8:]
            s.last = (t.version, False)
            s.target = s.prev = None
        case _:
            assert_never(rec)
