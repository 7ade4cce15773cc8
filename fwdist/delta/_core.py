"""What every delta format shares: the error, the I/O callables, varints and stream readers.

An encoder module builds on these and nothing else of its siblings' except the
stream coders (:mod:`._zstd`, :mod:`._lzma`) and, for the bsdiff back ends, the
transform (:mod:`._bsdiff`).  Keeping the reading primitives in one place is
what keeps every format's hostile-input behaviour alike: short reads, long
varints and trailing output all fail here, with one-line :class:`DeltaError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fwdist.delta._pair import Pair

ReadAt = Callable[[int, int], bytes]
"""``read(offset, size)`` returning exactly ``size`` bytes (a flash slot, a staged payload)."""

Sink = Callable[[bytes], None]

PIECE: Final = 64 * 1024
"""Largest piece handed to a sink and largest read from old: one flash-friendly buffer."""

MAX_VARINT_BYTES: Final = 10
_VARINT_LIMIT: Final = 1 << 63

READ_SIZE: Final = 16 * 1024
"""How much of a stored stream is read (and of a decoded one refilled) at a time."""

IO_BUFFER: Final = 256
"""One box-side buffer of the small-RAM decoders: a stream's input, the old bytes, the output.

256 bytes is one NOR flash program page; the Python decoders of those formats
read and write in pieces of at most this size, so the figure is observable.
"""


SAMPLE_SIZE: Final = 1 << 20
"""Largest stretch of a stream the encoders rank their parameters on (see :func:`sample`;
:func:`._lzma.rank` ranks its best two again on the whole stream)."""

_SAMPLE_SLICES: Final = 8


def sample(data: bytes) -> bytes:
    """What parameters are ranked on: all of a short stream, else eight evenly spaced slices.

    Ranking on at most :data:`SAMPLE_SIZE` bytes keeps the cost of choosing
    flat for large images; the slices start at multiples of 16 so that lp/pb
    (position contexts of up to 16 bytes) see the stream's own alignment.
    """
    if len(data) <= SAMPLE_SIZE:
        return data
    step = len(data) // _SAMPLE_SLICES & ~15
    part = SAMPLE_SIZE // _SAMPLE_SLICES
    return b"".join(data[i * step : i * step + part] for i in range(_SAMPLE_SLICES))


class InstructionSet(enum.Enum):
    """The instruction set of a box's code: a delta may undo what branch displacements did."""

    NONE = "none"
    THUMB2 = "thumb2"
    XTENSA = "xtensa"


SCORE_MARGIN: Final = 0.02
"""How close to the best cheap score (as a share of it) a candidate must be to be encoded too.

Scores (:func:`fwdist.delta._bsdiff.proxy_size`) rank candidate transforms
so that only the best is encoded in full; one within 2 % is encoded as
well, since the estimate can misjudge by a few bytes what the full coder makes.
"""


def close(score: int, best: int) -> bool:
    """Whether ``score`` is within :data:`SCORE_MARGIN` of ``best`` (then it is encoded too)."""
    return score <= best * (1 + SCORE_MARGIN)


class DeltaError(ValueError):
    """A payload that is malformed, truncated, oversized or for other images.

    The one exception :func:`fwdist.delta.apply` raises for bad input; its message is one line.
    """


@dataclass(frozen=True)
class Encoder:
    """One row of the encoder table: how to make, apply and size a payload."""

    name: str
    tag: int
    encode: Callable[[bytes, bytes], bytes]
    apply: Callable[[ReadAt, int, ReadAt, int, Sink, int], None]
    decode_ram: Callable[[bytes], int]
    fit: Callable[[Pair, int | None], bytes | None] | None = None
    """The smallest payload this encoder makes whose decoder needs <= max_ram (None: any), or
    None when it cannot fit; it reuses the pair's bsdiff transform.  Rows without it are
    encoded whole and dropped when their decode_ram exceeds the budget."""
    score: Callable[[Pair], int] | None = None
    """A cheap estimate of the transform this row encodes (fewer is better), comparable among
    the rows of one ``family``: :func:`fwdist.delta.encode` encodes only the best-scored row of
    a family (and a close second).  Rows without it are always encoded."""
    family: str = ""
    """The back end this row wraps (its own name if empty): rows of one family differ only
    in the view of the pair they encode, so their scores compare."""


