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
from collections.abc import Callable
from typing import Any, NamedTuple

from fwdist import protocol as p
from fwdist.air import PIECE_HASH_BYTES
from fwdist.lockbox._config import LockboxError
from fwdist.lockbox._state import Prev, PState, StampWire, Stream, TargetRec, trim_defaults

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
    CLOCK = 15
    ROLLBACK = 16
    ROOT = 17
    STAMP = 18
    REPORT_SEQ = 21
    GIVE_UP = 22


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


class Rollback(NamedTuple):
    """Piece ``sid`` failed its hash: go back to the ``received`` bytes staged before the
    session that finished it (its first ``keep`` sectors), one strike more."""

    sid: int
    received: int
    keep: int


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


class GiveUp(NamedTuple):
    """As :class:`Fail`, with the cause: ``outcome`` a :class:`fwdist.report.Outcome`,
    ``reason`` the :class:`~fwdist.protocol.Reason` of a refusal (else 0). One record, so a
    power cut never leaves a failure without its cause or a cause without its failure."""

    outcome: int
    reason: int


class ReportSeq(NamedTuple):
    """The box may sign reports with sequence numbers below ``limit`` (reserved a block at a
    time, so most reports write no flash; a reboot skips what was reserved and not used)."""

    limit: int


class Clock(NamedTuple):
    """The box has proof that the time is at least ``time`` (a verified manifest's ``created``)."""

    time: int


class RootLink(NamedTuple):
    """The box trusts root ``wire`` from now on (verified as the next link of its chain)."""

    wire: bytes


class Stamp(NamedTuple):
    """A verified timestamp, as much of it as concerns this box; its time is proof that the
    time is at least ``time`` (the clock moves with it, in the same record)."""

    version: int
    time: int
    expires: int
    latest: str | None
    revoked: list[str]
    windows: list[list[int]] | None = None
    """This product's daily install windows, ``[start minute, minutes]`` (None: any time);
    in the same record as the time, so a power cut never leaves a new stamp with old windows.
    Left off the flash when None (:func:`record_wire`): a stamp's bytes as before windows."""


Record = (Target | Alloc | Replace | Trim | Progress | Done | Keep | DropPrev | Reset | Built
          | Trial | Revert | Confirm | Fail | Clock | Rollback | RootLink | Stamp | ReportSeq
          | GiveUp)

RECORD_TYPES: dict[Rec, type[Record]] = {
    Rec.TARGET: Target, Rec.ALLOC: Alloc, Rec.REPLACE: Replace, Rec.TRIM: Trim,
    Rec.PROGRESS: Progress, Rec.DONE: Done, Rec.KEEP: Keep, Rec.DROP_PREV: DropPrev,
    Rec.RESET: Reset, Rec.BUILT: Built, Rec.TRIAL: Trial, Rec.REVERT: Revert,
    Rec.CONFIRM: Confirm, Rec.FAIL: Fail, Rec.CLOCK: Clock,
    Rec.ROLLBACK: Rollback, Rec.ROOT: RootLink, Rec.STAMP: Stamp,
    Rec.REPORT_SEQ: ReportSeq, Rec.GIVE_UP: GiveUp,
}
KIND: dict[type[Record], Rec] = {cls: kind for kind, cls in RECORD_TYPES.items()}


def record_wire(rec: Record) -> list[Any]:
    """The array a record is on the flash: its kind, then its fields in order (trailing
    fields at their defaults left out, as the snapshot does)."""
    return [KIND[type(rec)], *trim_defaults(rec)]



def record_from_wire(w: list[Any]) -> Record:
    try:
        cls = RECORD_TYPES[Rec(w[0])]
        return cls(*w[1:])
    except (ValueError, TypeError, IndexError):
        raise LockboxError(f"unknown journal record {w!r}") from None


# --------------------------------------------------------------------------- the table

_B = p.BoxState
_TRANSFER = (Rec.ALLOC, Rec.REPLACE, Rec.TRIM, Rec.PROGRESS, Rec.DONE, Rec.KEEP, Rec.RESET,
             Rec.ROLLBACK)

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
    (_B.RECEIVING, Rec.GIVE_UP): _B.IDLE,  # (FAIL with its cause, as in each phase below)
    (_B.BUILT, Rec.TARGET): _B.RECEIVING,  # a newer release while waiting to install
    (_B.BUILT, Rec.DROP_PREV): _B.BUILT,
    (_B.BUILT, Rec.TRIAL): _B.TESTING,  # boot the new image in test mode
    (_B.BUILT, Rec.FAIL): _B.IDLE,  # the stored manifest no longer verifies
    (_B.BUILT, Rec.GIVE_UP): _B.IDLE,
    (_B.TESTING, Rec.CONFIRM): _B.IDLE,  # self-test passed: the new image runs
    (_B.TESTING, Rec.FAIL): _B.IDLE,  # self-test failed (or too many trials): old image
    (_B.TESTING, Rec.GIVE_UP): _B.IDLE,
    (_B.TESTING, Rec.REVERT): _B.BUILT,  # reset during the trial: old image, try again later
    **{(ph, Rec.CLOCK): ph for ph in UPDATE_PHASES},  # time moves on in every phase
    **{(ph, Rec.ROOT): ph for ph in UPDATE_PHASES},  # a root rotates in every phase
    **{(ph, Rec.STAMP): ph for ph in UPDATE_PHASES},  # and a timestamp arrives in every phase
    **{(ph, Rec.REPORT_SEQ): ph for ph in UPDATE_PHASES},  # reports are signed in every phase
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
    t = s.target
    before = _B.IDLE if t is None else t.phase
    after = PHASES.get((before, kind))
    if after is None:
        raise LockboxError(f"journal record {kind.name} is not allowed in phase {before.name}")
    if t is not None and kind in _TARGET_EFFECTS:
        _TARGET_EFFECTS[kind](s, t, rec)
    elif kind in _STATE_EFFECTS:
        _STATE_EFFECTS[kind](s, rec)
    else:  # (PHASES allows no record about the target while there is none)
        raise LockboxError(f"journal record {kind.name} needs a target")
    t = s.target
    if (_B.IDLE if t is None else t.phase) != after:
        raise LockboxError(f"{kind.name} in {before.name} led to {phase_of(s).name}, "
                           f"not {after.name}")


