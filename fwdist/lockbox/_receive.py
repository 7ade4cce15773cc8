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

from fwdist import protocol as p
from fwdist.errors import ManifestError
from fwdist.lockbox._build import Builder
from fwdist.lockbox._config import BoxConfig, Layout
from fwdist.lockbox._staging import Staging
from fwdist.lockbox._state import PState, Stream, TargetRec
from fwdist.lockbox._update import TABLE, Done, DropPrev, Fail, Keep, Progress, Record, Reset
from fwdist.manifest import Manifest, PayloadRef, PieceTable, decode_table

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
        self.starts: list[int] = []  # where each piece's content starts in the payload
        self._table_hash: Any = None  # the table's SHA-256 so far (a hashlib object)

    def forget(self) -> None:
        self.manifest = self.ref = self.table = None
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
            self._commit(Fail())
            return
        self.manifest = m
        # the payload the box chose when it took the target (its table is on record)
        self.ref = next((r for r in (m.full, *m.deltas) if r.table_sha256 == t.table_sha256),
                        None)
        if self.ref is None:  # a record that names no payload of its manifest: give it up
            self._commit(Fail())
            self.forget()
            return
        tbl = t.streams.get(TABLE)
        if tbl is not None and tbl.done:
            self._set_table(decode_table(self.staging.read(tbl, 0, tbl.received),
                                         t.table_sha256))

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
            size = cfg.max_table
        elif table is None:
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
        if ev.offset > received:
            send(p.Ack(t.tag, sid, received))  # a gap: rewind the phone
            return
        data = ev.data if received == ev.offset else ev.data[received - ev.offset :]
        if not data:
            return
        end = received + len(data)
        if end > size:
            raise p.RemoteProtocolError(f"data runs past the end of piece {sid}",
                                        p.ErrorCode.BAD_OFFSET)
        if len(data) % align and sid != TABLE and end != size:
            raise p.RemoteProtocolError("only the last chunk of a piece may be unaligned",
                                        p.ErrorCode.BAD_OFFSET)
        self.staging.write(s, sid, received, data)
        self._commit(Progress(sid, end))
        if sid == TABLE:
            self._table_progress(s, t, received, data, end, send)
        elif end == size:
            assert table is not None  # (sid is a piece of the table)
            if not self.builder.piece_ok(table, sid, t.streams[sid]):
                self._commit(Reset(sid))
                raise p.RemoteProtocolError(f"piece {sid} does not match its SHA-256",
                                            p.ErrorCode.BAD_PIECE)
            self._commit(Done(sid))
            send(p.PieceComplete(t.tag, sid))
        elif end // cfg.ack_every > received // cfg.ack_every:
            send(p.Ack(t.tag, sid, end))
            return
        if t.streams[sid].done and self.all_done(t):
            send(p.ReleaseComplete(t.tag))

    def _table_progress(self, s: PState, t: TargetRec, received: int, data: bytes, end: int,
                        send: Send) -> None:
        st = t.streams[TABLE]
        if self._table_hash is None or received == 0:
            self._table_hash = hashlib.sha256(self.staging.read(st, 0, received))
        self._table_hash.update(data)
        if self._table_hash.copy().digest() != t.table_sha256:
            if end % self.config.align or end >= self.config.max_table:
                self._commit(Reset(TABLE))
                self._table_hash = None
                raise p.RemoteProtocolError("piece table does not match the manifest",
                                            p.ErrorCode.BAD_PIECE)
            if end // self.config.ack_every > received // self.config.ack_every:
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
            table = decode_table(self.staging.read(st, 0, st.received), t.table_sha256)
            if len(table.pieces) != self.ref.pieces or table.wire_size != self.ref.size:
                raise ManifestError("piece table disagrees with the manifest")
        except ManifestError:
            # these are the signed bytes, so the release itself is broken: give it up for good
            # rather than fetch the same table forever
            self._commit(Fail())
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
            stream = Stream(prev.table_len, True, prev.table_sectors)
            old = decode_table(self.staging.read(stream, 0, prev.table_len), prev.table_sha256)
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
                self._commit(Keep(i, olds.pop(0), e.wire_size))
        self._commit(DropPrev())

    def finish_streams(self, s: PState, t: TargetRec) -> None:
        """After a reboot: complete streams whose last bytes landed but whose DONE did not."""
        tbl = t.streams.get(TABLE)
        if tbl is not None and not tbl.done and tbl.received:
            h = hashlib.sha256(self.staging.read(tbl, 0, tbl.received)).digest()
            if h == t.table_sha256:
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
