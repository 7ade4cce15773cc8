"""bsdiff's transform as five column streams, and the one decoder every bsdiff back end uses.

The transform (control triples, a byte-wise diff against old, and extra
bytes) is re-encoded as five columns -- seek, x, y, diff, extra -- so each
column has its own statistics.  A back end (:mod:`._bsdiff_zstd`,
:mod:`._bsdiff_lzma`) only decides how each column is stored: it is a
:class:`ColumnFormat` naming how the header declares a stream's coder and how
a stored stream is opened.  Header layout, bounds, the control replay and its
checks are the same for all of them, and live here once.

Payload layout of every back end (``uv`` = unsigned LEB128)::

    tag | uv new_size | the five streams' coders (the back end's bytes)
        | uv length of the first four streams | five stored streams
          (the last one runs to the end of the payload)
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

import bsdiff4.core
import numpy as np

from fwdist.delta import _match
from fwdist.delta._core import (
    MAX_VARINT_BYTES,
    PIECE,
    Cursor,
    DeltaError,
    ReadAt,
    Reader,
    Sink,
    read_exact,
    unzigzag,
    zigzag,
)
from fwdist.leb128 import encode as uv

STREAMS: Final = ("seek", "x", "y", "diff", "extra")

MAX_WINDOW_LOG: Final = 20
"""Largest zstd window a bsdiff stream may declare; the decoder refuses bigger ones."""

# Window logs the bsdiff encoders ask zstd for, measured on real .so pairs at
# level 22 (bytes relative to window_log 20):
#   control columns at 14: no cost (the columns are small and local);
#   diff and extra at 17 (128 KiB): orjson +5, pydantic-core +515,
#   zstandard +5,485 (+0.4 %) -- in exchange for ~0.5 MiB less RAM per stream.
_CONTROL_WINDOW_LOG: Final = 14
_DATA_WINDOW_LOG: Final = 17
ZSTD_WINDOW_LOGS: Final = (_CONTROL_WINDOW_LOG,) * 3 + (_DATA_WINDOW_LOG,) * 2
"""The window log asked for, per stream in :data:`STREAMS` order."""

BUFFERS_RAM: Final = 3 * PIECE
"""The decoder's buffers besides the stream decoders: old bytes read, diff taken, output."""


# --------------------------------------------------------------------------
# the transform

Transform = tuple[list[tuple[int, int, int]], bytes, bytes]
"""(seek, x, y) triples, diff bytes, extra bytes."""


def bsdiff4_triples(old: bytes, new: bytes) -> Transform:
    """bsdiff's own (x, y, z) triples, reordered as (seek, x, y) with the seek *before* the copy.

    The transform for pairs too large for :mod:`._match` (its suffix sort
    needs less memory per byte there).  Seek-first makes a trailing seek
    unnecessary and lets zero-length triples fold into the next seek, so every
    triple produces >= 1 byte: the decoder can then bound the number of
    triples by new_size.
    """
    control, diff, extra = bsdiff4.core.diff(old, new)
    assert isinstance(control, bytes) and isinstance(diff, bytes) and isinstance(extra, bytes)
    raw = []
    for i in range(0, len(control), 8):
        magnitude = int.from_bytes(control[i : i + 8], "little")
        sign = magnitude >> 63
        magnitude &= (1 << 63) - 1
        raw.append(-magnitude if sign else magnitude)
    triples: list[tuple[int, int, int]] = []
    pending = 0
    for i in range(0, len(raw), 3):
        x, y, z = raw[i : i + 3]
        if x + y == 0:
            pending += z
            continue
        triples.append((pending, x, y))
        pending = z
    return triples, diff, extra


def cover_triples(old: bytes, new: bytes, covers: list[_match.Cover]) -> Transform:
    """(seek, x, y) triples, diff and extra bytes for a cover list (in new order, disjoint).

    A triple copies x bytes (old + diff) after seeking, then y extra bytes up
    to the next cover; bytes before the first cover are a copy-less triple.
    """
    o = np.frombuffer(old, dtype=np.uint8)
    w = np.frombuffer(new, dtype=np.uint8)
    triples: list[tuple[int, int, int]] = []
    diffs: list[bytes] = []
    extras: list[bytes] = []
    old_pos = 0
    new_pos = 0
    if not covers or covers[0].new_start > 0:
        first = covers[0].new_start if covers else len(new)
        if first:
            triples.append((0, 0, first))
            extras.append(new[:first])
        new_pos = first
    for k, (old_start, new_start, length) in enumerate(covers):
        gap_end = covers[k + 1].new_start if k + 1 < len(covers) else len(new)
        triples.append((old_start - old_pos, length, gap_end - new_start - length))
        taken = w[new_start : new_start + length] - o[old_start : old_start + length]
        diffs.append(taken.tobytes())
        extras.append(new[new_start + length : gap_end])
        old_pos = old_start + length
        new_pos = gap_end
    assert new_pos == len(new)
    return triples, b"".join(diffs), b"".join(extras)


