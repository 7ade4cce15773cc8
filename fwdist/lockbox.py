"""The lockbox: a sans-I/O state machine that receives, verifies and installs releases.

Nothing in here does I/O, keeps time or threads: bytes come in through
:meth:`Lockbox.receive_data` and the bytes to send come back out; time is the
``now`` argument (seconds, used for manifest expiry); storage is an injected
:class:`~fwdist.flash.Flash`. That is what lets the same code run in a TCP
process, inside the simulator and under hypothesis' stateful testing.

Two machines live here:

* the **session** (one conversation with one phone) is a table of
  ``(state, event type) -> (action, allowed next states)`` in
  :data:`TRANSITIONS`, h11-style: anything not in the table is a protocol
  error;
* the **update** (what the box holds across sessions, phones and power cuts) is
  :class:`PState`, changed only by journal records (:func:`apply_record`), each
  allowed or refused by the table :data:`PHASES` of ``(phase, record) -> phase``,
  so the state after a reboot is exactly the replay of what reached flash.

``tests/unit/test_lockbox.py`` checks every cell of both tables.

Staging costs flash for the freedom it buys: every piece starts on a sector
boundary, so a payload of small pieces needs about one extra sector per piece
(:meth:`BoxConfig.staging_sectors_for`).

Flash layout (:class:`Layout`): two journal halves, two manifest slots, image
slots 0 and 1 (direct-XIP style: ``active`` says which one runs, a new image
is built in the other, and confirming it flips ``active``, leaving the old
image behind for the next update), and a staging area of sectors handed out
to pieces one at a time (a tiny FAT in the journal), so a bad piece is
discarded without touching its neighbours and pieces shared with a newer
release are adopted in place.

Persistence rules, chosen so a power cut loses at most the frame in flight:
every data frame is written to its piece's sectors and then recorded as a
``PROGRESS`` record; a sector is erased before its ``ALLOC`` record; after a
boot, the sector a partial piece was writing into may hold a torn tail beyond
the recorded offset (NOR cannot tell written 0xFF from erased), so the next
write to that piece first copies the good prefix into a fresh sector.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any, cast

import msgpack
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fwdist import delta
from fwdist import protocol as p
from fwdist.errors import FwdistError, ManifestError
from fwdist.flash import AlignedWriter, Flash, Region
from fwdist.journal import Journal, JournalFull
from fwdist.manifest import Manifest, PayloadRef, PieceTable, Version, decode, decode_table, verify

TABLE = p.TABLE
_BLOCK = 4096  # staged bytes are read (hashed, decompressed) a sector at a time at most
_MAX_WINDOW = 1 << 20  # pieces are at most 1 MiB (manifest.MAX_PIECE_SIZE); so is a zstd window


class LockboxError(FwdistError):
    """The box cannot be built or provisioned as asked (layout, image size...)."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BoxConfig:
    """What a lockbox is (product, hardware) and how its flash is carved up."""

    product: str
    hardware: str
    slot_size: int = 64 * 1024
    staging_size: int = 96 * 1024
    sector_size: int = 4096
    align: int = 8
    journal_sectors: int = 1
    manifest_sectors: int = 1
    max_frame: int = p.DEFAULT_MAX_FRAME
    ack_every: int = 2048
    max_pieces: int = 256
    ram_budget: int = 1024 * 1024
    max_trials: int = 3

    def __post_init__(self) -> None:
        ss = self.sector_size
        for name in ("slot_size", "staging_size"):
            if getattr(self, name) <= 0 or getattr(self, name) % ss:
                raise LockboxError(f"{name} must be a positive multiple of the sector size {ss}")
        if not p.MIN_FRAME <= self.max_frame <= p.MAX_FRAME:
            raise LockboxError(f"max frame must be {p.MIN_FRAME}..{p.MAX_FRAME}")

    @property
    def max_table(self) -> int:
        return 16 + 48 * self.max_pieces

    def staging_sectors_for(self, payload_size: int, pieces: int) -> int:
        """Staging sectors a payload may need: pieces start on sector boundaries (so one can
        be erased alone), so each may end in a partial sector; the table needs its own; and
        relocating a torn tail after a reboot needs one spare."""
        ss = self.sector_size
        return math.ceil(payload_size / ss) + pieces + math.ceil(self.max_table / ss) + 1

    def flash_size(self) -> int:
        ss = self.sector_size
        meta = ss * 2 * (self.journal_sectors + self.manifest_sectors)
        return meta + 2 * self.slot_size + self.staging_size

    def make_flash(self) -> Flash:
        return Flash(self.flash_size(), self.sector_size, self.align)

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Layout:
    """The regions of one box's flash."""

    journal: tuple[Region, Region]
    manifests: tuple[Region, Region]
    slots: tuple[Region, Region]
    staging: Region

    @classmethod
    def of(cls, flash: Flash, config: BoxConfig) -> Layout:
        if flash.sector_size != config.sector_size or flash.align != config.align:
            raise LockboxError("flash geometry differs from the box configuration")
        if flash.size < config.flash_size():
            raise LockboxError(f"flash of {flash.size} bytes is smaller than the layout needs")
        pos = 0

        def take(name: str, size: int) -> Region:
            nonlocal pos
            r = Region(flash, name, pos, size)
            pos += size
            return r

        js = config.journal_sectors * flash.sector_size
        ms = config.manifest_sectors * flash.sector_size
        return cls(
            journal=(take("journal0", js), take("journal1", js)),
            manifests=(take("manifest0", ms), take("manifest1", ms)),
            slots=(take("slot0", config.slot_size), take("slot1", config.slot_size)),
            staging=take("staging", config.staging_size),
        )


# --------------------------------------------------------------------------- persistent state