# --------------------------------------------------------------------------
# varints




def zigzag(value: int) -> int:
    """Map signed to unsigned so that small negative seeks stay short too."""
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


class Cursor:
    """Parses a payload header out of a bytes prefix, raising DeltaError on short input."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DeltaError("payload header truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uv(self) -> int:
        value = 0
        for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value >= _VARINT_LIMIT:
                    break
                return value
        raise DeltaError("payload header has an oversized varint")


# --------------------------------------------------------------------------
# reading: exact reads, rebuilt stored streams, decoded streams


def read_exact(read: ReadAt, offset: int, size: int, what: str) -> bytes:
    """``read(offset, size)``, refusing a short answer: a truncated payload or old image."""
    data = read(offset, size)
    if len(data) != size:
        raise DeltaError(f"{what} read at {offset} returned {len(data)} of {size} bytes")
    return data


class Source:
    """File-like view of a rebuilt stream: header bytes, a region of the payload, trailer bytes.

    Stored streams drop the bytes the decoder can rebuild (a zstd frame header,
    an LZMA2 end marker); this puts them back around the stored region.
    """

    def __init__(
        self, header: bytes, payload: ReadAt, start: int, end: int, trailer: bytes = b""
    ) -> None:
        self._header = header
        self._payload = payload
        self._pos = start
        self._end = end
        self._trailer = trailer

    def read(self, size: int = -1) -> bytes:
        if self._header:
            out, self._header = self._header, b""
            return out
        n = self._end - self._pos if size < 0 else min(size, self._end - self._pos)
        if n <= 0:
            out, self._trailer = self._trailer, b""
            return out
        data = read_exact(self._payload, self._pos, n, "payload")
        self._pos += n
        return data


class Reader:
    """Exact reads and varints over one decompressed stream, in bounded memory.

    Subclasses supply ``_pull(size)``: at most ``size`` decoded bytes, ``b""``
    at the end.  Since nothing ever asks for more than it needs, a
    decompression bomb costs time proportional to new_size, never memory.
    """

    name: str

    def __init__(self, name: str) -> None:
        self.name = name
        self._buf = b""
        self._pos = 0

    def _pull(self, size: int) -> bytes:
        """The base class is the empty stream."""
        return b""

    def take(self, size: int) -> bytes:
        """Exactly ``size`` (<= PIECE) bytes, or DeltaError if the stream ends first."""
        have = len(self._buf) - self._pos
        if have >= size:
            out = self._buf[self._pos : self._pos + size]
            self._pos += size
            return out
        parts = [self._buf[self._pos :]]
        self._buf, self._pos = b"", 0
        while have < size:
            chunk = self._pull(size - have)
            if not chunk:
                raise DeltaError(f"{self.name} stream ends early")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def uv(self) -> int:
        buf, pos = self._buf, self._pos
        if pos < len(buf) and buf[pos] < 0x80:  # the usual one-byte varint, read in place
            self._pos = pos + 1
            return buf[pos]
        return self._uv_slow()

    def _uv_slow(self) -> int:
        value = 0
        for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
            if self._pos >= len(self._buf):
                self._buf, self._pos = self._pull(READ_SIZE), 0
                if not self._buf:
                    raise DeltaError(f"{self.name} stream ends early")
            b = self._buf[self._pos]
            self._pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value >= _VARINT_LIMIT:
                    break
                return value
        raise DeltaError(f"{self.name} stream has an oversized varint")

    def finish(self) -> None:
        """Refuse output left over once the image is complete."""
        if self._pos < len(self._buf) or self._pull(1):
            raise DeltaError(f"{self.name} stream has data past the end of the image")
