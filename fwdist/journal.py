"""An append-only journal of small records in two alternating flash halves.

Why this shape: NOR cannot rewrite a byte without erasing its whole sector, so
state that changes often (bytes persisted, pieces verified, install phase) is
not updated in place but appended as records, and the box's state is the
replay of the log. When one half fills up, a *snapshot* of the whole state is
written at the start of the other half (after erasing it), and appending
continues there; the full half is left alone until the next switch, so at
every instant one half holds a complete, valid history.

Record layout (padded with 0xFF to the write alignment)::

    0xA5 | kind (0 snapshot, 1 record) | u16 payload length | u32 sequence | payload | CRC-32

The magic byte is never 0xFF, so a write that tore after its first byte is
always visible. Boot picks the half whose first record is a valid snapshot with
the highest sequence number and replays the records after it while their CRC
and consecutive sequence numbers hold. Anything after the last valid record that
is not erased (a torn record) makes the journal *dirty*: the caller compacts it
(a fresh snapshot in the other half) before appending again, so no write ever
lands on unerased bytes. A power cut can therefore lose only the record being
written when it happened.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from fwdist.errors import FwdistError
from fwdist.flash import Region

MAGIC = 0xA5
SNAPSHOT = 0
RECORD = 1
_HEAD = struct.Struct(">BBHI")
_CRC = struct.Struct(">I")
HEAD_BYTES = _HEAD.size
CRC_BYTES = 4


class JournalError(FwdistError):
    """The journal holds no valid snapshot (box never provisioned, or both halves destroyed)."""


class JournalFull(FwdistError):
    """The current half has no room for this record; compact first."""


@dataclass(frozen=True)
class Replay:
    """What boot found: the snapshot payload and the records after it, in order."""

    snapshot: bytes
    records: list[bytes]
    dirty: bool


class Journal:
    """The log over two equal regions (each a whole number of sectors)."""

    def __init__(self, halves: tuple[Region, Region]) -> None:
        if halves[0].size != halves[1].size:
            raise JournalError("journal halves must be the same size")
        self.halves = halves
        self.align = halves[0].flash.align
        self.current = 0
        self.pos = 0
        self.seq = 0
        self.dirty = True
        self.records_written = 0
        self.compactions = 0

    @property
    def capacity(self) -> int:
        return self.halves[0].size

    def _frame(self, kind: int, seq: int, payload: bytes) -> bytes:
        body = _HEAD.pack(MAGIC, kind, len(payload), seq) + payload
        pad = b"\xff" * (-(len(body) + CRC_BYTES) % self.align)
        return b"".join((body, _CRC.pack(zlib.crc32(body)), pad))

    def _parse(self, region: Region, pos: int) -> tuple[int, int, bytes, int] | None:
        """(kind, seq, payload, next position) of a valid record at ``pos``, else None."""
        if pos + HEAD_BYTES + CRC_BYTES > region.size:
            return None
        magic, kind, length, seq = _HEAD.unpack(region.read(pos, HEAD_BYTES))
        end = pos + HEAD_BYTES + length + CRC_BYTES
        if magic != MAGIC or kind not in (SNAPSHOT, RECORD) or end > region.size:
            return None
        body = region.read(pos, HEAD_BYTES + length)
        (crc,) = _CRC.unpack(region.read(pos + HEAD_BYTES + length, CRC_BYTES))
        if zlib.crc32(body) != crc:
            return None
        return kind, seq, body[HEAD_BYTES:], end + (-end % self.align)

    def load(self) -> Replay:
        """Find the newest valid snapshot and the records after it; position for appending."""
        best: tuple[int, int, bytes, int] | None = None
        for i, region in enumerate(self.halves):
            first = self._parse(region, 0)
            if first is None or first[0] != SNAPSHOT:
                continue
            if best is None or first[1] > best[1]:
                best = (i, first[1], first[2], first[3])
        if best is None:
            raise JournalError("the journal holds no valid snapshot; provision the box first")
        half, seq, snapshot, pos = best
        region = self.halves[half]
        records = []
        while (rec := self._parse(region, pos)) is not None:
            if rec[0] != RECORD or rec[1] != seq + 1:
                break
            seq = rec[1]
            records.append(rec[2])
            pos = rec[3]
        tail = region.read(pos, region.size - pos)
        self.current, self.pos, self.seq = half, pos, seq
        self.dirty = tail.count(0xFF) != len(tail)
        return Replay(snapshot, records, self.dirty)

    def snapshot_room(self, spare: int = 256) -> int:
        """The largest snapshot payload a half holds with ``spare`` bytes left for records
        after it (a half that holds only its snapshot would compact at every record)."""
        room = self.capacity - spare - HEAD_BYTES - CRC_BYTES
        return room - room % self.align

    def fits(self, payload: bytes) -> bool:
        return self.pos + len(self._frame(RECORD, 0, payload)) <= self.capacity

    def append(self, payload: bytes) -> None:
        """Append one record; raise :class:`JournalFull` (nothing written) when it would not fit."""
        if self.dirty:
            raise JournalFull("the journal has a torn tail; compact before appending")
        raw = self._frame(RECORD, self.seq + 1, payload)
        if self.pos + len(raw) > self.halves[0].size:
            raise JournalFull(f"journal half {self.current} is full")
        self.halves[self.current].write(self.pos, raw)
        self.pos += len(raw)
        self.seq += 1
        self.records_written += 1

    def compact(self, snapshot: bytes) -> None:
        """Erase the other half, write ``snapshot`` at its start, and continue there."""
        raw = self._frame(SNAPSHOT, self.seq + 1, snapshot)
        if len(raw) > self.capacity:
            raise JournalError(f"state snapshot of {len(snapshot)} bytes does not fit a half")
        other = 1 - self.current
        region = self.halves[other]
        region.erase(0, region.size)
        region.write(0, raw)
        self.current, self.pos, self.seq = other, len(raw), self.seq + 1
        self.dirty = False
        self.compactions += 1

    def format(self, snapshot: bytes) -> None:
        """Start a fresh journal (provisioning): erase both halves, snapshot into half 0."""
        for region in self.halves:
            region.erase(0, region.size)
        self.current, self.seq = 1, 0
        self.compact(snapshot)
