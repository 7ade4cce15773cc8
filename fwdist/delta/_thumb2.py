"""The ARM Thumb-2 transform: call targets made absolute, old's addresses predicted for new.

Between two builds of Thumb-2 firmware most changed bytes are address operands:
every ``BL`` to a moved function and every literal-pool pointer to moved code
or data differs, although nothing about the call or the load changed.  Two
halves remove most of them before the inner (bsdiff) encoder sees the images:

**New side: BL made absolute** (:class:`BlCodec`, bijective, streaming).
Each ``BL`` (T1: ``11110 S imm10`` / ``11 J1 1 J2 imm11``, 25-bit signed
halfword offset) has its displacement replaced by the absolute target
``(offset + position + 4) mod 2^25``, re-encoded in the same bits, as xz's
ARM-Thumb BCJ filter does (but with J1/J2 decoded, so the whole +-16 MiB
range is handled).  Instructions are parsed sequentially from offset 0 in
2-byte steps, a match consuming 4 bytes.  The match test reads only bits the
rewrite keeps (hw1[15:11], hw2[15,14,12]), so the inverse sees the same
matches: the transform is a bijection on arbitrary bytes, any offset, any
split into chunks.  Its state is the position and at most 3 held-back bytes.

Measured on cyfmac43430 (bsdiff-lzma payload, no prediction): raw 15,092;
BL absolute 13,393; adding B.W (T4) 13,461 and B<cond>.W (T3) 14,657 --
those branch inside a function, where the relative form is the one that
survives a move.  LDR-literal (T1/T2) and ADR offsets are relative to the
pool their function carries along, so they are left alone too; what they
load is handled on the old side (below).

**Old side: addresses predicted** (:func:`predict`, forward only).  The box
never has to invert this: it reads old through it.  Given an address map
(old offset -> new offset, piecewise by :class:`AddressMap`), every ``BL``
target in old becomes the absolute target its callee has in new, and every
aligned 32-bit word whose value points into old (``base <= v < base +
old_size``: literal pools, the vector table, function pointer tables)
becomes the value it will have in new.  Where the map is right, the old
bytes equal the new bytes and the diff is zero: a moved callee costs one map
entry, not one correction per call site (Courgette's idea, without a
disassembly in the payload).  Old is read at arbitrary offsets by the inner
decoder, so the decision is local: a ``BL`` starts at q when the halfwords
at q, q+2 match and those at q-2, q do not (a BL's second halfword rarely
looks like a first one: J1 = J2 = 1 for every near call).  Each read of old
costs 16 extra bytes of flash read, no RAM beyond that window.

RAM on the box: :data:`CODEC_RAM` for the BL codec plus 8 bytes per map
entry (:func:`ram`), at most :data:`MAX_MAP_ENTRIES`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fwdist.delta._core import DeltaError

CODEC_RAM: Final = 16
"""The BL codec's state (position, up to 3 held-back bytes) plus the filter's own fields."""

MAX_MAP_ENTRIES: Final = 1024
"""Most address-map entries a payload may declare: 8 KiB of RAM on the box, at most."""

ENTRY_RAM: Final = 8
"""One map entry in the box's RAM: start (u32) and delta (s32)."""

NUMPY_MIN: Final = 1024
"""Below this many bytes the byte loops beat numpy (its per-call overhead): the fast paths
hand shorter inputs to their bytewise twins (measured crossover: 512 bytes for
:func:`predict`, 1 KiB for :meth:`BlCodec.feed`; the box-side check decode makes
hundreds of reads of a few dozen bytes)."""

WINDOW_MARGIN: Final = 8
"""Bytes read either side of an old read: enough for every BL and word touching it."""


def ram(entries: int) -> int:
    """RAM the Thumb-2 filter holds on the box: the codec state and the map."""
    return CODEC_RAM + ENTRY_RAM * entries


# --------------------------------------------------------------------------
# BL fields


def _is_bl(h1: int, h2: int) -> bool:
    """BL (T1), tested only on bits the rewrite keeps."""
    return h1 & 0xF800 == 0xF000 and h2 & 0xD000 == 0xD000