def proxy_size(transform: Transform) -> int:
    """The five columns' bytes under fast raw LZMA2 (preset 1, 64 KiB dictionary).

    A cheap stand-in for the back ends' real coding (a few ms where preset 9e
    takes seconds), good enough to rank two transforms of one pair: it picked
    the one with the smaller final bsdiff-lzma payload on all six device
    pairs, the built-in sample and the seeded test pair.
    """
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 1, "dict_size": 1 << 16}]
    return sum(
        len(lzma.compress(column, format=lzma.FORMAT_RAW, filters=filters))
        for column in _columns_of(transform)
    )


def rediff(transform: Transform, old: bytes, new: bytes) -> Transform:
    """``transform``'s copies and extra bytes, its diff taken again against ``old``.

    Any cover list is a valid transform of a pair whose old image has the
    same size, so the copies bsdiff found between two images are reused for
    another view of old (the Thumb-2 filter's predicted old, which differs
    only in address operands) without a second suffix sort: only the diff
    bytes change.
    """
    triples, _, extra = transform
    o = np.frombuffer(old, dtype=np.uint8)
    w = np.frombuffer(new, dtype=np.uint8)
    diffs: list[bytes] = []
    old_pos = new_pos = 0
    for seek, x, y in triples:
        old_pos += seek
        if not (old_pos >= 0 and old_pos + x <= len(old) and new_pos + x + y <= len(new)):
            raise ValueError("transform does not fit the images")
        diffs.append((w[new_pos : new_pos + x] - o[old_pos : old_pos + x]).tobytes())
        old_pos += x
        new_pos += x + y
    if new_pos != len(new):
        raise ValueError("transform does not cover the new image")
    return triples, b"".join(diffs), extra


def _triples(old: bytes, new: bytes, bsdiffs: Transform | None = None) -> Transform:
    """The transform the back ends encode: :mod:`._match`'s covers or bsdiff's, whichever
    compresses smaller.

    The matcher wins by 1-4 % on device firmware, but bsdiff's covers win on
    the synthetic sample (its relocations favour fewer, longer covers); both
    are cheap next to the final coding, so both are made and ranked by
    :func:`proxy_size`.  Pairs above :data:`._match.MAX_IMAGE` take bsdiff's.
    ``bsdiffs``, when given, stands for bsdiff's own transform (one the caller
    already holds, see :func:`rediff`), so it is not computed again.
    """
    if bsdiffs is None:
        bsdiffs = bsdiff4_triples(old, new)
    if len(old) + len(new) > _match.MAX_IMAGE:
        return bsdiffs
    matched = cover_triples(old, new, _match.covers(old, new))
    return min((matched, bsdiffs), key=proxy_size)


def _columns_of(transform: Transform) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The five raw streams of a transform; see :func:`columns`."""
    triples, diff, extra = transform
    seeks = bytearray()
    xs = bytearray()
    ys = bytearray()
    prev_y = 0
    for seek, x, y in triples:
        seeks += uv(zigzag(seek - prev_y))
        xs += uv(x)
        ys += uv(y)
        prev_y = y
    return bytes(seeks), bytes(xs), bytes(ys), diff, extra


def columns(
    old: bytes, new: bytes, bsdiffs: Transform | None = None
) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The five raw streams (seek, x, y, diff, extra), before compression.

    Columns compress better than interleaved triples (each column has its own
    statistics: measured -4 % control bytes against one columnar frame, -6 %
    against rows).  The seek column stores ``seek - previous y``: an insertion
    of y bytes then shows up as 0, the displacement change it really is.
    """
    return _columns_of(_triples(old, new, bsdiffs))


# --------------------------------------------------------------------------
# the decoding loop


def _stream_bounds(
    pos: int, lengths: list[int], payload_size: int, what: str
) -> list[tuple[int, int]]:
    """(start, end) of the five streams: four lengths from the header, the last to the end."""
    bounds = []
    for n in lengths:
        bounds.append((pos, pos + n))
        pos += n
    if pos > payload_size:
        raise DeltaError(f"{what} streams overrun the payload")
    bounds.append((pos, payload_size))
    return bounds


_LOW7: Final = int.from_bytes(b"\x7f" * PIECE, "little")
_HIGH1: Final = int.from_bytes(b"\x80" * PIECE, "little")


def _add(old: bytes, diff: bytes) -> bytes:
    """Byte-wise (old + diff) mod 256, as SWAR on Python ints: no per-byte loop.

    The masks are built once, PIECE bytes wide: ``&`` with a shorter operand
    only touches that operand's width, so one pair serves every n <= PIECE.
    A diff that is zero at its ends (bsdiff's usual case) adds only its middle.
    """
    core = diff.strip(b"\0")
    if not core:
        return old
    start = diff.find(core[0])  # the first non-zero byte: only zeros precede it
    end = start + len(core)
    a = int.from_bytes(old[start:end], "little")
    b = int.from_bytes(core, "little")
    total = ((a & _LOW7) + (b & _LOW7)) ^ ((a ^ b) & _HIGH1)
    return b"".join((old[:start], total.to_bytes(end - start, "little"), old[end:]))


