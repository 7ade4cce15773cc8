"""Receiving the target: what RAM knows of it, and data frames into its streams.

The journal holds the target's progress; RAM holds what is read back from the
flash to serve it (its verified manifest, the payload this box takes, the piece
table once it is whole). Each data frame is written to the staging area and then
recorded (``PROGRESS``); a stream that is whole is checked — a piece against its
table entry, the table against the manifest — and recorded ``DONE`` or ``RESET``;
a table that arrives lets the box adopt the verified pieces the replaced target
shares with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack

from fwdist import air
from fwdist import protocol as p
from fwdist.errors import ManifestError
from fwdist.lockbox import _air
from fwdist.lockbox._build import Builder
from fwdist.lockbox._config import BoxConfig, Layout
from fwdist.lockbox._staging import Staging
from fwdist.lockbox._state import PState, Stream, TargetRec
from fwdist.lockbox._update import (
    TABLE,
    Done,
    DropPrev,
    GiveUp,
    Keep,
    Progress,
    Record,
    Reset,
    Rollback,
)
from fwdist.manifest import MAX_TABLE_BYTES, Manifest, PayloadRef, PieceTable, decode_table
from fwdist.report import Outcome

Send = Callable[[p.Event], None]


class Receiver:
    """The target as RAM knows it, and the transfer of its streams."""

    def __init__(self, config: BoxConfig, layout: Layout, staging: Staging, builder: Builder,
                 commit: Callable[[Record], None], verify: Callable[[bytes], Manifest]) -> None:
        self.config = config
        self.layout = layout
        self.staging = staging
        self.builder = builder
        self._commit = commit
        self._verify = verify
        self.manifest: Manifest | None = None
        self.ref: PayloadRef | None = None
        self.table: PieceTable | None = None
        self.air: air.AirManifest | None = None  # the target's manifest, when it is format 2
        self.starts: list[int] = []  # where each piece's content starts in the payload
        self._table_hash: Any = None  # the table's SHA-256 so far (a hashlib object)
        self._began: dict[int, int] = {}  # stream -> bytes it held when this session began it
        self.ack_every = config.ack_every  # this session's (see new_session)

    def new_session(self, ack_every: int | None = None) -> None:
        """A session begins; it acknowledges every ``ack_every`` bytes (default: the config's)."""
        self._began.clear()
        self.ack_every = self.config.ack_every if ack_every is None else ack_every

    def forget(self) -> None:
        self.manifest = self.ref = self.table = self.air = None
        self.starts = []
        self._table_hash = None

    def _set_table(self, table: PieceTable) -> None:
        self.table = table
        self.starts = [0]
        for e in table.pieces:
            self.starts.append(self.starts[-1] + e.size)

    def load(self, s: PState) -> None:
        """Re-read the target's manifest and table from flash into RAM."""
        self.forget()
        t = s.target
        if t is None:
            return
        wire = self.layout.manifests[t.mslot].read(0, t.mlen)
        try:
            m = self._verify(wire)
        except ManifestError:  # the key was withdrawn, or the slot rotted: give the target up
            self._commit(GiveUp(Outcome.UNUSABLE, 0))
            return
        self.manifest = m
        # the payload the box chose when it took the target (its table is on record)
        self.ref = next((r for r in (m.full, *m.deltas) if r.table_sha256 == t.table_sha256),
                        None)
        if self.ref is None:  # a record that names no payload of its manifest: give it up
            self._commit(GiveUp(Outcome.UNUSABLE, 0))
            self.forget()
            return
        if _air.is_format2(wire):
            self.air = air.decode(wire).manifest
            if self.air.table_id is None:  # the rows came inside the signed manifest
                self._set_table(_air.piece_table(self.air.rows, self.air.compressed))
                return
        tbl = t.streams.get(TABLE)
        if tbl is not None and tbl.done:
            self._set_table(self._decode_table(self.staging.read(tbl, 0, tbl.received),
                                               t.table_sha256))

    def _decode_table(self, data: bytes, sha256: bytes) -> PieceTable:
        """The target's staged table, in its manifest's format (raises ManifestError)."""
        if self.air is not None:
            return _air.decode_table(data, self.air)
        return decode_table(data, sha256)

    def all_done(self, t: TargetRec | None) -> bool:
        if t is None or self.table is None:
            return False
        return all(t.streams.get(i, Stream()).done for i in range(len(self.table.pieces)))

    def data(self, s: PState, ev: p.Data, send: Send) -> None:
        """One data frame for the target (raises :class:`~fwdist.protocol.RemoteProtocolError`
        for a frame the box refuses, after recording whatever the refusal changes)."""
        t = s.target
        cfg = self.config
        if t is None or ev.tag != t.tag:
            raise p.RemoteProtocolError("data for a release that is not the box's target",
                                        p.ErrorCode.WRONG_RELEASE)
        sid = ev.piece
        st = t.streams.get(sid)
        table = self.table
        if sid == TABLE:
            size = cfg.max_table if self.air is None else _air.table_length(self.air)
        elif table is None:
            # the phone believes the table is whole, so what is staged is not it: discard it
            # (a hostile prefix must not wedge the target) and let the next session resend it
            tbl = t.streams.get(TABLE)
            if tbl is not None and tbl.received:
                self._reset_table()
            raise p.RemoteProtocolError("piece data before the piece table", p.ErrorCode.UNEXPECTED)
        elif sid >= len(table.pieces):
            raise p.RemoteProtocolError(f"piece {sid} is not in the table", p.ErrorCode.BAD_OFFSET)
        else:
            size = table.pieces[sid].wire_size
        if st is not None and st.done:
            send(p.PieceComplete(t.tag, sid))
            return
        align = cfg.align
        if ev.offset % align:
            raise p.RemoteProtocolError(f"data offset {ev.offset} is not {align}-aligned",
                                        p.ErrorCode.BAD_OFFSET)
        received = 0 if st is None else st.received
        if sid == TABLE and ev.offset < received and not self._table_agrees(st, ev):
            self._reset_table()  # a re-sent prefix differs from what is staged: start again
            received = 0
        if ev.offset > received:
            send(p.Ack(t.tag, sid, received))  # a gap: rewind the phone
            return
        data = ev.data if received == ev.offset else ev.data[received - ev.offset :]
        if not data:
            return
        whole = False
        if sid == TABLE:
            data, whole = self._table_end(t, received, data)
        end = received + len(data)
        if end > size:
            if sid == TABLE:
                self._reset_table()  # no table is this long: what was staged is junk too
            raise p.RemoteProtocolError(f"data runs past the end of piece {sid}",
                                        p.ErrorCode.BAD_OFFSET)
        if len(data) % align and sid != TABLE and end != size:
            raise p.RemoteProtocolError("only the last chunk of a piece may be unaligned",
                                        p.ErrorCode.BAD_OFFSET)
        self._began.setdefault(sid, received)
        self.staging.write(s, sid, received, data)
        self._commit(Progress(sid, end))
        if sid == TABLE:
            self._table_progress(s, t, received, data, end, whole, send)
        elif end == size:
            assert table is not None  # (sid is a piece of the table)
            if not self.builder.piece_ok(table, sid, t.streams[sid]):
                self._bad_piece(t, sid)
                raise p.RemoteProtocolError(f"piece {sid} does not match its SHA-256",
                                            p.ErrorCode.BAD_PIECE)
            self._commit(Done(sid))
            send(p.PieceComplete(t.tag, sid))
        elif end // self.ack_every > received // self.ack_every:
            send(p.Ack(t.tag, sid, end))
            return
        if t.streams[sid].done and self.all_done(t):
            send(p.ReleaseComplete(t.tag))

    def _bad_piece(self, t: TargetRec, sid: int) -> None:
        """Discard what this session wrote of a piece that failed its hash, or all of it.

        The bytes staged before this session came from another phone: keep them once
        (a hostile phone finishing an honest prefix with junk destroys only its own
        bytes); a piece that fails again after a rollback is reset whole, so a prefix
        poisoned earlier costs honest phones at most one more failed session.
        """
        start = self._began.get(sid, 0)
        if start and not t.streams[sid].strikes:
            keep = -(-start // self.staging.sector_size)
            self._commit(Rollback(sid, start, keep))
            if start % self.staging.sector_size:
                self.staging.torn[sid] = keep - 1  # junk follows the prefix in that sector
        else:
            self._commit(Reset(sid))

    def _reset_table(self) -> None:
        self._commit(Reset(TABLE))
        self._table_hash = None

    def _table_agrees(self, st: Stream | None, ev: p.Data) -> bool:
        """Whether a table frame that overlaps the staged prefix repeats it byte for byte."""
        assert st is not None
        n = min(st.received - ev.offset, len(ev.data))
        return self.staging.read(st, ev.offset, n) == bytes(ev.data[:n])

    def _table_end(self, t: TargetRec, received: int, data: bytes) -> tuple[bytes, bool]:
        """``data`` cut where the table's msgpack object ends, and whether it ended.

        A format 2 table's length is exactly known (pieces x row width): no scan.

        The box knows the table only by its SHA-256, not its length; but a table is one
        msgpack object, so its end is where that object ends. Bytes a phone sends past it
        are never staged (they cannot hide the table's end), and a staged prefix that ends
        an object without matching the hash, or that is no table at all, is junk, found
        out at once. Decoding is bounded as :func:`~fwdist.manifest.decode_table` is.
        """
        if self.air is not None:
            length = _air.table_length(self.air)
            return data[: max(0, length - received)] or data, received + len(data) >= length
        st = t.streams.get(TABLE)
        prefix = b"" if st is None or not received else self.staging.read(st, 0, received)
        scan = msgpack.Unpacker(max_buffer_size=len(prefix) + len(data), max_bin_len=64,
                                max_str_len=0, max_array_len=MAX_TABLE_BYTES // 32,
                                max_map_len=0, max_ext_len=0)
        scan.feed(prefix)
        scan.feed(data)
        try:
            scan.skip()
        except msgpack.OutOfData:
            return data, False
        except (ValueError, msgpack.FormatError, msgpack.StackError):
            return data, True  # not msgpack a table could be: junk
        k = scan.tell() - received
        return (data[:k] if k > 0 else data), True

    def _table_progress(self, s: PState, t: TargetRec, received: int, data: bytes, end: int,
                        whole: bool, send: Send) -> None:
        st = t.streams[TABLE]
        if self._table_hash is None or received == 0:
            self._table_hash = hashlib.sha256(self.staging.read(st, 0, received))
        self._table_hash.update(data)
        if self._table_hash.copy().digest()[: len(t.table_sha256)] != t.table_sha256:
            if whole or end % self.config.align or end >= self.config.max_table:
                self._reset_table()
                raise p.RemoteProtocolError("piece table does not match the manifest",
                                            p.ErrorCode.BAD_PIECE)
            if end // self.ack_every > received // self.ack_every:
                send(p.Ack(t.tag, TABLE, end))
            return
        if not self._complete_table(s, t):
            raise p.RemoteProtocolError("the signed piece table is unusable; release dropped",
                                        p.ErrorCode.BAD_PIECE)
        send(p.PieceComplete(t.tag, TABLE))
        for i, st2 in sorted(t.streams.items()):
            if i >= 0 and st2.done:
                send(p.PieceComplete(t.tag, i))

    def _complete_table(self, s: PState, t: TargetRec) -> bool:
        """The table's bytes hash right: decode it, record it, adopt shared pieces."""
        st = t.streams[TABLE]
        assert self.ref is not None
        try:
            table = self._decode_table(self.staging.read(st, 0, st.received), t.table_sha256)
            if len(table.pieces) != self.ref.pieces or table.wire_size != self.ref.size:
                raise ManifestError("piece table disagrees with the manifest")
        except ManifestError:
            # these are the signed bytes, so the release itself is broken: give it up for good
            # rather than fetch the same table forever
            self._commit(GiveUp(Outcome.UNUSABLE, 0))
            self.forget()
            return False
        self._commit(Done(TABLE))
        self._set_table(table)
        if s.prev is not None:
            self.adopt_prev(s, t)
        return True

    def adopt_prev(self, s: PState, t: TargetRec) -> None:
        """Adopt the replaced target's verified pieces that the new table shares, drop the rest."""
        prev, table = s.prev, self.table
        assert prev is not None and table is not None
        try:
            old = self._prev_table(prev.table_sha256, prev.table_len, prev.table_sectors, t)
        except ManifestError:
            old = PieceTable(False, ())
        # pieces are matched by the first 24 bytes of their SHA-256: all a format 2 row has
        have: dict[tuple[bytes, int, bool], list[int]] = {}
        for i in sorted(prev.pieces):
            if i < len(old.pieces):
                e = old.pieces[i]
                have.setdefault((e.id[:air.PIECE_HASH_BYTES], e.wire_size, old.compressed),
                                []).append(i)
        for i, e in enumerate(table.pieces):
            olds = have.get((e.id[:air.PIECE_HASH_BYTES], e.wire_size, table.compressed))
            if olds and not t.stream(i).done and not t.stream(i).sectors:
                self._commit(Keep(i, olds.pop(0), e.wire_size))
        self._commit(DropPrev())

    def _prev_table(self, key: bytes, length: int, sectors: list[int], t: TargetRec) -> PieceTable:
        """The replaced target's table: staged (format 1, or a format 2 table), or the rows
        of its format 2 manifest, which is still in the other manifest slot."""
        staged = self.staging.read(Stream(length, True, sectors), 0, length)
        if len(key) != air.PIECE_HASH_BYTES:
            return decode_table(staged, key)
        region = self.layout.manifests[1 - t.mslot]
        old = air.decode(_air.stored(region.read(0, region.size))).manifest
        if _air.table_key(old) != key:
            raise ManifestError("the other manifest slot holds another release")
        if old.table_id is None:
            return _air.piece_table(old.rows, old.compressed)
        return _air.decode_table(staged, old)

    def finish_streams(self, s: PState, t: TargetRec) -> None:
        """After a reboot: complete streams whose last bytes landed but whose DONE did not."""
        tbl = t.streams.get(TABLE)
        if tbl is not None and not tbl.done and tbl.received:
            h = hashlib.sha256(self.staging.read(tbl, 0, tbl.received)).digest()
            if h[: len(t.table_sha256)] == t.table_sha256:
                self._complete_table(s, t)
        table = self.table
        if table is None:
            return
        for sid, st in sorted(t.streams.items()):
            whole = 0 <= sid < len(table.pieces) and st.received == table.pieces[sid].wire_size
            if whole and not st.done:
                ok = self.builder.piece_ok(table, sid, st)
                verdict: Record = Done(sid) if ok else Reset(sid)
                self._commit(verdict)
