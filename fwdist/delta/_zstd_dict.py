"""The ``zstd-dict`` encoder: the whole new image as one zstd frame, old as its dictionary.

Good on small images (it beats bsdiff-zstd on orjson, though not
bsdiff-lzma), but the decoder must be able to address the *whole* old image
and everything it has already written: a device does that from
memory-mapped flash (XIP), with the old slot as the dictionary and the
inactive slot, being written sequentially, as the history.
:func:`decode_ram` counts what that decoder holds in RAM (:func:`ram`).

Payload format (``uv`` = unsigned LEB128)::

    tag=0x11 | uv old_size | uv new_size | zstd blocks
"""

from __future__ import annotations

from typing import Final

from fwdist.delta import _zstd
from fwdist.delta._core import PIECE, Cursor, DeltaError, Encoder, ReadAt, Sink, read_exact
from fwdist.delta._pair import Pair
from fwdist.leb128 import encode as uv

TAG: Final = 0x11

_HEAD_MAX: Final = 21  # tag and two varints at their longest


def encode(old: bytes, new: bytes) -> bytes:
    """Whole-file zstd against old as a raw-content dictionary.

    The window covers old + new so every byte of old stays referenceable to
    the end of the new image; the frame is single-segment, so its header is
    just the content size, which the payload carries as a varint instead.
    """
    window_log = max(10, (len(old) + len(new) - 1).bit_length())
    frame = _zstd.compress(
        new, window_log, old, content_size=True, target_length=_zstd.FAST_TARGET_LENGTH
    )
    fhd = frame[0]
    if fhd & 0x3F != 0x20:  # single segment; no checksum, no dict id
        raise AssertionError("zstd produced an unexpected frame header")
    fcs_bytes = (1, 2, 4, 8)[fhd >> 6]
    return bytes([TAG]) + uv(len(old)) + uv(len(new)) + frame[1 + fcs_bytes :]


def _header(head: bytes) -> tuple[int, int, int]:
    """(old_size, new_size, header length)."""
    cur = Cursor(head)
    if cur.byte() != TAG:
        raise DeltaError("not a zstd-dict payload (tag)")
    old_size = cur.uv()
    new_size = cur.uv()
    return old_size, new_size, cur.pos


def ram(new_size: int) -> int:
    """The box's decoder: entropy tables and one block of literals; the window is flash.

    Matches are copied from the old slot (the dictionary) or from the new
    slot's already-written part: one flash read per matched output byte.
    A block holds up to min(128 KiB, new_size) bytes, and its literals are
    decoded into RAM before its sequences run, so this cannot fit 32 KiB for
    any image over ~3 KiB: zstd-dict is left out at such budgets.
    """
    return _zstd.ENTROPY_BYTES + min(_zstd.BLOCK_MAX, new_size) + _zstd.WILDCOPY


def decode_ram(head: bytes) -> int:
    """:func:`ram` for the new_size the header declares."""
    _, new_size, _ = _header(head)
    return ram(new_size)


def fit(pair: Pair, max_ram: int | None) -> bytes | None:
    """The payload, or None without encoding when its decoder cannot fit ``max_ram``."""
    if max_ram is not None and ram(len(pair.new)) > max_ram:
        return None
    return encode(pair.old, pair.new)


def _emit(sink: Sink, data: bytes, budget: list[int]) -> None:
    """Last line of defence: the sink never receives more than new_size bytes."""
    budget[0] -= len(data)
    if budget[0] < 0:
        raise DeltaError("payload produces more than new_size bytes")
    sink(data)


def apply(
    old: ReadAt, old_size: int, payload: ReadAt, payload_size: int, sink: Sink, new_size: int
) -> None:
    """Decode with old as dictionary.

    Here, unlike on a device with XIP, the dictionary must be a bytes object,
    so this reads the whole old image; the zstd window is the new image's size
    (single segment), bounded by the caller's new_size.
    """
    got_old, got_new, start = _header(
        read_exact(payload, 0, min(payload_size, _HEAD_MAX), "payload")
    )
    if got_old != old_size:
        raise DeltaError(f"payload is for an old image of {got_old} bytes, not {old_size}")
    if got_new != new_size:
        raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
    if start == payload_size:
        raise DeltaError("zstd-dict payload has no frame")
    old_bytes = b"".join(
        read_exact(old, off, min(PIECE, old_size - off), "old") for off in range(0, old_size, PIECE)
    )
    header = bytes([_zstd.FHD_SINGLE_FCS8]) + new_size.to_bytes(8, "little")
    stream = _zstd.ZstdStream(
        "zstd-dict", payload, start, payload_size, header, max(1 << 10, new_size), old_bytes
    )
    budget = [new_size]
    for off in range(0, new_size, PIECE):
        _emit(sink, stream.take(min(PIECE, new_size - off)), budget)
    stream.finish()


ENCODER: Final = Encoder("zstd-dict", TAG, encode, apply, decode_ram, fit)