def _bl_offset(h1: int, h2: int) -> int:
    """The 24-bit halfword displacement S:I1:I2:imm10:imm11, unsigned (mod 2^24)."""
    s = (h1 >> 10) & 1
    i1 = 1 ^ ((h2 >> 13) & 1) ^ s
    i2 = 1 ^ ((h2 >> 11) & 1) ^ s
    return (s << 23) | (i1 << 22) | (i2 << 21) | ((h1 & 0x3FF) << 11) | (h2 & 0x7FF)


def _bl_with(h1: int, h2: int, value: int) -> tuple[int, int]:
    """(h1, h2) with the 24-bit halfword field replaced by ``value`` mod 2^24."""
    value &= 0xFFFFFF
    s = value >> 23
    j1 = 1 ^ ((value >> 22) & 1) ^ s
    j2 = 1 ^ ((value >> 21) & 1) ^ s
    h1 = (h1 & 0xF800) | (s << 10) | ((value >> 11) & 0x3FF)
    h2 = (h2 & 0xD000) | (j1 << 13) | (j2 << 11) | (value & 0x7FF)
    return h1, h2


def _halfword(data: bytes | bytearray, i: int) -> int:
    return data[i] | data[i + 1] << 8


def _put_bl(out: bytearray, i: int, h1: int, h2: int) -> None:
    out[i : i + 4] = bytes((h1 & 0xFF, h1 >> 8, h2 & 0xFF, h2 >> 8))


# --------------------------------------------------------------------------
# the new side: relative <-> absolute, streaming


