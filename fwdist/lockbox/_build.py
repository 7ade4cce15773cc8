"""Building and installing: staged pieces checked, the new image built, a box provisioned.

Everything here runs in bounded RAM: staged bytes are read from the flash a
sector at a time (:data:`~fwdist.lockbox._staging.BLOCK`), decompressed and
patched as streams, and the built image is hashed where it lies.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterator
from typing import IO, cast

import msgpack
import zstandard

from fwdist import delta, trust
from fwdist.errors import TrustError
from fwdist.flash import AlignedWriter, Flash, Region
from fwdist.journal import Journal
from fwdist.lockbox._config import BoxConfig, Layout, LockboxError
from fwdist.lockbox._staging import BLOCK, Staging
from fwdist.lockbox._state import ROOT_ROOM, PState, Stream, TargetRec
from fwdist.manifest import Manifest, PayloadRef, PieceEntry, PieceTable, Version

MAX_WINDOW = 1 << 20  # pieces are at most 1 MiB (manifest.MAX_PIECE_SIZE); so is a zstd window


class Builder:
    """Reads what staging holds as pieces and as an image."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self._dctx: zstandard.ZstdDecompressor | None = None
        self._streams: dict[int, Stream] = {}  # what _payload_read reads, during a build
        self._pieces: tuple[PieceEntry, ...] = ()
        self._starts: list[int] = []

    def forget(self) -> None:
        """A reboot: RAM (the decompression context) does not survive it."""
        self._dctx = None

    def piece_ok(self, table: PieceTable, sid: int, st: Stream) -> bool:
        """Whether a whole staged piece matches its table entry (bounded RAM)."""
        entry = table.pieces[sid]
        h = hashlib.sha256()
        if not table.compressed:
            for off in range(0, entry.size, BLOCK):
                h.update(self.staging.read(st, off, min(BLOCK, entry.size - off)))
            return h.digest()[: len(entry.id)] == entry.id  # (format 2: SHA-256/192)
        n = 0
        try:
            for chunk in self.decompressed(st, entry.wire_size, entry.size):
                h.update(chunk)
                n += len(chunk)
        except (zstandard.ZstdError, ValueError):
            return False
        return n == entry.size and h.digest()[: len(entry.id)] == entry.id

    def decompressed(self, st: Stream, wire_size: int, size: int) -> Iterator[bytes]:
        """A staged zstd piece's content, a block at a time; refuses to grow past ``size``."""
        src = self.staging.reader(st, wire_size)
        if self._dctx is None:  # made once per box: building a decompression context costs more
            self._dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)  # than a piece
        reader = self._dctx.stream_reader(cast(IO[bytes], src), read_size=BLOCK)
        produced = 0
        while chunk := reader.read(BLOCK):
            produced += len(chunk)
            if produced > size:
                raise ValueError("piece decompresses past its size")
            yield chunk

    def build(self, s: PState, t: TargetRec, m: Manifest, ref: PayloadRef, table: PieceTable,
              starts: list[int], slots: tuple[Region, Region]) -> bool:
        """Write the new image into the inactive slot (bounded RAM) and check its SHA-256.

        ``starts`` are the offsets of the pieces' contents in the payload (and its end).
        """
        ss = self.staging.sector_size
        old_slot = slots[s.active]
        new_slot = slots[1 - s.active]
        new_slot.erase(0, math.ceil(m.image_size / ss) * ss)
        w = AlignedWriter(new_slot, block=ss)
        try:
            if table.compressed:
                for i, e in enumerate(table.pieces):
                    for chunk in self.decompressed(t.streams[i], e.wire_size, e.size):
                        w.write(chunk)
            else:
                self._streams, self._pieces, self._starts = t.streams, table.pieces, starts
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
        starts = self._starts
        out = bytearray()
        end = min(off + n, starts[-1])
        while off < end:
            i = bisect.bisect_right(starts, off) - 1
            within = off - starts[i]
            k = min(end - off, self._pieces[i].size - within)
            out += self.staging.read(self._streams[i], within, k)
            off += k
        return bytes(out)


def provision(flash: Flash, config: BoxConfig, image: bytes, version: str, counter: int,
              clock: int = 0, root: bytes | None = None) -> None:
    """Factory programming: the image into slot 0 and a first journal snapshot (holding
    ``root``, a signed root a threshold of its own root keys signed, when given)."""
    Version.parse(version)
    if root is not None:
        try:
            trust.verify_root(root)
        except TrustError as e:
            raise LockboxError(f"cannot provision with that root: {e}") from None
        if len(root) > ROOT_ROOM:
            raise LockboxError(f"a root of {len(root)} bytes is over the box's {ROOT_ROOM}")
    if not 0 < len(image) <= config.slot_size:
        raise LockboxError(f"image of {len(image)} bytes does not fit a "
                           f"{config.slot_size}-byte slot")
    layout = Layout.of(flash, config)
    slot = layout.slots[0]
    slot.erase(0, slot.size)
    w = AlignedWriter(slot)
    w.write(image)
    w.close()
    state = PState(version, counter, hashlib.sha256(image).digest(), len(image), clock=clock,
                   root=root)
    Journal(layout.journal).format(msgpack.packb(state.to_wire(), use_bin_type=True))