# -- what each record does (once PHASES allowed it): to the whole state ...

def _new_target(s: PState, rec: Target) -> None:
    t = s.target
    # a format 2 target whose rows came inside its manifest (a 24-byte table key) has no
    # table stream: its done pieces are kept all the same
    inline = t is not None and len(t.table_sha256) == PIECE_HASH_BYTES and TABLE not in t.streams
    if t is not None and (t.streams.get(TABLE, Stream()).done or inline):
        tbl = t.streams.get(TABLE, Stream())
        s.prev = Prev(t.table_sha256, tbl.received, tbl.sectors,
                      {i: st.sectors for i, st in t.streams.items() if i >= 0 and st.done})
    s.target = TargetRec(*rec)


def _drop_prev(s: PState, rec: DropPrev) -> None:
    s.prev = None


def _clock(s: PState, rec: Clock) -> None:
    s.clock = max(s.clock, rec.time)


def _report_seq(s: PState, rec: ReportSeq) -> None:
    s.seq_limit = max(s.seq_limit, rec.limit)


def _root(s: PState, rec: RootLink) -> None:
    s.root = rec.wire


def _stamp(s: PState, rec: Stamp) -> None:
    s.stamp = StampWire(*rec)
    s.clock = max(s.clock, rec.time)


_STATE_EFFECTS: dict[Rec, Callable[[PState, Any], None]] = {
    Rec.TARGET: _new_target, Rec.DROP_PREV: _drop_prev, Rec.CLOCK: _clock,
    Rec.ROOT: _root, Rec.STAMP: _stamp, Rec.REPORT_SEQ: _report_seq,
}


# -- ... and to the target

def _alloc(s: PState, t: TargetRec, rec: Alloc) -> None:
    t.stream(rec.sid).sectors.append(rec.sector)


def _replace(s: PState, t: TargetRec, rec: Replace) -> None:
    t.stream(rec.sid).sectors[rec.position] = rec.sector


def _trim(s: PState, t: TargetRec, rec: Trim) -> None:
    st = t.stream(rec.sid)
    st.sectors = st.sectors[: rec.keep]


def _progress(s: PState, t: TargetRec, rec: Progress) -> None:
    t.stream(rec.sid).received = rec.received


def _done(s: PState, t: TargetRec, rec: Done) -> None:
    t.stream(rec.sid).done = True


def _keep(s: PState, t: TargetRec, rec: Keep) -> None:
    if s.prev is None:
        raise LockboxError("KEEP needs the replaced target's pieces")
    t.streams[rec.sid] = Stream(rec.size, True, s.prev.pieces.pop(rec.prev_sid))


def _reset(s: PState, t: TargetRec, rec: Reset) -> None:
    t.streams.pop(rec.sid, None)


def _rollback(s: PState, t: TargetRec, rec: Rollback) -> None:
    st = t.stream(rec.sid)
    st.received, st.sectors = rec.received, st.sectors[: rec.keep]
    st.strikes += 1


def _built(s: PState, t: TargetRec, rec: Built | Revert) -> None:
    t.phase = _B.BUILT


def _trial(s: PState, t: TargetRec, rec: Trial) -> None:
    t.phase = _B.TESTING
    t.trials += 1


def _confirm(s: PState, t: TargetRec, rec: Confirm) -> None:
    s.running_version, s.running_counter = rec.version, rec.counter
    s.running_sha256, s.running_size = rec.sha256, rec.size
    s.active ^= 1
    s.last = (rec.version, True)
    s.outcome = s.reason = 0
    s.target = s.prev = None


def _fail(s: PState, t: TargetRec, rec: Fail | GiveUp) -> None:
    s.failed = [*s.failed, t.tag][-8:]
    s.last = (t.version, False)
    s.outcome, s.reason = (rec.outcome, rec.reason) if isinstance(rec, GiveUp) else (0, 0)
    s.target = s.prev = None


_TARGET_EFFECTS: dict[Rec, Callable[[PState, TargetRec, Any], None]] = {
    Rec.ALLOC: _alloc, Rec.REPLACE: _replace, Rec.TRIM: _trim, Rec.PROGRESS: _progress,
    Rec.DONE: _done, Rec.KEEP: _keep, Rec.RESET: _reset, Rec.BUILT: _built, Rec.TRIAL: _trial,
    Rec.REVERT: _built, Rec.CONFIRM: _confirm, Rec.FAIL: _fail, Rec.ROLLBACK: _rollback,
    Rec.GIVE_UP: _fail,
}
