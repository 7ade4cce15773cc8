"""What the box keeps across power cuts (:class:`PState`), and its snapshot form.

The state is only ever changed by journal records (:mod:`fwdist.lockbox._update`);
when a journal half fills up, the whole state is written as a snapshot. The
snapshot is a msgpack array whose layout the ``*Wire`` tuples name field by
field: msgpack writes a tuple as an array, so naming the fields changes no byte
that reaches the flash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from fwdist import protocol as p


def unpack(raw: bytes) -> Any:
    """A snapshot or a record read back from the journal (msgpack, arrays as lists)."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)


class StreamWire(NamedTuple):
    sid: int
    received: int
    done: bool
    sectors: list[int]
    strikes: int = 0  # (written only when not 0, as the snapshot's clock)


class TargetWire(NamedTuple):
    tag: bytes
    version: str
    counter: int
    mslot: int
    mlen: int
    table_sha256: bytes
    phase: int
    trials: int
    streams: list[tuple[Any, ...]]  # StreamWire, without strikes when there are none


class PrevPieceWire(NamedTuple):
    piece: int
    sectors: list[int]


class PrevWire(NamedTuple):
    table_sha256: bytes
    table_len: int
    table_sectors: list[int]
    pieces: list[PrevPieceWire]


class LastWire(NamedTuple):
    version: str
    ok: bool
    outcome: int = 0  # (written, with reason, only when not 0: a failure whose cause is known)
    reason: int = 0


class StampWire(NamedTuple):
    """What the box keeps of the latest verified timestamp: only what concerns its product
    (the latest version, and the revoked versions newer than the one it runs)."""

    version: int
    time: int
    expires: int
    latest: str | None
    revoked: list[str]
    windows: list[list[int]] | None = None  # (written only when there are some)


def trim_defaults(rec: tuple[Any, ...]) -> tuple[Any, ...]:
    """A named tuple's fields without the trailing ones that equal their defaults."""
    defaults: dict[str, Any] = getattr(rec, "_field_defaults", {})
    fields: tuple[str, ...] = getattr(rec, "_fields", ())
    n = len(rec)
    while n and fields[n - 1] in defaults and rec[n - 1] == defaults[fields[n - 1]]:
        n -= 1
    return tuple(rec[:n])


ROOT_ROOM = 1024
"""The largest signed root a box keeps (a 2-of-3 root is 423 bytes)."""
MAX_REVOKED = 16
"""Revoked versions of its product (newer than the one it runs) a box keeps."""


class StateWire(NamedTuple):
    """The snapshot: one msgpack array of these fields, in this order. Trailing fields at
    their defaults are left out (``clock`` only when the box has seen a time, ``seq_limit``
    once it has signed a report, ``root`` once it holds a signed root, ``stamp`` once it has
    verified a timestamp): a box that never did writes the nine-field array it always did."""

    running_version: str
    running_counter: int
    running_sha256: bytes
    running_size: int
    active: int
    target: TargetWire | None
    prev: PrevWire | None
    failed: list[bytes]
    last: tuple[Any, ...] | None  # LastWire, without outcome and reason when both are 0
    clock: int = 0
    seq_limit: int = 0
    root: bytes | None = None
    stamp: tuple[Any, ...] | None = None  # a StampWire, trailing defaults left out


_DEFAULTS = (0, 0, None, None)  # clock, seq_limit, root, stamp
_OPTIONAL_FROM = 9


@dataclass
class Stream:
    """Persisted progress of one piece (or the table): bytes, verified flag, staging sectors."""

    received: int = 0
    done: bool = False
    sectors: list[int] = field(default_factory=list)
    strikes: int = 0
    """How often the piece was rolled back to a prefix staged before a failing session."""


def _stream_wire(sid: int, st: Stream) -> tuple[Any, ...]:
    w = StreamWire(sid, st.received, st.done, st.sectors, st.strikes)
    return w if st.strikes else w[:-1]


@dataclass
class TargetRec:
    """The release being worked towards."""

    tag: bytes
    version: str
    counter: int
    mslot: int
    mlen: int
    table_sha256: bytes
    phase: p.BoxState = p.BoxState.RECEIVING
    trials: int = 0
    streams: dict[int, Stream] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.phase = p.BoxState(self.phase)  # a snapshot holds a plain int

    def stream(self, sid: int) -> Stream:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = Stream()
        return st