def _replay(
    old: ReadAt,
    old_size: int,
    streams: list[Reader],
    sink: Sink,
    new_size: int,
    chunk: int = PIECE,
) -> None:
    """Replay the control triples: O(3 x chunk) memory on top of the stream decoders.

    ``chunk`` bounds every read of old and every piece handed to the sink (the
    small-RAM formats pass their box-side buffer size).  The three control
    readers may be one and the same stream: the triple's fields are read in
    seek, x, y order.
    """
    seeks, xs, ys, diff, extra = streams
    seek_uv, x_uv, y_uv, diff_take, extra_take = seeks.uv, xs.uv, ys.uv, diff.take, extra.take
    old_pos = 0
    new_pos = 0
    prev_y = 0
    while new_pos < new_size:
        old_pos += unzigzag(seek_uv()) + prev_y
        x = x_uv()
        y = y_uv()
        if not 0 <= old_pos <= old_size:
            raise DeltaError(f"seek to {old_pos} outside the old image")
        if x + y == 0 or new_pos + x + y > new_size:
            raise DeltaError(f"control ({x}, {y}) at {new_pos} outside the new image")
        if old_pos + x > old_size:
            raise DeltaError(f"diff of {x} at {old_pos} runs past the old image")
        # the checks above keep every piece within new_size: no output budget is needed here
        end = old_pos + x
        while old_pos < end:
            n = end - old_pos if end - old_pos < chunk else chunk
            sink(_add(read_exact(old, old_pos, n, "old"), diff_take(n)))
            old_pos += n
        left = y
        while left:
            n = left if left < chunk else chunk
            sink(extra_take(n))
            left -= n
        new_pos += x + y
        prev_y = y
    for stream in streams:
        stream.finish()


# --------------------------------------------------------------------------
# one format per back end: how coders are declared and streams opened

C = TypeVar("C")
"""What a back end's header says about one stream (a window log, a (method, log) pair)."""


class Header(NamedTuple, Generic[C]):
    """A parsed bsdiff payload header."""

    new_size: int
    coders: list[C]
    """One per stream, in :data:`STREAMS` order."""
    lengths: list[int]
    """Stored bytes of the first four streams; the fifth runs to the end of the payload."""
    size: int
    """Header bytes: where the first stream starts."""


@dataclass(frozen=True)
class ColumnFormat(Generic[C]):
    """A bsdiff back end: its tag, how it declares the five coders, how it opens a stream.

    ``read_coders`` reads (and checks) the coder bytes from a cursor placed
    after new_size; ``open_stream(name, payload, start, end, coder)`` returns
    the reader of one stored stream or raises DeltaError.
    """

    name: str
    tag: int
    coder_bytes: int
    read_coders: Callable[[Cursor], list[C]]
    open_stream: Callable[[str, ReadAt, int, int, C], Reader]

    @property
    def head_max(self) -> int:
        """The longest header this format can have: varints at their longest."""
        return 1 + MAX_VARINT_BYTES + self.coder_bytes + 4 * MAX_VARINT_BYTES

    def pack(self, new_size: int, coders: bytes, bodies: Iterable[bytes]) -> bytes:
        """The payload: header (with ``coders``, ``coder_bytes`` long) then the stored streams."""
        stored = list(bodies)
        if len(coders) != self.coder_bytes or len(stored) != len(STREAMS):
            raise AssertionError(f"{self.name}: {len(coders)} coder bytes, {len(stored)} streams")
        head = bytes([self.tag]) + uv(new_size) + coders
        head += b"".join(uv(len(body)) for body in stored[:-1])
        return head + b"".join(stored)

    def header(self, head: bytes) -> Header[C]:
        """Parse the header out of a prefix of the payload (``head_max`` bytes always do)."""
        cur = Cursor(head)
        if cur.byte() != self.tag:
            raise DeltaError(f"not a {self.name} payload (tag)")
        new_size = cur.uv()
        coders = self.read_coders(cur)
        lengths = [cur.uv() for _ in range(len(STREAMS) - 1)]
        return Header(new_size, coders, lengths, cur.pos)

    def apply(
        self,
        old: ReadAt,
        old_size: int,
        payload: ReadAt,
        payload_size: int,
        sink: Sink,
        new_size: int,
    ) -> None:
        """Stream the new image: the five decoders' RAM plus 3 x PIECE, whatever the image size."""
        got_new, coders, lengths, pos = self.header(
            read_exact(payload, 0, min(payload_size, self.head_max), "payload")
        )
        if got_new != new_size:
            raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
        bounds = _stream_bounds(pos, lengths, payload_size, self.name)
        streams = []
        for name, (start, end), coder in zip(STREAMS, bounds, coders, strict=True):
            streams.append(self.open_stream(name, payload, start, end, coder))
        _replay(old, old_size, streams, sink, new_size)
