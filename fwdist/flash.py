"""The lockbox's storage: a NOR flash model with real rules and power-cut injection.

NOR flash erases to 0xFF a whole sector at a time and programs bytes only once
between erases, in aligned units. :class:`Flash` enforces exactly that (like
MCUboot's simulator): a write to a byte already written since its last erase,
a write whose address or length is not a multiple of the write alignment, and
an erase that is not whole sectors all raise :class:`FlashError`. Reading is
free and never fails.

Every write and every sector erase is one *operation* and is counted. A test
arms a countdown with :meth:`Flash.arm`: the operation with that index raises
:class:`PowerCut` *before* it happens, or, with ``torn=True``, after a prefix of
it landed (a prefix of the bytes of a write, a prefix of the bytes of a sector
erase) — the two ways a real part loses power. After a cut the flash is dead
(every operation raises again) until :meth:`Flash.power_on`, which is the
reboot. :class:`PowerCut` derives from :class:`BaseException` so that no
``except Exception`` in the code under test can swallow it.

:class:`FileFlash` keeps the same model in one file (written with ``pwrite`` and
``fsync`` per operation) so a box persists between runs of the emulator. The
file holds only the bytes, so on open a byte counts as erased when it reads
0xFF: lenient where the in-memory model is strict, which is fine for an
emulator and never for a test of the rules.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from fwdist.errors import FwdistError

ERASED = 0xFF


class FlashError(FwdistError):
    """An operation broke a NOR rule (a bug in the caller, never a power cut)."""


class PowerCut(BaseException):
    """Power was lost before (or, torn, during) flash operation number ``op``."""

    def __init__(self, op: int, torn: bool) -> None:
        super().__init__(f"power cut at flash operation {op}{' (torn)' if torn else ''}")
        self.op = op
        self.torn = torn


class Flash:
    """An in-memory NOR flash of ``size`` bytes: sectors of ``sector_size``, writes of ``align``."""

    def __init__(self, size: int, sector_size: int = 4096, align: int = 8) -> None:
        if sector_size <= 0 or size <= 0 or size % sector_size:
            raise FlashError(f"flash size {size} must be a positive multiple of the sector size")
        if align <= 0 or sector_size % align:
            raise FlashError(f"write alignment {align} must divide the sector size {sector_size}")
        self.size = size
        self.sector_size = sector_size
        self.align = align
        self._data = bytearray(b"\xff") * size  # (bytearray(b"\xff" * size) is 100x slower)
        self._written = bytearray(size)
        self.ops = 0
        self.writes = 0
        self.erases = 0
        self.bytes_written = 0
        self.erase_counts = [0] * (size // sector_size)
        self._cut_at: int | None = None
        self._torn = False
        self._rng = random.Random(0)
        self.dead = False
        self._mirrored = type(self)._store is not Flash._store  # a subclass keeps a copy elsewhere

    # -- power ------------------------------------------------------------------

    def arm(self, cut_at: int | None, *, torn: bool = False, seed: int = 0) -> None:
        """Cut power at operation index ``cut_at`` (counted from :attr:`ops`'s current origin)."""
        self._cut_at = cut_at
        self._torn = torn
        self._rng = random.Random(seed)

    def power_on(self) -> None:
        """Power comes back (the reboot); the countdown is disarmed."""
        self.dead = False
        self._cut_at = None

    def _begin(self) -> bool:
        """Count an operation; return True if power is lost during it (torn)."""
        if self.dead:
            raise PowerCut(self.ops, False)
        op = self.ops
        self.ops += 1
        if self._cut_at is not None and op >= self._cut_at:
            self.dead = True
            if not self._torn:
                raise PowerCut(op, False)
            return True
        return False

    # -- operations ---------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        if addr < 0 or n < 0 or addr + n > self.size:
            raise FlashError(f"read of {n} bytes at {addr:#x} is outside the flash")
        return bytes(self._data[addr : addr + n])

    def write(self, addr: int, data: bytes) -> None:
        n = len(data)
        end = addr + n
        if addr < 0 or end > self.size:
            raise FlashError(f"write of {n} bytes at {addr:#x} is outside the flash")
        if addr % self.align or n % self.align:
            raise FlashError(f"write of {n} bytes at {addr:#x} is not {self.align}-byte aligned")
        if self._written.find(1, addr, end) != -1:
            raise FlashError(f"write of {n} bytes at {addr:#x} touches bytes not erased")
        torn = self._begin()
        if torn:
            n = self._rng.randrange(n) if n else 0
            end = addr + n
            data = data[:n]
        self._data[addr:end] = data
        self._written[addr:end] = b"\x01" * n
        if self._mirrored:
            self._store(addr, data)
        if torn:
            raise PowerCut(self.ops - 1, True)
        self.writes += 1
        self.bytes_written += n

    def erase(self, addr: int, n: int) -> None:
        """Erase whole sectors; each sector is one operation."""
        ss = self.sector_size
        if addr < 0 or n <= 0 or addr + n > self.size or addr % ss or n % ss:
            raise FlashError(f"erase of {n} bytes at {addr:#x} is not whole sectors")
        for sector_addr in range(addr, addr + n, ss):
            torn = self._begin()
            m = self._rng.randrange(ss) if torn else ss
            ff = b"\xff" * m
            self._data[sector_addr : sector_addr + m] = ff
            self._written[sector_addr : sector_addr + m] = bytes(m)
            if self._mirrored:
                self._store(sector_addr, ff)
            if torn:
                raise PowerCut(self.ops - 1, True)
            self.erases += 1
            self.erase_counts[sector_addr // ss] += 1

    def is_erased(self, addr: int, n: int) -> bool:
        """Whether every byte in the range may be written (the model knows; real parts don't)."""
        return self._written.find(1, addr, addr + n) == -1

    def clone(self, into: Flash | None = None) -> Flash:
        """An independent in-memory copy of the bytes, the written map, the counters and the wear.

        What a factory does with a golden image, and what the simulator does for each new
        box (much cheaper than ``copy.deepcopy``). The clone is powered and disarmed
        (:meth:`arm` is not copied) and is never a :class:`FileFlash`. ``into`` is a
        flash of the same geometry that nobody uses any more: it is overwritten and
        returned, which spares allocating (and page-faulting in) fresh memory.
        """
        if into is None:
            twin = Flash(self.size, self.sector_size, self.align)
        elif (type(into) is not Flash or into is self
              or (into.size, into.sector_size, into.align) != (self.size, self.sector_size,
                                                              self.align)):
            raise FlashError("clone into: needs another in-memory flash of the same geometry")
        else:
            twin = into
            twin.power_on()
            twin.arm(None)
        twin._data[:] = self._data
        twin._written[:] = self._written
        twin.ops, twin.writes, twin.erases = self.ops, self.writes, self.erases
        twin.bytes_written = self.bytes_written
        twin.erase_counts = list(self.erase_counts)
        return twin

    def _store(self, addr: int, data: bytes) -> None:
        """Hook for persistent variants: each byte range that changed, as it now reads (called
        only when a subclass overrides it)."""


class FileFlash(Flash):
    """A :class:`Flash` mirrored in one file, every operation written and fsynced."""

    def __init__(self, path: Path | str, size: int, sector_size: int = 4096,
                 align: int = 8) -> None:
        super().__init__(size, sector_size, align)
        self.path = Path(path)
        exists = self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if exists:
            content = os.pread(self._fd, size + 1, 0)
            if len(content) != size:
                os.close(self._fd)
                raise FlashError(f"{self.path} holds {len(content)} bytes, not a {size}-byte flash")
            self._data[:] = content
            self._written[:] = bytes(b != ERASED for b in content)
        else:
            os.pwrite(self._fd, bytes(self._data), 0)
            os.fsync(self._fd)

    def _store(self, addr: int, data: bytes) -> None:
        if data:
            os.pwrite(self._fd, data, addr)
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Region:
    """A named, sector-aligned range of a flash, addressed from 0."""

    flash: Flash
    name: str
    start: int
    size: int

    @property
    def sectors(self) -> int:
        return self.size // self.flash.sector_size

    def _check(self, off: int, n: int) -> None:
        if off < 0 or n < 0 or off + n > self.size:
            raise FlashError(f"{n} bytes at {off:#x} are outside region {self.name} "
                             f"({self.size} bytes)")

    def read(self, off: int, n: int) -> bytes:
        self._check(off, n)
        return self.flash.read(self.start + off, n)

    def write(self, off: int, data: bytes) -> None:
        if off < 0 or off + len(data) > self.size:
            self._check(off, len(data))
        self.flash.write(self.start + off, data)

    def erase(self, off: int, n: int) -> None:
        self._check(off, n)
        self.flash.erase(self.start + off, n)

    def erase_sector(self, index: int) -> None:
        ss = self.flash.sector_size
        self.erase(index * ss, ss)


class AlignedWriter:
    """Streams bytes into a region sequentially, in aligned blocks, in bounded RAM.

    The region must be erased ahead of the writer. ``close`` pads the last block
    with 0xFF up to the alignment and returns the number of bytes written
    (without the padding).
    """

    def __init__(self, region: Region, block: int = 256) -> None:
        align = region.flash.align
        self.region = region
        self.block = max(align, block - block % align)
        self._buf = bytearray()
        self._pos = 0
        self.total = 0

    def write(self, data: bytes) -> None:
        """Buffer ``data``; write every whole block (the same blocks, one copy fewer each)."""
        n = len(data)
        self.total += n
        buf, block = self._buf, self.block
        if len(buf) + n < block:
            buf += data
            return
        start = 0
        if buf:  # top the buffered block up first (the buffer is always shorter than a block)
            start = block - len(buf)
            buf += data[:start]
            self.region.write(self._pos, bytes(buf))
            self._pos += block
            buf.clear()
        whole = start + (n - start) // block * block
        for off in range(start, whole, block):
            self.region.write(self._pos, data[off : off + block])
            self._pos += block
        if whole < n:
            buf += data[whole:]

    def close(self) -> int:
        if self._buf:
            align = self.region.flash.align
            pad = -len(self._buf) % align
            self.region.write(self._pos, bytes(self._buf) + b"\xff" * pad)
            self._pos += len(self._buf) + pad
            self._buf.clear()
        return self.total