@dataclass
class Stream:
    """Persisted progress of one piece (or the table): bytes, verified flag, staging sectors."""

    received: int = 0
    done: bool = False
    sectors: list[int] = field(default_factory=list)


@dataclass
class TargetRec:
    """The release being worked towards."""

    tag: bytes
    version: str
    counter: int
    mslot: int
    mlen: int
    table_sha256: bytes
    phase: int = p.BoxState.RECEIVING
    trials: int = 0
    streams: dict[int, Stream] = field(default_factory=dict)

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

    def to_wire(self) -> list[Any]:
        t = self.target
        tw = None if t is None else [
            t.tag, t.version, t.counter, t.mslot, t.mlen, t.table_sha256, t.phase, t.trials,
            [[sid, s.received, s.done, s.sectors] for sid, s in sorted(t.streams.items())],
        ]
        pv = self.prev
        pw = None if pv is None else [
            pv.table_sha256, pv.table_len, pv.table_sectors,
            [[i, s] for i, s in sorted(pv.pieces.items())],
        ]
        last = None if self.last is None else list(self.last)
        return [self.running_version, self.running_counter, self.running_sha256, self.running_size,
                self.active, tw, pw, self.failed, last]

    @classmethod
    def from_wire(cls, w: list[Any]) -> PState:
        s = cls(w[0], w[1], w[2], w[3], w[4])
        if w[5] is not None:
            t = w[5]
            s.target = TargetRec(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7],
                                 {sid: Stream(rcv, done, list(secs))
                                  for sid, rcv, done, secs in t[8]})
        if w[6] is not None:
            pv = w[6]
            s.prev = Prev(pv[0], pv[1], list(pv[2]), {i: list(secs) for i, secs in pv[3]})
        s.failed = list(w[7])
        s.last = None if w[8] is None else (w[8][0], w[8][1])
        return s


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


_B = p.BoxState
_PROGRESS = Rec.PROGRESS
_RECEIVING = p.BoxState.RECEIVING
_TRANSFER = (Rec.ALLOC, Rec.REPLACE, Rec.TRIM, Rec.PROGRESS, Rec.DONE, Rec.KEEP, Rec.RESET)

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

# the same table keyed by plain ints: a phase replayed from the journal is an int
_PHASES_INT: dict[tuple[int, int], p.BoxState] = {
    (int(a), int(b)): c for (a, b), c in PHASES.items()
}


def phase_of(s: PState) -> p.BoxState:
    return _B.IDLE if s.target is None else _B(s.target.phase)


def apply_record(s: PState, r: list[Any]) -> None:
    """Change ``s`` by one journal record (the only way persistent state changes).

    The record must be allowed in the current phase by :data:`PHASES`, and the
    phase after it is checked against the table too.
    """
    kind = r[0] if type(r[0]) is Rec else Rec(r[0])
    t = s.target
    before = _B.IDLE if t is None else t.phase  # an int or a BoxState: both key PHASES
    after = _PHASES_INT.get((before, kind))
    if after is None:
        raise LockboxError(f"journal record {kind.name} is not allowed in phase "
                           f"{_B(before).name}")
    if kind is _PROGRESS and t is not None:  # one per data frame; RECEIVING stays RECEIVING
        t.stream(r[1]).received = r[2]
        return
    _apply(s, kind, r)
    if phase_of(s) != after:
        raise LockboxError(f"{kind.name} in {_B(before).name} led to {phase_of(s).name}, "
                           f"not {after.name}")


def _apply(s: PState, kind: Rec, r: list[Any]) -> None:
    t = s.target
    if kind == Rec.TARGET:
        if t is not None and t.streams.get(TABLE, Stream()).done:
            tbl = t.streams[TABLE]
            s.prev = Prev(t.table_sha256, tbl.received, tbl.sectors,
                          {i: st.sectors for i, st in t.streams.items() if i >= 0 and st.done})
        s.target = TargetRec(r[1], r[2], r[3], r[4], r[5], r[6])
        return
    if kind in (Rec.CONFIRM, Rec.FAIL, Rec.DROP_PREV) or t is None:
        if kind == Rec.CONFIRM:
            s.running_version, s.running_counter, s.running_sha256, s.running_size = r[1:5]
            s.active ^= 1
            s.last = (r[1], True)
            s.target = s.prev = None
        elif kind == Rec.FAIL and t is not None:
            s.failed = [*s.failed, t.tag][-8:]
            s.last = (t.version, False)
            s.target = s.prev = None
        elif kind == Rec.DROP_PREV:
            s.prev = None
        else:
            raise LockboxError(f"journal record {r!r} needs a target")
        return
    if kind == Rec.ALLOC:
        t.stream(r[1]).sectors.append(r[2])
    elif kind == Rec.REPLACE:
        t.stream(r[1]).sectors[r[2]] = r[3]
    elif kind == Rec.TRIM:
        st = t.stream(r[1])
        st.sectors = st.sectors[: r[2]]
    elif kind == Rec.PROGRESS:
        t.stream(r[1]).received = r[2]
    elif kind == Rec.DONE:
        t.stream(r[1]).done = True
    elif kind == Rec.KEEP:
        assert s.prev is not None
        t.streams[r[1]] = Stream(r[3], True, s.prev.pieces.pop(r[2]))
    elif kind == Rec.RESET:  # a stream that failed its hash: forget it, free its sectors
        t.streams.pop(r[1], None)
    elif kind == Rec.BUILT:
        t.phase = p.BoxState.BUILT
    elif kind == Rec.TRIAL:
        t.phase = p.BoxState.TESTING
        t.trials += 1
    elif kind == Rec.REVERT:
        t.phase = p.BoxState.BUILT
    else:
        raise LockboxError(f"unknown journal record {r!r}")


