"""The ``bsdiff-zstd`` encoder: bsdiff's five columns, each a stripped zstd frame.

It wins on large images because address shifts become long runs of identical
small diff bytes.  The decoder is streaming: it holds a few zstd windows and
64 KiB buffers, reads the old image through ``old(offset, n)`` and never
holds either image.

Payload format (``uv`` = unsigned LEB128)::

    tag=0x21 | uv new_size | 3 bytes: window logs - 10, one nibble per stream
    (seek, x | y, diff | extra, 0) | uv length of the first four streams
    | five stripped zstd frames (the last one runs to the end of the payload)
"""

from __future__ import annotations

from typing import Final

from fwdist.delta import _bsdiff, _zstd
from fwdist.delta._core import Cursor, DeltaError, Encoder
from fwdist.delta._pair import Pair, bsdiff_score

TAG: Final = 0x21


def _read_logs(cur: Cursor) -> list[int]:
    """Five window logs, one nibble each; the sixth nibble is reserved (zero)."""
    packed = [cur.byte() for _ in range(3)]
    logs = [10 + ((packed[i // 2] >> (4 * (i % 2))) & 0x0F) for i in range(len(_bsdiff.STREAMS))]
    if packed[2] >> 4:
        raise DeltaError("bsdiff-zstd header has reserved bits set")
    if max(logs) > _bsdiff.MAX_WINDOW_LOG:
        raise DeltaError(f"bsdiff-zstd window log {max(logs)} exceeds {_bsdiff.MAX_WINDOW_LOG}")
    return logs


FORMAT: Final = _bsdiff.ColumnFormat[int]("bsdiff-zstd", TAG, 3, _read_logs, _zstd.open_stream)


def frames(pair: Pair) -> list[tuple[int, bytes]]:
    """(window log, stripped frame) of each column at level 22, made once per pair.

    An empty column is (10, b"").  ``bsdiff-lzma`` weighs these very frames
    against LZMA column by column, so the pair keeps them (:meth:`Pair.memo`):
    level 22 over the columns was encoded twice before, 170 s of an 11 MB pair.
    """

    def make() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        for data, log in zip(pair.columns, _bsdiff.ZSTD_WINDOW_LOGS, strict=True):
            out.append(_zstd.strip_stream_frame(_zstd.compress(data, log)) if data else (10, b""))
        return out

    return pair.memo("zstd column frames", make)


def fit(pair: Pair, max_ram: int | None) -> bytes | None:
    """bsdiff transform (the pair's, shared), five columns, each a stripped zstd frame.

    Five libzstd stream decoders and three 64 KiB pieces need 0.8 MB or more:
    a budget below :data:`_MIN_RAM` gets None without encoding.
    """
    if max_ram is not None and max_ram < _MIN_RAM:
        return None
    window_logs = [log for log, _ in frames(pair)]
    bodies = [body for _, body in frames(pair)]
    nib = [w - 10 for w in window_logs] + [0]
    return FORMAT.pack(
        len(pair.new), bytes(nib[i] | nib[i + 1] << 4 for i in range(0, 6, 2)), bodies
    )


def encode(old: bytes, new: bytes) -> bytes:
    """bsdiff transform, five columns, each a stripped zstd frame."""
    payload = fit(Pair(old, new), None)
    assert payload is not None
    return payload


def decode_ram(head: bytes) -> int:
    """One streaming zstd decoder per non-empty stream, plus three 64 KiB pieces.

    The pieces are: old bytes read, diff bytes taken, output handed to the sink.
    Independent of image size: that is the point of this encoder.
    """
    parsed = FORMAT.header(head)
    # The last stream's length is not in the header; count it as present.
    present = [n > 0 for n in parsed.lengths] + [True]
    return (
        sum(_zstd.window_ram(log) for log, p in zip(parsed.coders, present, strict=True) if p)
        + _bsdiff.BUFFERS_RAM
    )


_MIN_RAM: Final = _zstd.window_ram(10) + _bsdiff.BUFFERS_RAM
"""No bsdiff-zstd payload decodes in less: one stream decoder (the last is always counted)."""

ENCODER: Final = Encoder(
    "bsdiff-zstd", TAG, encode, FORMAT.apply, decode_ram, fit, score=bsdiff_score
)
