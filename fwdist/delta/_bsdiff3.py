"""The three-stream bsdiff layout of the small-RAM back ends: control rows, diff, extra.

A box with 32 KiB (or 8 KiB) for its decoder cannot keep five stream decoders
open at once, as :mod:`._bsdiff`'s five columns need: each LZMA decoder alone
holds 5 KiB or more of probabilities.  Here the three control columns become
one stream of rows (seek, x, y varints, one triple after another) -- which
also compresses better than three control columns on every device pair we
measured (hackrf-one 687 against 721 bytes) -- next to the diff and extra
streams.  A back end (:mod:`._bsdiff3_lzma`, :mod:`._bsdiff3_heatshrink`)
only decides how each stream is stored.

The diff stream may be stored zero-run coded (flag bit 0): records of
``uv zeros | uv literals | literal bytes``.  On sparse diffs -- a small fix in
a large image, where bsdiff's diff is a long run of zeros -- it saves what an
LZ coder spends on runs longer than its longest match (LZMA: 273 bytes,
heatshrink: 2^lookahead), e.g. nrf52-ble-conn-sd's diff 322 -> 232 bytes under
LZMA.  On dense diffs it costs (hackrf-one +264), so the encoder keeps
whichever is smaller.

Decoding (see docs/decoders.md): the box reads old and the payload from flash
in :data:`IO_BUFFER` pieces, adds old to diff into an output buffer of the
same size and writes it.  Flash reads: one byte of old per diff byte (so at
most one per output byte) plus each payload byte once.

Payload layout (``uv`` = unsigned LEB128)::

    tag | uv new_size | flags | the three streams' coders (the back end's bytes)
        | uv length of control | uv length of diff | three stored streams
          (extra runs to the end of the payload)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

from fwdist.delta import _bsdiff
from fwdist.delta._core import (
    IO_BUFFER,
    MAX_VARINT_BYTES,
    Cursor,
    DeltaError,
    ReadAt,
    Reader,
    Sink,
    read_exact,
)
from fwdist.delta._pair import Pair
from fwdist.leb128 import encode as uv

STREAMS: Final = ("control", "diff", "extra")

ZERO_RUNS: Final = 0x01
"""Flag: the diff stream is stored as zero-run records."""

_MIN_ZERO_RUN: Final = 4
"""Shorter zero runs stay inside a literal record (measured: 4 beats 8 and 16 on every pair)."""

REPLAY_RAM: Final = 2 * IO_BUFFER + 32
"""The replay's own RAM on the box: old-read and output buffers, positions and run counters."""


# --------------------------------------------------------------------------
# the three raw streams