@dataclass
class Prev:
    """Verified pieces of a replaced target, kept until the new table says which are shared."""

    table_sha256: bytes
    table_len: int
    table_sectors: list[int]
    pieces: dict[int, list[int]]


@dataclass
class PState:
    """Everything the box keeps across power cuts; the replay of the journal."""

    running_version: str
    running_counter: int
    running_sha256: bytes
    running_size: int
    active: int = 0
    target: TargetRec | None = None
    prev: Prev | None = None
    failed: list[bytes] = field(default_factory=list)
    last: tuple[str, bool] | None = None
    clock: int = 0
    """The latest time the box has proof of (a signed manifest's ``created``, a verified
    timestamp's time): a lower bound on the time now, which a box without a clock checks
    expiry against."""
    outcome: int = 0
    """Why the last install failed (a :class:`fwdist.report.Outcome`), 0 when it succeeded or
    its cause was not recorded; ``reason`` the :class:`~fwdist.protocol.Reason` with it."""
    reason: int = 0
    seq_limit: int = 0
    """Report sequence numbers below this are reserved (maybe used): after a reboot the box
    signs its next report with ``seq_limit``, never a number it may have used before."""
    root: bytes | None = None
    """The signed root the box trusts (:mod:`fwdist.trust`); None: the legacy keys it was
    built with (``lockbox init --pubkey``)."""
    stamp: StampWire | None = None

    def used_sectors(self) -> set[int]:
        used: set[int] = set()
        if self.target:
            for s in self.target.streams.values():
                used.update(s.sectors)
        if self.prev:
            used.update(self.prev.table_sectors)
            for secs in self.prev.pieces.values():
                used.update(secs)
        return used

    def to_wire(self) -> tuple[Any, ...]:
        t = self.target
        tw = None if t is None else TargetWire(
            t.tag, t.version, t.counter, t.mslot, t.mlen, t.table_sha256, t.phase, t.trials,
            [_stream_wire(sid, st) for sid, st in sorted(t.streams.items())],
        )
        pv = self.prev
        pw = None if pv is None else PrevWire(
            pv.table_sha256, pv.table_len, pv.table_sectors,
            [PrevPieceWire(i, s) for i, s in sorted(pv.pieces.items())],
        )
        last = None
        if self.last is not None:
            lw = LastWire(*self.last, self.outcome, self.reason)
            last = lw if self.outcome or self.reason else lw[:2]
        w = StateWire(self.running_version, self.running_counter, self.running_sha256,
                      self.running_size, self.active, tw, pw, self.failed, last, self.clock,
                      self.seq_limit, self.root,
                      None if self.stamp is None else trim_defaults(self.stamp))
        n = len(w)
        while n > _OPTIONAL_FROM and w[n - 1] == _DEFAULTS[n - 1 - _OPTIONAL_FROM]:
            n -= 1
        return w[:n]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> PState:
        w = StateWire(*raw)
        s = cls(w.running_version, w.running_counter, w.running_sha256, w.running_size, w.active)
        if w.target is not None:
            t = TargetWire(*w.target)
            streams = {sw.sid: Stream(sw.received, sw.done, list(sw.sectors), sw.strikes)
                       for sw in (StreamWire(*x) for x in t.streams)}
            s.target = TargetRec(t.tag, t.version, t.counter, t.mslot, t.mlen, t.table_sha256,
                                 p.BoxState(t.phase), t.trials, streams)
        if w.prev is not None:
            pv = PrevWire(*w.prev)
            pieces = {pp.piece: list(pp.sectors) for pp in (PrevPieceWire(*x) for x in pv.pieces)}
            s.prev = Prev(pv.table_sha256, pv.table_len, list(pv.table_sectors), pieces)
        s.failed = list(w.failed)
        if w.last is not None:
            lw = LastWire(*w.last)
            s.last, s.outcome, s.reason = (lw.version, lw.ok), lw.outcome, lw.reason
        s.clock, s.seq_limit = w.clock, w.seq_limit
        s.root = w.root
        s.stamp = None if w.stamp is None else StampWire(*w.stamp)
        return s
