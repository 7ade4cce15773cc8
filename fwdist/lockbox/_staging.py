"""The staging area: sectors handed to streams one at a time, staged writes and reads.

Staging costs flash for the freedom it buys: every stream (a piece, or the
table) starts on a sector boundary and owns whole sectors (a tiny FAT in the
journal: ``ALLOC``, ``REPLACE``, ``TRIM`` records), so a bad piece is discarded
without touching its neighbours, and pieces shared with a newer release are
adopted in place. A payload of small pieces therefore needs about one extra
sector per piece (:meth:`BoxConfig.staging_sectors_for`).

Persistence rules, chosen so a power cut loses at most the frame in flight: a
sector is erased before its ``ALLOC`` record; every data frame is written to its
stream's sectors and then recorded (``PROGRESS``, by the caller); after a boot,
the sector a partial stream was writing into may hold a torn tail beyond the
recorded offset (NOR cannot tell written 0xFF from erased), so the next write
to that stream first copies the good prefix into a fresh sector (``REPLACE``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from fwdist.flash import Region
from fwdist.lockbox._config import LockboxError
from fwdist.lockbox._state import PState, Stream
from fwdist.lockbox._update import Alloc, DropPrev, Record, Replace

BLOCK = 4096  # staged bytes are read (hashed, decompressed) a sector at a time at most


class StagingFull(LockboxError):
    """No staging sector is free (only a box configured too small for a release gets here)."""


class Staging:
    """Allocates staging sectors to streams and moves their bytes in and out.

    ``commit`` journals a record (and applies it to the state): the allocator
    records every sector it hands out, so the state names each one's owner.
    """

    def __init__(self, region: Region, align: int, commit: Callable[[Record], None]) -> None:
        self.region = region
        self.sector_size = region.flash.sector_size
        self.align = align
        self._commit = commit
        self.torn: dict[int, int] = {}
        """Stream id -> index of its sector whose tail may be torn (set at boot)."""

    def read(self, st: Stream, off: int, n: int) -> bytes:
        """``n`` bytes of a stream at ``off``, one read per sector they span."""
        ss = self.sector_size
        parts = []
        while n > 0:
            k, within = divmod(off, ss)
            m = min(n, ss - within)
            parts.append(self.region.read(st.sectors[k] * ss + within, m))
            off += m
            n -= m
        return b"".join(parts)

    def reader(self, st: Stream, size: int) -> io.RawIOBase:
        """A file-like view of the first ``size`` bytes of a stream (bounded reads)."""
        return _StagedReader(lambda off, n: self.read(st, off, n), size)

    def alloc(self, s: PState) -> int:
        """Erase a free sector and return it; the caller records who owns it."""
        used = s.used_sectors()
        for sector in range(self.region.sectors):
            if sector not in used:
                self.region.erase_sector(sector)
                return sector
        if s.prev is not None:
            self._commit(DropPrev())
            return self.alloc(s)
        raise StagingFull("staging area is full")

    def write(self, s: PState, sid: int, pos: int, data: bytes) -> None:
        """Write ``data`` at ``pos`` of stream ``sid``, allocating and relocating sectors.

        The last chunk of a stream may be unaligned: it is padded with 0xFF.
        """
        t = s.target
        if t is None:
            raise LockboxError("no target")
        ss = self.sector_size
        pad = -len(data) % self.align
        if pad:
            data += b"\xff" * pad
        done, total = 0, len(data)
        while done < total:
            k, within = divmod(pos, ss)
            n = min(total - done, ss - within)
            st = t.stream(sid)
            if k == len(st.sectors):
                self._commit(Alloc(sid, self.alloc(s)))
            elif self.torn.get(sid) == k:
                fresh = self.alloc(s)
                if within:
                    self.region.write(fresh * ss, self.read(st, k * ss, within))
                self._commit(Replace(sid, k, fresh))
                del self.torn[sid]
            self.region.write(st.sectors[k] * ss + within, data[done : done + n])
            pos += n
            done += n


class _StagedReader(io.RawIOBase):
    """A file-like view of ``size`` staged bytes spread over sectors (bounded reads)."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self._read = read
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._size - self._pos, BLOCK)
        if n <= 0:
            return 0
        b[:n] = self._read(self._pos, n)
        self._pos += n
        return n