def _read_uv(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def control_rows(seeks: bytes, xs: bytes, ys: bytes) -> bytes:
    """The three control columns of :func:`._bsdiff.columns` as one stream of (seek, x, y) rows."""
    out = bytearray()
    i = j = k = 0
    while i < len(seeks):
        starts = (i, j, k)
        _, i = _read_uv(seeks, i)
        _, j = _read_uv(xs, j)
        _, k = _read_uv(ys, k)
        out += seeks[starts[0] : i] + xs[starts[1] : j] + ys[starts[2] : k]
    if j != len(xs) or k != len(ys):
        raise AssertionError("control columns of different lengths")
    return bytes(out)


_LONG_ZEROS: Final = re.compile(b"\\x00{%d,}" % _MIN_ZERO_RUN)


def zero_runs(diff: bytes) -> bytes:
    """``diff`` as zero-run records: ``uv zeros | uv n | n bytes``, never a record of nothing.

    The fast path of :func:`zero_runs_bytewise` (a byte loop took 0.1 s per
    400 KB diff): the long zero runs are found by ``re`` in C; a record is the
    zeros before its literals (the leading ones, then each long run) and the
    literals up to the next long run.  A property test holds the two equal.
    """
    n = len(diff)
    pos = zeros = n - len(diff.lstrip(b"\0"))
    out = bytearray()
    for run in _LONG_ZEROS.finditer(diff, pos):
        out += uv(zeros) + uv(run.start() - pos) + diff[pos : run.start()]
        zeros = run.end() - run.start()
        pos = run.end()
    if zeros or pos < n:
        out += uv(zeros) + uv(n - pos) + diff[pos:]
    return bytes(out)


def zero_runs_bytewise(diff: bytes) -> bytes:
    """:func:`zero_runs` one byte at a time: the generic twin its property test compares with."""
    out = bytearray()
    i, n = 0, len(diff)
    while i < n:
        j = i
        while j < n and diff[j] == 0:
            j += 1
        z = diff.find(b"\0" * _MIN_ZERO_RUN, j)  # literals run until the next long zero run
        k = n if z < 0 else z
        out += uv(j - i) + uv(k - j) + diff[j:k]
        i = k
    return bytes(out)


class ZeroRunReader(Reader):
    """The diff stream decoded from zero-run records read from ``inner``: no buffer of its own."""

    def __init__(self, inner: Reader) -> None:
        super().__init__(inner.name)
        self._inner = inner
        self._zeros = 0
        self._literals = 0

    def _pull(self, size: int) -> bytes:
        if not self._zeros and not self._literals:
            self._zeros = self._inner.uv()
            self._literals = self._inner.uv()
            if not self._zeros and not self._literals:
                raise DeltaError(f"{self.name} stream has an empty zero-run record")
        if self._zeros:
            n = min(size, self._zeros)
            self._zeros -= n
            return bytes(n)
        n = min(size, self._literals)
        self._literals -= n
        return self._inner.take(n)

    def finish(self) -> None:
        if self._pos < len(self._buf) or self._zeros or self._literals:
            raise DeltaError(f"{self.name} stream has data past the end of the image")
        self._inner.finish()


def streams(pair: Pair) -> tuple[bytes, bytes, bytes, bytes]:
    """(control rows, diff, diff zero-run coded, extra) of the pair, made once for both."""

    def make() -> tuple[bytes, bytes, bytes, bytes]:
        seeks, xs, ys, diff, extra = pair.columns
        return control_rows(seeks, xs, ys), diff, zero_runs(diff), extra

    return pair.memo("bsdiff3 streams", make)


# --------------------------------------------------------------------------
# one layout per back end

C = TypeVar("C")
"""What a back end's header says about one stream."""


class Header(NamedTuple, Generic[C]):
    """A parsed three-stream header."""

    new_size: int
    flags: int
    coders: list[C]
    lengths: list[int]
    """Stored bytes of control and diff; extra runs to the end of the payload."""
    size: int


@dataclass(frozen=True)
class Layout(Generic[C]):
    """A three-stream back end: its tag, coders, how it opens a stream and sizes its decoder.

    ``read_coders`` reads (and checks) the coders from a cursor placed after the
    flags, ``absent`` among them for a stream that is not there;
    ``open_stream(name, payload, start, end, coder)`` returns the reader of one
    present stored stream; ``stream_ram(coder)`` is a present stream's
    box-side RAM, input buffer included.
    """

    name: str
    tag: int
    coder_max: int
    absent: C
    read_coders: Callable[[Cursor], list[C]]
    open_stream: Callable[[str, ReadAt, int, int, C], Reader]
    stream_ram: Callable[[C], int]

    @property
    def head_max(self) -> int:
        """The longest header this layout can have: varints at their longest."""
        return 2 + MAX_VARINT_BYTES + self.coder_max + 2 * MAX_VARINT_BYTES

    def pack(self, new_size: int, flags: int, coders: bytes, bodies: list[bytes]) -> bytes:
        if len(bodies) != len(STREAMS):
            raise AssertionError(f"{self.name}: {len(bodies)} streams")
        head = bytes([self.tag]) + uv(new_size) + bytes([flags]) + coders
        return head + uv(len(bodies[0])) + uv(len(bodies[1])) + b"".join(bodies)

    def header(self, head: bytes) -> Header[C]:
        """Parse the header out of a prefix of the payload (``head_max`` bytes always do)."""
        cur = Cursor(head)
        if cur.byte() != self.tag:
            raise DeltaError(f"not a {self.name} payload (tag)")
        new_size = cur.uv()
        flags = cur.byte()
        if flags & ~ZERO_RUNS:
            raise DeltaError(f"{self.name} header has reserved flags {flags:#04x}")
        coders = self.read_coders(cur)
        lengths = [cur.uv(), cur.uv()]
        return Header(new_size, flags, coders, lengths, cur.pos)

    def decode_ram(self, head: bytes) -> int:
        """Every present stream's decoder (all three are open at once) plus the replay's buffers."""
        coders = self.header(head).coders
        return sum(self.stream_ram(c) for c in coders if c != self.absent) + REPLAY_RAM

    def _open(self, name: str, payload: ReadAt, start: int, end: int, coder: C) -> Reader:
        """The stream's reader; its presence must agree with its coder."""
        if coder == self.absent:
            if start != end:
                raise DeltaError(f"{name} stream declared absent but has {end - start} bytes")
            return Reader(name)
        if start == end:
            raise DeltaError(f"{name} stream has a coder but no bytes")
        return self.open_stream(name, payload, start, end, coder)

    def apply(
        self,
        old: ReadAt,
        old_size: int,
        payload: ReadAt,
        payload_size: int,
        sink: Sink,
        new_size: int,
    ) -> None:
        """Stream the new image in pieces of at most :data:`IO_BUFFER` bytes."""
        got_new, flags, coders, lengths, pos = self.header(
            read_exact(payload, 0, min(payload_size, self.head_max), "payload")
        )
        if got_new != new_size:
            raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
        bounds = _bsdiff._stream_bounds(pos, lengths, payload_size, self.name)
        control, diff, extra = (
            self._open(name, payload, start, end, coder)
            for name, (start, end), coder in zip(STREAMS, bounds, coders, strict=True)
        )
        if flags & ZERO_RUNS:
            diff = ZeroRunReader(diff)
        _bsdiff._replay(
            old, old_size, [control, control, control, diff, extra], sink, new_size, IO_BUFFER
        )