class BlCodec:
    """BL displacements made absolute (``decode=False``) or relative again (``decode=True``).

    Feed it the image in chunks of any size; it returns what it can settle
    and holds back at most 3 bytes (a BL may straddle the chunk boundary);
    :meth:`flush` returns those at the end of the image, untransformed.
    """

    def __init__(self, *, decode: bool) -> None:
        self._sign = -1 if decode else 1
        self._pos = 0  # image offset of the first held-back byte
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """What can be settled of the held-back bytes plus ``chunk``, rewritten (numpy).

        Instructions are parsed from offset 0 in 2-byte steps and a BL takes
        4, so within a run of consecutive BL-looking halfwords the 1st, 3rd,
        5th... are BLs; the match test reads only kept bits, so it can be made
        on the unrewritten bytes all at once.  :meth:`feed_bytewise` is the
        loop this is held equal to by a property test.
        """
        if len(self._held) + len(chunk) < NUMPY_MIN:
            return self.feed_bytewise(chunk)
        buf = np.frombuffer(self._held + chunk, dtype=np.uint8)
        base = self._pos
        end = len(buf) - 3
        h = np.arange(0, max(end, 0), 2)
        h1 = buf[h].astype(np.int64) | buf[h + 1].astype(np.int64) << 8
        h2 = buf[h + 2].astype(np.int64) | buf[h + 3].astype(np.int64) << 8
        match = ((h1 & 0xF800) == 0xF000) & ((h2 & 0xD000) == 0xD000)
        # index of each halfword within its run of matches: taken where it is even
        k = np.arange(len(match))
        run_start = np.maximum.accumulate(np.where(match, -1, k))
        taken = match & ((k - run_start - 1) % 2 == 0)
        stop = -(-max(end, 0) // 2) * 2  # the loop's exit past its last 2-byte step
        if taken.any():
            stop = max(stop, int(h[taken][-1]) + 4)
        i = min(stop, len(buf))
        out = buf[:i].copy()
        h, h1, h2 = h[taken], h1[taken], h2[taken]
        value = _bl_offsets(h1, h2) + self._sign * ((base + h + 4) >> 1)
        _put_bls(out, h, h1, h2, value)
        self._held = buf[i:].tobytes()
        self._pos = base + i
        return out.tobytes()

    def feed_bytewise(self, chunk: bytes) -> bytes:
        """:meth:`feed` one halfword at a time: the generic twin its property test compares with."""
        buf = bytearray(self._held + chunk)
        base = self._pos
        i = 0
        end = len(buf) - 3
        while i < end:
            h1 = buf[i] | buf[i + 1] << 8
            if h1 & 0xF800 == 0xF000:
                h2 = buf[i + 2] | buf[i + 3] << 8
                if h2 & 0xD000 == 0xD000:
                    where = (base + i + 4) >> 1
                    h1, h2 = _bl_with(h1, h2, _bl_offset(h1, h2) + self._sign * where)
                    _put_bl(buf, i, h1, h2)
                    i += 4
                    continue
            i += 2
        # i is the next instruction start: keep it and what follows it (< 4 bytes)
        i = min(i, len(buf))
        self._held = bytes(buf[i:])
        self._pos = base + i
        return bytes(buf[:i])

    def flush(self) -> bytes:
        out, self._held = self._held, b""
        self._pos += len(out)
        return out


def absolute(data: bytes) -> bytes:
    """The whole-image forward transform (what the stager applies to new)."""
    codec = BlCodec(decode=False)
    return codec.feed(data) + codec.flush()


def absolute_bytewise(data: bytes) -> bytes:
    """:func:`absolute` through :meth:`BlCodec.feed_bytewise`: the twin the property test uses."""
    codec = BlCodec(decode=False)
    return codec.feed_bytewise(data) + codec.flush()


def relative(data: bytes) -> bytes:
    """The whole-image inverse (what the box applies to the decoded stream)."""
    codec = BlCodec(decode=True)
    return codec.feed(data) + codec.flush()


# --------------------------------------------------------------------------
# the old side: prediction through the address map


@dataclass(frozen=True)
class AddressMap:
    """Old image offset -> new image offset: ``a + deltas[i]`` for ``starts[i] <= a < next``.

    Addresses before the first start or outside ``[0, old_size)`` map to
    themselves (ROM, peripherals, RAM beyond the image do not move).  Built
    by the stager from the matcher's copies; carried in the payload.
    """

    starts: Sequence[int]
    deltas: Sequence[int]
    old_size: int

    def __post_init__(self) -> None:
        if len(self.starts) != len(self.deltas):
            raise DeltaError("thumb2 address map: starts and deltas differ in number")
        if len(self.starts) > MAX_MAP_ENTRIES:
            raise DeltaError(
                f"thumb2 address map has {len(self.starts)} entries, more than {MAX_MAP_ENTRIES}"
            )
        prev = -1
        for s, d in zip(self.starts, self.deltas, strict=True):
            if not prev < s < self.old_size:
                raise DeltaError(f"thumb2 address map start {s} out of order or past old")
            if not -(1 << 31) <= d < 1 << 31:
                raise DeltaError(f"thumb2 address map delta {d} does not fit 32 bits")
            prev = s

    def __call__(self, a: int) -> int:
        if not 0 <= a < self.old_size:
            return a
        i = bisect.bisect_right(self.starts, a) - 1
        return a + self.deltas[i] if i >= 0 else a


def _bl_offsets(h1: npt.NDArray[np.int64], h2: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """:func:`_bl_offset` over arrays of (h1, h2)."""
    s = (h1 >> 10) & 1
    return (
        (s << 23)
        | ((1 ^ ((h2 >> 13) & 1) ^ s) << 22)
        | ((1 ^ ((h2 >> 11) & 1) ^ s) << 21)
        | ((h1 & 0x3FF) << 11)
        | (h2 & 0x7FF)
    )


def _put_bls(
    out: npt.NDArray[np.uint8],
    at: npt.NDArray[np.int64],
    h1: npt.NDArray[np.int64],
    h2: npt.NDArray[np.int64],
    value: npt.NDArray[np.int64],
) -> None:
    """:func:`_bl_with` then :func:`_put_bl` at every offset of ``at`` at once."""
    value = value & 0xFFFFFF
    s = value >> 23
    h1 = (h1 & 0xF800) | (s << 10) | ((value >> 11) & 0x3FF)
    h2 = (h2 & 0xD000) | ((1 ^ ((value >> 22) & 1) ^ s) << 13)
    h2 |= ((1 ^ ((value >> 21) & 1) ^ s) << 11) | (value & 0x7FF)
    out[at] = h1 & 0xFF
    out[at + 1] = h1 >> 8
    out[at + 2] = h2 & 0xFF
    out[at + 3] = h2 >> 8


def _mapped(amap: AddressMap, a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """:meth:`AddressMap.__call__` over an array of addresses."""
    if not amap.starts:
        return a
    starts = np.asarray(amap.starts, dtype=np.int64)
    deltas = np.asarray(amap.deltas, dtype=np.int64)
    i = np.searchsorted(starts, a, side="right") - 1
    moves = (a >= 0) & (a < amap.old_size) & (i >= 0)
    return np.where(moves, a + deltas[np.maximum(i, 0)], a)


def predict(window: bytes, at: int, amap: AddressMap, base: int | None, old_size: int) -> bytes:
    """:func:`predict_bytewise` over numpy arrays: the same bytes, at C speed.

    Staging predicts the whole of old once per candidate link address and the
    check decode a window per read; the byte loop took a second per 400 KB
    image.  The property test ``test_predict_fast_path_is_its_bytewise_twin``
    holds the two equal on arbitrary bytes, offsets, maps and bases.
    """
    if len(window) < NUMPY_MIN:
        return predict_bytewise(window, at, amap, base, old_size)
    b = np.frombuffer(window, dtype=np.uint8)
    out = b.copy()
    n = len(b)
    if base is not None:
        w = np.arange((-at) % 4, n - 3, 4)
        v = b[w].astype(np.int64)
        v |= b[w + 1].astype(np.int64) << 8
        v |= b[w + 2].astype(np.int64) << 16
        v |= b[w + 3].astype(np.int64) << 24
        hit = (v >= base) & (v < base + old_size)
        w, v = w[hit], (_mapped(amap, v[hit] - base) + base) & 0xFFFFFFFF
        for k in range(4):
            out[w + k] = (v >> (8 * k)) & 0xFF
    h = np.arange(at & 1, n - 3, 2)
    h1 = b[h].astype(np.int64) | b[h + 1].astype(np.int64) << 8
    h2 = b[h + 2].astype(np.int64) | b[h + 3].astype(np.int64) << 8
    match = ((h1 & 0xF800) == 0xF000) & ((h2 & 0xD000) == 0xD000)
    take = match & ~np.concatenate(([False], match[:-1]))
    h, h1, h2 = h[take], h1[take], h2[take]
    target = (_bl_offsets(h1, h2) + ((at + h + 4) >> 1)) & 0xFFFFFF
    target -= (target & 0x800000) << 1
    _put_bls(out, h, h1, h2, _mapped(amap, target << 1) >> 1)
    return out.tobytes()


def predict_bytewise(
    window: bytes, at: int, amap: AddressMap, base: int | None, old_size: int
) -> bytes:
    """``window`` (old bytes from offset ``at``) with its addresses as new will have them.

    ``base`` is the address old is linked at (for absolute pointers), or None
    to leave pointers alone.  Decisions use only the window's raw bytes and
    each touches at most 6 bytes around its output, so a window that extends
    :data:`WINDOW_MARGIN` bytes past a read gives the same bytes there as the
    whole image would.
    """
    out = bytearray(window)
    n = len(window)
    if base is not None:
        hi = base + old_size
        for i in range((-at) % 4, n - 3, 4):
            v = window[i] | window[i + 1] << 8 | window[i + 2] << 16 | window[i + 3] << 24
            if base <= v < hi:
                out[i : i + 4] = ((amap(v - base) + base) & 0xFFFFFFFF).to_bytes(4, "little")
    prev_match = False
    for i in range((at & 1), n - 3, 2):
        h1 = window[i] | window[i + 1] << 8
        match = h1 & 0xF800 == 0xF000 and (window[i + 2] | window[i + 3] << 8) & 0xD000 == 0xD000
        if match and not prev_match:
            h2 = window[i + 2] | window[i + 3] << 8
            q = at + i
            target = (_bl_offset(h1, h2) + ((q + 4) >> 1)) & 0xFFFFFF
            if target & 0x800000:
                target -= 1 << 24
            moved = amap(target << 1) >> 1
            _put_bl(out, i, *_bl_with(h1, h2, moved))
        prev_match = match
    return bytes(out)