_PACKER = msgpack.Packer(use_bin_type=True)  # one reused packer: packb() builds one per call


def _pack(obj: Any) -> bytes:
    return _PACKER.pack(obj)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)


# --------------------------------------------------------------------------- the session table


class Session(enum.Enum):
    """States of one conversation."""

    CLOSED = "closed"  # no phone connected
    WAIT_HELLO = "wait_hello"  # connected, the box waits for the phone's Hello
    READY = "ready"  # status sent; offers and data welcome
    OFFERING = "offering"  # a manifest is arriving in chunks
    DONE = "done"  # the box ended the session (error or rejection); input is dropped

    # members are singletons compared by identity: hash them the same way, in C (Enum's
    # own __hash__ is a Python call, and every frame looks a (state, event) pair up)
    __hash__ = object.__hash__


@dataclass(frozen=True)
class Open:
    """Local event: a phone connected (after the box has opened for the agent)."""


@dataclass(frozen=True)
class End:
    """Local event: the phone went away."""


S = Session
_DONE = S.DONE
_LIVE = (S.WAIT_HELLO, S.READY, S.OFFERING)

TRANSITIONS: dict[tuple[Session, type], tuple[str, frozenset[Session]]] = {
    (S.CLOSED, Open): ("open", frozenset({S.WAIT_HELLO})),
    (S.WAIT_HELLO, p.Hello): ("hello", frozenset({S.READY, S.DONE})),
    (S.READY, p.Offer): ("offer", frozenset({S.OFFERING, S.READY, S.DONE})),
    (S.OFFERING, p.Offer): ("offer", frozenset({S.OFFERING, S.READY, S.DONE})),
    (S.READY, p.Data): ("data", frozenset({S.READY})),
    **{(st, p.Error): ("peer_error", frozenset({S.DONE})) for st in _LIVE},
    **{(st, End): ("end", frozenset({S.CLOSED})) for st in (*_LIVE, S.DONE)},
    **{(S.DONE, ev): ("ignore", frozenset({S.DONE})) for ev in p.EVENT_TYPES.values()},
}
"""Session transitions: (state, event type) -> (action, allowed next states)."""

_READY = S.READY
# Lockbox.receive_data serves this cell without the lookup; it must stay what the code assumes
assert TRANSITIONS[(S.READY, p.Data)] == ("data", frozenset({S.READY}))

SESSION_EVENTS: tuple[type, ...] = (Open, End, *p.EVENT_TYPES.values())


# --------------------------------------------------------------------------- reading staged bytes


class _StagedReader(io.RawIOBase):
    """A file-like view of ``size`` staged bytes spread over sectors (bounded reads)."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self._read = read
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._size - self._pos, _BLOCK)
        if n <= 0:
            return 0
        b[:n] = self._read(self._pos, n)
        self._pos += n
        return n


SelfTest = Callable[[Manifest, Callable[[int, int], bytes]], bool]


def _always_ok(m: Manifest, read: Callable[[int, int], bytes]) -> bool:
    return True


# --------------------------------------------------------------------------- the box


class Lockbox:
    """One lockbox: drive it with :meth:`boot`, sessions, and :meth:`idle`."""

    def __init__(self, flash: Flash, config: BoxConfig, trusted: Mapping[bytes, Ed25519PublicKey],
                 self_test: SelfTest | None = None) -> None:
        self.flash = flash
        self.config = config
        self.trusted = dict(trusted)
        self.self_test = self_test or _always_ok
        self.layout = Layout.of(flash, config)
        self.journal = Journal(self.layout.journal)
        self.battery = 100
        self.session = Session.CLOSED
        self.s: PState | None = None
        self.manifest: Manifest | None = None
        self.ref: PayloadRef | None = None
        self.table: PieceTable | None = None
        self._starts: list[int] = []
        self._table_hash: Any = None
        self._dirty: dict[int, int] = {}
        self._news: tuple[str, bool] | None = None
        self._verified: tuple[bytes, Manifest] | None = None
        self._dctx: zstandard.ZstdDecompressor | None = None
        self._decoder = p.FrameDecoder(config.max_frame)
        self._out_max = config.max_frame
        self._offer = bytearray()
        self._offer_total = 0
        self.frames_out = 0
        self.bytes_out = 0

    # -- provisioning and boot ----------------------------------------------------

    @classmethod
    def provision(cls, flash: Flash, config: BoxConfig, image: bytes, version: str,
                  counter: int = 0) -> None:
        """Factory programming: the image into slot 0 and a first journal snapshot."""
        Version.parse(version)
        if not 0 < len(image) <= config.slot_size:
            raise LockboxError(f"image of {len(image)} bytes does not fit a "
                               f"{config.slot_size}-byte slot")
        layout = Layout.of(flash, config)
        slot = layout.slots[0]
        slot.erase(0, slot.size)
        w = AlignedWriter(slot)
        w.write(image)
        w.close()
        state = PState(version, counter, hashlib.sha256(image).digest(), len(image))
        Journal(layout.journal).format(_pack(state.to_wire()))

    def boot(self, now: int = 0) -> None:
        """Power on: replay the journal, finish what a power cut interrupted, be ready."""
        replay = self.journal.load()
        s = PState.from_wire(_unpack(replay.snapshot))
        for raw in replay.records:
            apply_record(s, _unpack(raw))
        self.s = s
        self.session = Session.CLOSED
        self._dirty.clear()
        self._verified = None  # keys may have changed since: verify the stored manifest again
        self._dctx = None  # RAM does not survive a reboot
        if replay.dirty:
            self.journal.compact(_pack(s.to_wire()))
        self._load_target()
        t = s.target
        if t is None:
            return
        if t.phase == p.BoxState.TESTING:
            # we were running the new image in test mode and it never confirmed: revert
            self._commit([Rec.FAIL] if t.trials >= self.config.max_trials else [Rec.REVERT])
            if s.target is None:
                self._forget_target()
                return
        ss = self.config.sector_size
        for sid, st in list(t.streams.items()):
            if st.done:
                continue
            keep = math.ceil(st.received / ss)
            if len(st.sectors) > keep:
                self._commit([Rec.TRIM, sid, keep])
            if st.received % ss:
                self._dirty[sid] = keep - 1
        if self.table is not None and s.prev is not None:
            self._adopt_prev()
        self._finish_streams()

    def _load_target(self) -> None:
        """Re-read the target's manifest and table from flash into RAM."""
        self._forget_target()
        s = self._state
        t = s.target
        if t is None:
            return
        wire = self.layout.manifests[t.mslot].read(0, t.mlen)
        try:
            m = self._verify(wire)
        except ManifestError:  # the key was withdrawn, or the slot rotted: give the target up
            self._commit([Rec.FAIL])
            return
        self.manifest = m
        self.ref = m.payload_for(s.running_sha256)
        tbl = t.streams.get(TABLE)
        if tbl is not None and tbl.done:
            self._set_table(decode_table(self._read_stream(tbl, 0, tbl.received), t.table_sha256))

    def _verify(self, wire: bytes) -> Manifest:
        """:func:`~fwdist.manifest.verify`, remembering the last manifest that verified.

        An offer is checked when it arrives, again when it becomes the target and
        again when read back from flash; the same bytes under the same keys give the
        same answer, so the signature is checked once. Bytes read back from flash
        are compared in full, so a slot that rotted still fails; boot forgets.
        """
        if self._verified is not None and self._verified[0] == wire:
            return self._verified[1]
        m = verify(wire, self.trusted)
        self._verified = (wire, m)
        return m

    def _forget_target(self) -> None:
        self.manifest = self.ref = self.table = None
        self._starts = []
        self._table_hash = None

    def _set_table(self, table: PieceTable) -> None:
        self.table = table
        self._starts = [0]
        for e in table.pieces:
            self._starts.append(self._starts[-1] + e.size)

    @property
    def _state(self) -> PState:
        if self.s is None:
            raise LockboxError("the box has not booted")
        return self.s

    def _commit(self, rec: list[Any]) -> None:
        """Apply one record to the state and append it to the journal (compacting when full)."""
        s = self._state
        apply_record(s, rec)
        if rec[0] is Rec.RESET:
            self._dirty.pop(rec[1], None)  # its sectors are free now; nothing to relocate
        try:
            self.journal.append(_pack(rec))
        except JournalFull:
            self.journal.compact(_pack(s.to_wire()))

    def state_bytes(self) -> bytes:
        """The persistent state, canonically encoded (tests compare it before and after)."""
        return _pack(self._state.to_wire())

    # -- staging ----------------------------------------------------------------------

    def _read_stream(self, st: Stream, off: int, n: int) -> bytes:
        ss = self.config.sector_size
        k, within = divmod(off, ss)
        if within + n <= ss:  # within one sector: one read
            return self.layout.staging.read(st.sectors[k] * ss + within, n) if n > 0 else b""
        out = bytearray()
        while n > 0:
            k, within = divmod(off, ss)
            m = min(n, ss - within)
            out += self.layout.staging.read(st.sectors[k] * ss + within, m)
            off += m
            n -= m
        return bytes(out)

    def _alloc(self) -> int:
        s = self._state
        used = s.used_sectors()
        for sector in range(self.layout.staging.sectors):
            if sector not in used:
                self.layout.staging.erase_sector(sector)
                return sector
        if s.prev is not None:
            self._commit([Rec.DROP_PREV])
            return self._alloc()
        # only a mis-sized configuration gets here (judge() checks capacity): end the session
        raise p.RemoteProtocolError("staging area is full", p.ErrorCode.BUSY)

    def _stage_write(self, sid: int, pos: int, data: bytes) -> None:
        t = self._target
        ss = self.config.sector_size
        pad = -len(data) % self.config.align
        if pad:
            data += b"\xff" * pad
        done, total = 0, len(data)
        k, within = divmod(pos, ss)
        st = t.streams.get(sid)
        if (within + total <= ss and st is not None and k < len(st.sectors)
                and not (self._dirty and self._dirty.get(sid) == k)):
            # the usual frame: into a sector the stream already owns, nothing to allocate
            self.layout.staging.write(st.sectors[k] * ss + within, data)
            return
        while done < total:
            k, within = divmod(pos, ss)
            n = min(total - done, ss - within)
            st = t.stream(sid)
            if k == len(st.sectors):
                self._commit([Rec.ALLOC, sid, self._alloc()])
            elif self._dirty and self._dirty.get(sid) == k:
                fresh = self._alloc()
                if within:
                    self.layout.staging.write(fresh * ss, self._read_stream(st, k * ss, within))
                self._commit([Rec.REPLACE, sid, k, fresh])
                del self._dirty[sid]
            chunk = data if n == total else data[done : done + n]
            self.layout.staging.write(st.sectors[k] * ss + within, chunk)
            pos += n
            done += n

    @property
    def _target(self) -> TargetRec:
        t = self._state.target
        if t is None:
            raise LockboxError("no target")
        return t

    def _piece_ok(self, sid: int) -> bool:
        """Whether a whole staged piece matches its table entry (bounded RAM)."""
        assert self.table is not None
        entry = self.table.pieces[sid]
        st = self._target.streams[sid]
        if not self.table.compressed:
            h = hashlib.sha256()
            for off in range(0, entry.size, _BLOCK):
                h.update(self._read_stream(st, off, min(_BLOCK, entry.size - off)))
            return h.digest() == entry.id
        h, n = hashlib.sha256(), 0
        try:
            for chunk in self._decompressed(st, entry.wire_size, entry.size):
                h.update(chunk)
                n += len(chunk)
        except (zstandard.ZstdError, ValueError):
            return False
        return n == entry.size and h.digest() == entry.id

    def _decompressed(self, st: Stream, wire_size: int, size: int) -> Any:
        src = _StagedReader(lambda off, n: self._read_stream(st, off, n), wire_size)
        if self._dctx is None:  # made once per box: building a decompression context costs more
            self._dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)  # than a piece
        reader = self._dctx.stream_reader(cast(IO[bytes], src), read_size=_BLOCK)
        produced = 0
        while chunk := reader.read(_BLOCK):
            produced += len(chunk)
            if produced > size:
                raise ValueError("piece decompresses past its size")
            yield chunk

    def _adopt_prev(self) -> None:
        """Adopt the replaced target's verified pieces that the new table shares, drop the rest."""
        s, t, table = self._state, self._target, self.table
        prev = s.prev
        assert prev is not None and table is not None
        try:
            stream = Stream(prev.table_len, True, prev.table_sectors)
            old = decode_table(self._read_stream(stream, 0, prev.table_len), prev.table_sha256)
        except ManifestError:
            old = PieceTable(False, ())
        have: dict[tuple[bytes, int, bool], list[int]] = {}
        for i in sorted(prev.pieces):
            if i < len(old.pieces):
                e = old.pieces[i]
                have.setdefault((e.id, e.wire_size, old.compressed), []).append(i)
        for i, e in enumerate(table.pieces):
            olds = have.get((e.id, e.wire_size, table.compressed))
            if olds and not t.stream(i).done and not t.stream(i).sectors:
                self._commit([Rec.KEEP, i, olds.pop(0), e.wire_size])
        self._commit([Rec.DROP_PREV])

    # -- sessions -----------------------------------------------------------------------

    def open_session(self, now: int = 0) -> bytes:
        """A phone connected. The box has already opened for the agent: nothing here waits.

        No flash operation happens here; the box says nothing until the phone's Hello.
        """
        out: list[bytes] = []
        self._dispatch(Open(), now, out)
        return b"".join(out)

    def receive_data(self, data: bytes, now: int = 0) -> bytes:
        """Bytes from the phone in, bytes to send back out."""
        if self.session is Session.CLOSED:
            raise p.LocalProtocolError("no session is open")
        if self.session is Session.DONE:
            return b""  # the session is over; drop input without buffering it
        out: list[bytes] = []
        view = memoryview(data)
        step = self.config.max_frame
        decoder = self._decoder
        try:
            for i in range(0, len(view), step):
                decoder.feed(view[i : i + step])
                while self.session is not _DONE and (ev := decoder.next_event()):  # _live()
                    if type(ev) is p.Data and self.session is _READY:
                        # the table's (READY, Data) cell, looked up once below: most frames
                        nxt = self._on_data(ev, now, out)
                        assert nxt is _READY, (self.session, ev, nxt)
                    else:
                        self._dispatch(ev, now, out)
        except p.RemoteProtocolError as e:
            self._send(out, p.Error(int(e.code), str(e)[:200]))
            self.session = Session.DONE
        return b"".join(out)

    def _live(self) -> bool:
        return self.session is not Session.DONE

    def end_session(self, now: int = 0) -> None:
        """The phone went away (or the agent walked off): what was persisted stays."""
        self._dispatch(End(), now, [])

    def _dispatch(self, ev: object, now: int, out: list[bytes]) -> None:
        entry = TRANSITIONS.get((self.session, type(ev)))
        if entry is None:
            if isinstance(ev, Open | End):
                raise p.LocalProtocolError(f"{type(ev).__name__} is not allowed in session state "
                                           f"{self.session.value}")
            raise p.RemoteProtocolError(f"{type(ev).__name__} frame is not allowed in session "
                                        f"state {self.session.value}", p.ErrorCode.UNEXPECTED)
        action, allowed = entry
        nxt: Session = _HANDLERS[action](self, ev, now, out)
        assert nxt in allowed, (self.session, ev, nxt)
        self.session = nxt

    def _send(self, out: list[bytes], ev: p.Event) -> None:
        frame = p.encode(ev, self._out_max)
        out.append(frame)
        self.frames_out += 1
        self.bytes_out += len(frame)

    def _on_open(self, ev: Open, now: int, out: list[bytes]) -> Session:
        self._state  # noqa: B018 - must have booted
        self._decoder = p.FrameDecoder(self.config.max_frame)
        self._out_max = self.config.max_frame
        self._offer.clear()
        return S.WAIT_HELLO

    def _on_end(self, ev: End, now: int, out: list[bytes]) -> Session:
        self._offer.clear()
        return S.CLOSED

    def _on_ignore(self, ev: p.Event, now: int, out: list[bytes]) -> Session:
        return S.DONE

    def _on_peer_error(self, ev: p.Error, now: int, out: list[bytes]) -> Session:
        return S.DONE

    def _on_hello(self, ev: p.Hello, now: int, out: list[bytes]) -> Session:
        if ev.version != p.PROTOCOL_VERSION:
            raise p.RemoteProtocolError(f"protocol version {ev.version} is not "
                                        f"{p.PROTOCOL_VERSION}", p.ErrorCode.UNSUPPORTED_VERSION)
        self._out_max = min(self.config.max_frame, ev.max_frame)
        status = self.status_frame()
        # on a small link, report fewer partial pieces (a phone finds the rest through rewinds)
        while (status.target is not None and status.target.partials
               and len(p.encode(status, p.MAX_FRAME)) > self._out_max):
            t = status.target
            status = replace(status, target=replace(t, partials=t.partials[:-1]))
        if len(p.encode(status, p.MAX_FRAME)) > self._out_max:
            raise p.RemoteProtocolError(f"a {self._out_max}-byte frame cannot carry this box's "
                                        "status", p.ErrorCode.FRAME_TOO_LARGE)
        self._send(out, status)
        if self._news is not None:
            self._send(out, p.Installed(*self._news))
            self._news = None
        return S.READY

    def box_state(self) -> p.BoxState:
        t = self._state.target
        if t is None:
            return p.BoxState.IDLE
        if t.phase == p.BoxState.RECEIVING:
            return p.BoxState.COMPLETE if self._all_done() else p.BoxState.RECEIVING
        low = self.manifest is not None and self.battery < self.manifest.min_battery
        if t.phase == p.BoxState.BUILT and low:
            return p.BoxState.WAIT_BATTERY
        return p.BoxState(t.phase)

    def _all_done(self) -> bool:
        t = self._state.target
        if t is None or self.table is None:
            return False
        return all(t.streams.get(i, Stream()).done for i in range(len(self.table.pieces)))

    def status_frame(self) -> p.Status:
        s = self._state
        target = None
        t = s.target
        if t is not None:
            n = self.ref.pieces if self.ref else 0
            bits = bytearray((n + 7) // 8)
            partials: list[tuple[int, int]] = []
            for sid, st in sorted(t.streams.items()):
                if sid >= 0 and st.done and sid < n:
                    bits[sid // 8] |= 1 << (sid % 8)
                elif sid >= 0 and st.received and len(partials) < p.MAX_PARTIALS:
                    partials.append((sid, st.received))
            tbl = t.streams.get(TABLE, Stream())
            target = p.Target(t.tag, t.version, tbl.received, bytes(bits), tuple(partials))
        return p.Status(p.PROTOCOL_VERSION, self.config.product, self.config.hardware,
                        s.running_version, s.running_counter, s.running_sha256,
                        max(0, min(100, self.battery)), int(self.box_state()), self.config.align,
                        self._out_max, target)

    # -- offers ----------------------------------------------------------------------------

    def _on_offer(self, ev: p.Offer, now: int, out: list[bytes]) -> Session:
        if not self._offer:
            self._offer_total = ev.total
        if ev.total != self._offer_total:
            raise p.RemoteProtocolError("offer total changed mid-manifest", p.ErrorCode.BAD_OFFSET)
        if ev.total > self.layout.manifests[0].size:
            self._send(out, p.Reject(int(p.Reason.TOO_LARGE)))
            return S.DONE
        have = len(self._offer)
        if ev.offset > have:
            raise p.RemoteProtocolError(f"offer chunk at {ev.offset} leaves a gap after {have}",
                                        p.ErrorCode.BAD_OFFSET)
        self._offer += ev.data[have - ev.offset :]
        if len(self._offer) < ev.total:
            return S.OFFERING
        wire = bytes(self._offer)
        self._offer.clear()
        reason = self.judge(wire, now)
        if reason is not None:
            self._send(out, p.Reject(int(reason)))
            return S.DONE
        tag = p.release_tag(wire)
        t = self._state.target
        if t is None or t.tag != tag:
            self._take_target(wire, tag)
        self._send(out, p.Accept(tag))
        return S.READY

    def judge(self, wire: bytes, now: int) -> p.Reason | None:
        """Why the box would reject these manifest bytes now, or None to accept."""
        s = self._state
        try:
            sm = decode(wire)
        except ManifestError:
            return p.Reason.MALFORMED
        if sm.key_id not in self.trusted:
            return p.Reason.UNKNOWN_KEY
        try:
            m = self._verify(wire)
        except ManifestError:
            return p.Reason.BAD_SIGNATURE
        if m.product != self.config.product:
            return p.Reason.WRONG_PRODUCT
        if m.hardware != self.config.hardware:
            return p.Reason.WRONG_HARDWARE
        if m.expires is not None and now > m.expires:
            return p.Reason.EXPIRED
        if m.security_counter < s.running_counter:
            return p.Reason.COUNTER_LOWER
        if m.parsed_version <= Version.parse(s.running_version):
            return p.Reason.NOT_NEWER
        tag = p.release_tag(wire)
        if tag in s.failed:
            return p.Reason.FAILED_BEFORE
        t = s.target
        if t is not None and t.tag != tag:
            if m.parsed_version <= Version.parse(t.version):
                return p.Reason.OLDER_THAN_TARGET
            if m.security_counter < t.counter:
                return p.Reason.COUNTER_LOWER
        ref = m.payload_for(s.running_sha256)
        need = self.config.staging_sectors_for(ref.size, ref.pieces)
        if (m.image_size > self.config.slot_size or ref.pieces > self.config.max_pieces
                or ref.decode_ram > self.config.ram_budget or need > self.layout.staging.sectors
                or (ref.is_delta and not self._encoder_known(ref.encoder))):
            return p.Reason.TOO_LARGE
        return None

    @staticmethod
    def _encoder_known(name: str) -> bool:
        return name in delta.ENCODERS

    def _take_target(self, wire: bytes, tag: bytes) -> None:
        s = self._state
        mslot = 0 if s.target is None else 1 - s.target.mslot
        region = self.layout.manifests[mslot]
        region.erase(0, region.size)
        w = AlignedWriter(region)
        w.write(wire)
        w.close()
        m = self._verify(wire)
        ref = m.payload_for(s.running_sha256)
        self._commit([Rec.TARGET, tag, m.version, m.security_counter, mslot, len(wire),
                      ref.table_sha256])
        self._dirty.clear()
        self._load_target()

    # -- data --------------------------------------------------------------------------------

    def _on_data(self, ev: p.Data, now: int, out: list[bytes]) -> Session:
        t = self._state.target
        cfg = self.config
        if t is None or ev.tag != t.tag:
            raise p.RemoteProtocolError("data for a release that is not the box's target",
                                        p.ErrorCode.WRONG_RELEASE)
        sid = ev.piece
        st = t.streams.get(sid)
        if sid == TABLE:
            size = cfg.max_table
        elif self.table is None:
            raise p.RemoteProtocolError("piece data before the piece table", p.ErrorCode.UNEXPECTED)
        elif sid >= len(self.table.pieces):
            raise p.RemoteProtocolError(f"piece {sid} is not in the table", p.ErrorCode.BAD_OFFSET)
        else:
            size = self.table.pieces[sid].wire_size
        if st is not None and st.done:
            self._send(out, p.PieceComplete(t.tag, sid))
            return S.READY
        align = cfg.align
        if ev.offset % align:
            raise p.RemoteProtocolError(f"data offset {ev.offset} is not {align}-aligned",
                                        p.ErrorCode.BAD_OFFSET)
        received = 0 if st is None else st.received
        if ev.offset > received:
            self._send(out, p.Ack(t.tag, sid, received))  # a gap: rewind the phone
            return S.READY
        data = ev.data if received == ev.offset else ev.data[received - ev.offset :]
        if not data:
            return S.READY
        end = received + len(data)
        if end > size:
            raise p.RemoteProtocolError(f"data runs past the end of piece {sid}",
                                        p.ErrorCode.BAD_OFFSET)
        if len(data) % align and sid != TABLE and end != size:
            raise p.RemoteProtocolError("only the last chunk of a piece may be unaligned",
                                        p.ErrorCode.BAD_OFFSET)
        ss = cfg.sector_size
        k, within = divmod(received, ss)
        if (st is not None and k < len(st.sectors) and within + len(data) <= ss
                and not len(data) % align and not (self._dirty and self._dirty.get(sid) == k)):
            # _stage_write's usual case, inlined: an aligned frame into a sector the stream owns
            # (within the staging region by construction, so straight to the flash)
            staging = self.layout.staging
            staging.flash.write(staging.start + st.sectors[k] * ss + within, data)
        else:
            self._stage_write(sid, received, data)
        if st is not None and t.phase == _RECEIVING:  # the per-frame record, without the generic
            st.received = end  # path: apply_record's PROGRESS case (RECEIVING stays RECEIVING)
            try:
                self.journal.append(_pack([_PROGRESS, sid, end]))
            except JournalFull:
                self.journal.compact(_pack(self._state.to_wire()))
        else:
            self._commit([Rec.PROGRESS, sid, end])
        if sid == TABLE:
            self._table_progress(received, data, end, out)
        elif end == size:
            if not self._piece_ok(sid):
                self._commit([Rec.RESET, sid])
                raise p.RemoteProtocolError(f"piece {sid} does not match its SHA-256",
                                            p.ErrorCode.BAD_PIECE)
            self._commit([Rec.DONE, sid])
            self._send(out, p.PieceComplete(t.tag, sid))
        elif end // cfg.ack_every > received // cfg.ack_every:
            self._send(out, p.Ack(t.tag, sid, end))
            return S.READY
        if t.streams[sid].done and self._all_done():
            self._send(out, p.ReleaseComplete(t.tag))
        return S.READY

    def _table_progress(self, received: int, data: bytes, end: int, out: list[bytes]) -> None:
        t = self._target
        st = t.streams[TABLE]
        if self._table_hash is None or received == 0:
            self._table_hash = hashlib.sha256(self._read_stream(st, 0, received))
        self._table_hash.update(data)
        if self._table_hash.copy().digest() != t.table_sha256:
            if end % self.config.align or end >= self.config.max_table:
                self._commit([Rec.RESET, TABLE])
                self._table_hash = None
                raise p.RemoteProtocolError("piece table does not match the manifest",
                                            p.ErrorCode.BAD_PIECE)
            if end // self.config.ack_every > received // self.config.ack_every:
                self._send(out, p.Ack(t.tag, TABLE, end))
            return
        if not self._complete_table():
            raise p.RemoteProtocolError("the signed piece table is unusable; release dropped",
                                        p.ErrorCode.BAD_PIECE)
        self._send(out, p.PieceComplete(t.tag, TABLE))
        for i, st2 in sorted(t.streams.items()):
            if i >= 0 and st2.done:
                self._send(out, p.PieceComplete(t.tag, i))

    def _complete_table(self) -> bool:
        """The table's bytes hash right: decode it, record it, adopt shared pieces."""
        t = self._target
        st = t.streams[TABLE]
        assert self.ref is not None
        try:
            table = decode_table(self._read_stream(st, 0, st.received), t.table_sha256)
            if len(table.pieces) != self.ref.pieces or table.wire_size != self.ref.size:
                raise ManifestError("piece table disagrees with the manifest")
        except ManifestError:
            # these are the signed bytes, so the release itself is broken: give it up for good
            # rather than fetch the same table forever
            self._commit([Rec.FAIL])
            self._forget_target()
            return False
        self._commit([Rec.DONE, TABLE])
        self._set_table(table)
        if self._state.prev is not None:
            self._adopt_prev()
        return True

    def _finish_streams(self) -> None:
        """After a reboot: complete streams whose last bytes landed but whose DONE did not."""
        t = self._target
        tbl = t.streams.get(TABLE)
        if tbl is not None and not tbl.done and tbl.received:
            h = hashlib.sha256(self._read_stream(tbl, 0, tbl.received)).digest()
            if h == t.table_sha256:
                self._complete_table()
        if self.table is None:
            return
        for sid, st in sorted(t.streams.items()):
            pieces = self.table.pieces
            whole = 0 <= sid < len(pieces) and st.received == pieces[sid].wire_size
            if whole and not st.done:
                self._commit([Rec.DONE, sid] if self._piece_ok(sid) else [Rec.RESET, sid])

    # -- installing ----------------------------------------------------------------------------

    def idle(self, now: int = 0) -> str | None:
        """Between sessions: build the new image when every piece is here, install when allowed.

        Returns what happened ("built", "installed", "reverted", "failed",
        "wait_battery") or None. Does nothing while a phone is connected.
        """
        s = self._state
        t = s.target
        if t is None or self.session is not Session.CLOSED or self.manifest is None:
            return None
        if t.phase == p.BoxState.RECEIVING:
            if not self._all_done():
                return None
            if not self._build():
                self._commit([Rec.FAIL])
                self._forget_target()
                self._news = (self._state.last or ("", False))[0], False
                return "failed"
            self._commit([Rec.BUILT])
            return "built"
        if t.phase == p.BoxState.BUILT:
            if self.battery < self.manifest.min_battery:
                return "wait_battery"
            m = self.manifest
            self._commit([Rec.TRIAL])
            slot = self.layout.slots[1 - s.active]
            ok = False
            try:
                ok = self.self_test(m, lambda off, n: slot.read(off, min(n, m.image_size - off)))
            except Exception:  # a crashing self-test is a failed self-test
                ok = False
            if ok:
                self._commit([Rec.CONFIRM, m.version, m.security_counter, m.image_sha256,
                              m.image_size])
                self._news = (m.version, True)
                self._forget_target()
                return "installed"
            self._commit([Rec.FAIL])
            self._news = (m.version, False)
            self._forget_target()
            return "reverted"
        return None

    def _build(self) -> bool:
        """Write the new image into the inactive slot (bounded RAM) and check its SHA-256."""
        s, t, m, ref, table = self._state, self._target, self.manifest, self.ref, self.table
        assert m is not None and ref is not None and table is not None
        ss = self.config.sector_size
        old_slot = self.layout.slots[s.active]
        new_slot = self.layout.slots[1 - s.active]
        new_slot.erase(0, math.ceil(m.image_size / ss) * ss)
        w = AlignedWriter(new_slot, block=ss)
        try:
            if table.compressed:
                for i, e in enumerate(table.pieces):
                    for chunk in self._decompressed(t.streams[i], e.wire_size, e.size):
                        w.write(chunk)
            else:
                delta.apply(ref.encoder, old_slot.read, s.running_size, self._payload_read,
                            table.content_size, w.write, new_size=m.image_size)
        except (delta.DeltaError, zstandard.ZstdError, ValueError):
            return False
        if w.total != m.image_size:
            return False
        w.close()
        h = hashlib.sha256()
        for off in range(0, m.image_size, delta.PIECE):  # flash is read in place: no RAM bound
            h.update(new_slot.read(off, min(delta.PIECE, m.image_size - off)))
        return h.digest() == m.image_sha256

    def _payload_read(self, off: int, n: int) -> bytes:
        """Read the delta payload (the pieces' contents in table order) at ``off``."""
        assert self.table is not None
        t = self._target
        out = bytearray()
        end = min(off + n, self._starts[-1])
        while off < end:
            i = bisect.bisect_right(self._starts, off) - 1
            within = off - self._starts[i]
            m = min(end - off, self.table.pieces[i].size - within)
            out += self._read_stream(t.streams[i], within, m)
            off += m
        return bytes(out)

    # -- reporting -----------------------------------------------------------------------------

    def running_image(self) -> bytes:
        s = self._state
        return self.layout.slots[s.active].read(0, s.running_size)

    def status(self) -> dict[str, Any]:
        """A JSON-ready summary for CLIs, tests and the simulator."""
        s = self._state
        t = s.target
        pieces = self.table.pieces if self.table else ()
        streams = t.streams if t else {}
        return {
            "state": self.box_state().name.lower(),
            "session": self.session.value,
            "product": self.config.product,
            "hardware": self.config.hardware,
            "running_version": s.running_version,
            "running_counter": s.running_counter,
            "running_sha256": s.running_sha256.hex(),
            "active_slot": s.active,
            "battery": self.battery,
            "target_version": t.version if t else None,
            "target_tag": t.tag.hex() if t else None,
            "encoder": self.ref.encoder if self.ref and t else None,
            "table_done": bool(t and streams.get(TABLE, Stream()).done),
            "pieces_total": self.ref.pieces if self.ref and t else 0,
            "pieces_done": sum(1 for i, st in streams.items() if i >= 0 and st.done),
            "received_bytes": sum(min(st.received, pieces[i].wire_size if i < len(pieces) else 0)
                                  for i, st in streams.items() if i >= 0),
            "needed_bytes": self.ref.size if self.ref and t else 0,
            "last_result": None if s.last is None else {"version": s.last[0], "ok": s.last[1]},
            "failed_tags": [x.hex() for x in s.failed],
            "flash_ops": self.flash.ops,
            "journal_compactions": self.journal.compactions,
        }


_HANDLERS: dict[str, Callable[..., Session]] = {
    action: getattr(Lockbox, "_on_" + action) for action, _ in TRANSITIONS.values()
}
"""Each action of :data:`TRANSITIONS` is the method ``Lockbox._on_<action>``."""
