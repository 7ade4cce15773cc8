"""Byte-level deltas between firmware images: encode, choose the smallest, apply.

Between releases of compiled code nearly every byte window changes (shifted
addresses touch everything), so content-defined chunking reuses almost nothing
and the bytes over the air are decided here.  Three encoders are offered and
:func:`encode` keeps whichever produces fewer bytes for the pair at hand:

``zstd-dict``
    The whole new image as one zstd frame, compressed with the old image as a
    raw-content dictionary.  Good on small images (it beats bsdiff-zstd on
    orjson, though not bsdiff-lzma), but the decoder must be able to address
    the *whole* old image and everything it has already written: a device
    does that from memory-mapped flash (XIP), with
    the old slot as the dictionary and the inactive slot, being written
    sequentially, as the history.  :func:`decode_ram` reports that window
    (old + new) honestly.

``bsdiff-zstd``
    bsdiff's transform (control triples, a byte-wise diff against old, and
    extra bytes), re-encoded as five column streams, each its own zstd frame
    with a small, capped window.  It wins on large images because address
    shifts become long runs of identical small diff bytes.  The decoder is
    streaming: it holds a few zstd windows and 64 KiB buffers, reads the old
    image through ``old(offset, n)`` and never holds either image.

``bsdiff-lzma``
    The same transform and columns, each stream stored whichever way is
    smallest: raw LZMA2 at preset 9e (lc/lp/pb chosen per stream -- lp2/pb2
    suits the diff of 4-byte-aligned code) or zstd as above.  LZMA's range
    coder beats zstd's entropy stage on bsdiff streams (-5 % to -11 % on
    every real pair we have, and it beats Debian's bsdiff on the sample
    firmware, which the zstd back ends do not).  The dictionary is capped at
    :data:`LZMA_DICT_LOG` whatever the image size, so this streaming decoder
    needs less RAM than bsdiff-zstd's (0.4-0.6 MB against 0.9-1.6 MB).

Everything here is sans-I/O: images come in as bytes (encode) or as
``ReadAt`` callables (apply), and the new image leaves through ``sink`` in
pieces of at most :data:`PIECE` bytes.  Payloads are untrusted until the
image hash checks, so :func:`apply` validates every field and raises
:class:`DeltaError` -- and only that -- on anything malformed.

Payload formats (``uv`` = unsigned LEB128, ``sv`` = zigzag LEB128)::

    zstd-dict   tag=0x11 | uv old_size | uv new_size | zstd blocks
    bsdiff-zstd tag=0x21 | uv new_size | 3 bytes: window logs - 10, one nibble
                per stream (seek, x | y, diff | extra, 0) | uv length of the
                first four streams | five stripped zstd frames (the last one
                runs to the end of the payload)
    bsdiff-lzma tag=0x31 | uv new_size | 5 x 2 bytes: (method, log) per stream
                | uv length of the first four streams | five stored streams
                (the last one runs to the end of the payload); (method, log) is
                (0, 0) for no stream, (props, dictionary log) for raw LZMA2
                with that LZMA properties byte (lc + lp <= 4) and a 2^log
                dictionary, (0xFF, window log) for a stripped zstd frame

The first byte of every payload is the format/version tag, so formats can
evolve.  zstd frames are stored *stripped*: no magic number, no frame header,
no checksum -- only the blocks.  The decoder rebuilds the two-to-nine header
bytes from the fields above, which saves every byte the header would repeat
(fwdist checks the image's SHA-256 anyway).  Raw LZMA2 streams are stored
without their one-byte end marker, for the same reason; the decoder walks
their chunk headers first, so a stream must end exactly where its length says.
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Final, cast

import bsdiff4.core
import zstandard as zstd

__all__ = [
    "ENCODERS",
    "PIECE",
    "Delta",
    "DeltaError",
    "Encoder",
    "ReadAt",
    "apply",
    "decode_ram",
    "encode",
    "encode_with",
]

ReadAt = Callable[[int, int], bytes]
"""``read(offset, size)`` returning exactly ``size`` bytes (a flash slot, a staged payload)."""

Sink = Callable[[bytes], None]

PIECE: Final = 64 * 1024
"""Largest piece handed to a sink and largest read from old: one flash-friendly buffer."""

LEVEL: Final = 22
"""zstd level for every stream: encode once on a build machine, send to many boxes."""

MAX_WINDOW_LOG: Final = 20
"""Largest window a bsdiff-zstd stream may declare; the decoder refuses bigger ones."""

# Window logs the bsdiff-zstd encoder asks for, measured on real .so pairs at
# level 22 (bytes relative to window_log 20):
#   control columns at 14: no cost (the columns are small and local);
#   diff and extra at 17 (128 KiB): orjson +5, pydantic-core +515,
#   zstandard +5,485 (+0.4 %) -- in exchange for ~0.5 MiB less RAM per stream.
_CONTROL_WINDOW_LOG: Final = 14
_DATA_WINDOW_LOG: Final = 17

_TAG_ZSTD_DICT: Final = 0x11
_TAG_BSDIFF_ZSTD: Final = 0x21
_TAG_BSDIFF_LZMA: Final = 0x31

LZMA_DICT_LOG: Final = 16
"""Largest LZMA2 dictionary (64 KiB) the bsdiff-lzma encoder uses: bounds decoder RAM.

Measured on whole bsdiff-lzma payloads, bytes against a 4 MiB cap (which
holds every stream but zstandard's diff): sample firmware +6 (10,238),
orjson +33 (41,838), pydantic-core +964 (256,565, +0.4 %), zstandard
+4,083 (1,187,682, +0.3 %).  A 128 KiB cap saves 542 of those on
zstandard and 652 on pydantic-core, 256 KiB 3,494 and 750 -- for 64 or
192 KiB more RAM per data stream, which a lockbox MCU does not have to spare.
"""

MAX_LZMA_DICT_LOG: Final = 20
"""Largest dictionary a bsdiff-lzma stream may declare; the decoder refuses bigger ones."""

_LZMA_MIN_DICT_LOG: Final = 12  # liblzma's smallest dictionary, 4 KiB
_ZSTD_CODER: Final = 0xFF

# (lc, lp, pb) the bsdiff-lzma encoder tries on every stream.  Each was the
# best on some stream of our pairs: 0/2/2 on the sample firmware's and
# zstandard's diff (4-byte-aligned code), 0/0/0 on orjson's diff, 3/0/0 on
# pydantic-core's diff and orjson's extra, 1/0/0 on most control columns.  On
# the sample firmware and orjson a grid of all 36 legal triples (lp, pb <= 2)
# found nothing better than the best of these four; four passes cost four
# LZMA encodes, which a build machine can afford once per release.
_LZMA_VARIANTS: Final = ((0, 0, 0), (1, 0, 0), (3, 0, 0), (0, 2, 2))

# LzmaDec's CLzmaDec plus Lzma2Dec's few fields, without probabilities and
# dictionary, on a 32-bit MCU: about 100 bytes, rounded up.
_LZMA_STATE_BYTES: Final = 128

# libzstd's decoder state (ZSTD_estimateDCtxSize() for libzstd 1.5.x, 64-bit).
# A constant, not a call, so decode_ram is the same on every machine.
_ZSTD_DCTX_BYTES: Final = 95_968
_ZSTD_BLOCK_MAX: Final = 128 * 1024
_WILDCOPY_OVERLENGTH: Final = 32
_MAX_VARINT_BYTES: Final = 10
_VARINT_LIMIT: Final = 1 << 63
_READ_SIZE: Final = 16 * 1024

_FHD_STREAM: Final = 0x00  # no content size, not single-segment, no checksum, no dict id
_FHD_SINGLE_FCS8: Final = 0xE0  # single segment, 8-byte content size


class DeltaError(ValueError):
    """A payload that is malformed, truncated, oversized or for other images.

    The one exception :func:`apply` raises for bad input; its message is one line.
    """


@dataclass(frozen=True)
class Delta:
    """A payload plus the name of the encoder (a key of :data:`ENCODERS`) that made it."""

    encoder: str
    data: bytes


@dataclass(frozen=True)
class Encoder:
    """One row of the encoder table: how to make, apply and size a payload."""

    name: str
    tag: int
    encode: Callable[[bytes, bytes], bytes]
    apply: Callable[[ReadAt, int, ReadAt, int, Sink, int], None]
    decode_ram: Callable[[bytes], int]


# --------------------------------------------------------------------------
# varints


def _uv(value: int) -> bytes:
    """Unsigned LEB128: small numbers (most lengths and seeks) take one or two bytes."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _zigzag(value: int) -> int:
    """Map signed to unsigned so that small negative seeks stay short too."""
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


class _Cursor:
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
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value >= _VARINT_LIMIT:
                    break
                return value
        raise DeltaError("payload header has an oversized varint")


# --------------------------------------------------------------------------
# zstd frames, stored stripped


def _compress(
    data: bytes, window_log: int, dict_data: bytes = b"", content_size: bool = False
) -> bytes:
    """One zstd frame at level 22, magicless, without checksum or dictionary id.

    Parameters come from ``from_level`` with the real source and dictionary
    sizes so that tiny inputs get tiny tables (zstd also shrinks the window to
    the input, which is why callers read the window back from the header).
    """
    params = zstd.ZstdCompressionParameters.from_level(
        LEVEL,
        source_size=len(data),
        dict_size=len(dict_data),
        window_log=window_log,
        strategy=zstd.STRATEGY_BTULTRA2,
        target_length=4096,
        write_checksum=False,
        write_content_size=content_size,
        write_dict_id=False,
        format=zstd.FORMAT_ZSTD1_MAGICLESS,
    )
    zdict = (
        zstd.ZstdCompressionDict(dict_data, dict_type=zstd.DICT_TYPE_RAWCONTENT)
        if dict_data
        else None
    )
    return zstd.ZstdCompressor(compression_params=params, dict_data=zdict).compress(data)


def _strip_stream_frame(frame: bytes) -> tuple[int, bytes]:
    """Split a streaming frame into (window log, blocks); the decoder rebuilds the header."""
    if len(frame) < 5 or frame[0] != _FHD_STREAM or frame[1] & 0x07:
        raise AssertionError("zstd produced an unexpected frame header")
    return (frame[1] >> 3) + 10, frame[2:]


def _window_ram(window_log: int) -> int:
    """RAM of one streaming zstd decoder, as ZSTD_estimateDStreamSize counts it.

    Decoder state, one input block, and the window plus a block of slack.
    """
    window = 1 << window_log
    block = min(window, _ZSTD_BLOCK_MAX)
    return _ZSTD_DCTX_BYTES + block + window + block + 2 * _WILDCOPY_OVERLENGTH


def _read(read: ReadAt, offset: int, size: int, what: str) -> bytes:
    data = read(offset, size)
    if len(data) != size:
        raise DeltaError(f"{what} read at {offset} returned {len(data)} of {size} bytes")
    return data


def _check_blocks(payload: ReadAt, start: int, end: int, block_max: int) -> None:
    """Walk the zstd block headers of a stripped frame: it must end exactly at ``end``.

    Reads three bytes per block, so a frame is validated before a byte of it
    is decoded, and trailing junk after the last block is refused.
    """
    pos = start
    while True:
        if pos + 3 > end:
            raise DeltaError("zstd frame truncated")
        header = int.from_bytes(_read(payload, pos, 3, "payload"), "little")
        pos += 3
        kind = (header >> 1) & 3
        size = header >> 3
        if kind == 3 or size > block_max:
            raise DeltaError("zstd block header invalid")
        pos += 1 if kind == 1 else size
        if pos > end:
            raise DeltaError("zstd frame truncated")
        if header & 1:
            break
    if pos != end:
        raise DeltaError("zstd frame followed by trailing bytes")


class _Source:
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
        data = _read(self._payload, self._pos, n, "payload")
        self._pos += n
        return data


class _Reader:
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
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            if self._pos >= len(self._buf):
                self._buf, self._pos = self._pull(_READ_SIZE), 0
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


class _Stream(_Reader):
    """Reader of one stripped zstd frame (``stream_reader.read(n)`` yields at most ``n``)."""

    def __init__(
        self,
        name: str,
        payload: ReadAt,
        start: int,
        end: int,
        header: bytes,
        max_window: int,
        dict_data: bytes = b"",
    ) -> None:
        super().__init__(name)
        self._reader: zstd.ZstdDecompressionReader | None = None
        if start == end:
            return  # an empty stream is stored as no frame at all
        _check_blocks(payload, start, end, min(max_window, _ZSTD_BLOCK_MAX))
        zdict = (
            zstd.ZstdCompressionDict(dict_data, dict_type=zstd.DICT_TYPE_RAWCONTENT)
            if dict_data
            else None
        )
        try:
            decompressor = zstd.ZstdDecompressor(
                dict_data=zdict, max_window_size=max_window, format=zstd.FORMAT_ZSTD1_MAGICLESS
            )
            self._reader = decompressor.stream_reader(
                cast("IO[bytes]", _Source(header, payload, start, end)), read_size=_READ_SIZE
            )
        except zstd.ZstdError as exc:
            raise DeltaError(f"{name} stream: {exc}") from exc

    def _pull(self, size: int) -> bytes:
        if self._reader is None:
            return b""
        try:
            return self._reader.read(size)
        except zstd.ZstdError as exc:
            raise DeltaError(f"{self.name} stream corrupt: {exc}") from exc


# --------------------------------------------------------------------------
# raw LZMA2 streams, stored without their end marker


def _lzma_filters(props: int, dict_log: int) -> list[dict[str, int]]:
    lc, lp, pb = _lzma_lc_lp_pb(props)
    return [
        {
            "id": lzma.FILTER_LZMA2,
            "preset": 9 | lzma.PRESET_EXTREME,
            "dict_size": 1 << dict_log,
            "lc": lc,
            "lp": lp,
            "pb": pb,
        }
    ]


def _lzma_props(lc: int, lp: int, pb: int) -> int:
    """The standard LZMA properties byte, as in an .lzma header or an LZMA2 chunk."""
    return (pb * 5 + lp) * 9 + lc


def _lzma_lc_lp_pb(props: int) -> tuple[int, int, int]:
    return props % 9, props // 9 % 5, props // 45


def _lzma_compress(data: bytes, props: int, dict_log: int) -> bytes:
    """Raw LZMA2 at preset 9e, minus the one-byte end marker the decoder puts back."""
    raw = lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(props, dict_log))
    if not raw or raw[-1] != 0x00:
        raise AssertionError("liblzma produced an LZMA2 stream without an end marker")
    return raw[:-1]


def _lzma_ram(props: int, dict_log: int) -> int:
    """RAM of one streaming LZMA2 decoder the way LzmaDec/Lzma2Dec (LZMA SDK) lays it out.

    The dictionary (which is also the output history), 16-bit probabilities --
    1846 fixed plus 0x300 per literal coder, and there are 2^(lc+lp) literal
    coders -- the decoder's own state, and one input buffer.
    """
    lc, lp, _ = _lzma_lc_lp_pb(props)
    probs = (1846 + (0x300 << (lc + lp))) * 2
    return (1 << dict_log) + probs + _LZMA_STATE_BYTES + _READ_SIZE


def _check_lzma2_chunks(payload: ReadAt, start: int, end: int, props: int) -> None:
    """Walk the LZMA2 chunk headers of a stored stream before decoding a byte of it.

    The stream must end exactly at ``end`` (its end marker is not stored), and
    every chunk that sets properties must set the ones the payload header
    declared: liblzma would accept any, but a device decoder sizes its
    probability table from the header, and :func:`decode_ram` reports that size.
    """
    pos = start
    while pos < end:
        control = _read(payload, pos, 1, "payload")[0]
        if control in (1, 2):  # stored chunk (1: with dictionary reset)
            head = 3
        elif control >= 0x80:  # LZMA chunk; bits 5-6 say what it resets
            head = 6 if control >= 0xC0 else 5
        else:  # 0x00 would be the end marker, which is not stored; 0x03-0x7F are invalid
            raise DeltaError(f"LZMA2 chunk control byte {control:#04x} invalid")
        if pos + head > end:
            raise DeltaError("LZMA2 stream truncated")
        fields = _read(payload, pos + 1, head - 1, "payload")
        if control < 0x80:
            size = int.from_bytes(fields[0:2], "big") + 1
        else:
            size = int.from_bytes(fields[2:4], "big") + 1
            if head == 6 and fields[4] != props:
                raise DeltaError(
                    f"LZMA2 chunk properties {fields[4]:#04x} differ from the header's {props:#04x}"
                )
        pos += head + size
    if pos != end:
        raise DeltaError("LZMA2 stream truncated")


class _LzmaStream(_Reader):
    """Reader of one stored raw LZMA2 stream: liblzma, fed 16 KiB at a time.

    ``decompress(data, max_length)`` keeps unconsumed input inside the
    decompressor and never returns more than asked for, so neither the stream
    nor its output is ever held whole.  Every liblzma error becomes DeltaError.
    """

    def __init__(
        self, name: str, payload: ReadAt, start: int, end: int, props: int, dict_log: int
    ) -> None:
        super().__init__(name)
        _check_lzma2_chunks(payload, start, end, props)
        self._source = _Source(b"", payload, start, end, trailer=b"\x00")
        try:
            self._lzma = lzma.LZMADecompressor(
                format=lzma.FORMAT_RAW, filters=_lzma_filters(props, dict_log)
            )
        except (lzma.LZMAError, ValueError) as exc:
            raise DeltaError(f"{name} stream: {exc}") from exc

    def _pull(self, size: int) -> bytes:
        while not self._lzma.eof:
            data = b""
            if self._lzma.needs_input:
                data = self._source.read(_READ_SIZE)
                if not data:
                    return b""  # input exhausted before the end marker: "ends early"
            try:
                out = self._lzma.decompress(data, max_length=size)
            except lzma.LZMAError as exc:
                raise DeltaError(f"{self.name} stream corrupt: {exc}") from exc
            if out:
                return out
        return b""


def _emit(sink: Sink, data: bytes, budget: list[int]) -> None:
    """Last line of defence: the sink never receives more than new_size bytes."""
    budget[0] -= len(data)
    if budget[0] < 0:
        raise DeltaError("payload produces more than new_size bytes")
    sink(data)


# --------------------------------------------------------------------------
# zstd-dict


def _zstd_dict_encode(old: bytes, new: bytes) -> bytes:
    """Whole-file zstd against old as a raw-content dictionary.

    The window covers old + new so every byte of old stays referenceable to
    the end of the new image; the frame is single-segment, so its header is
    just the content size, which the payload carries as a varint instead.
    """
    window_log = max(10, (len(old) + len(new) - 1).bit_length())
    frame = _compress(new, window_log, old, content_size=True)
    fhd = frame[0]
    if fhd & 0x3F != 0x20:  # single segment; no checksum, no dict id
        raise AssertionError("zstd produced an unexpected frame header")
    fcs_bytes = (1, 2, 4, 8)[fhd >> 6]
    return bytes([_TAG_ZSTD_DICT]) + _uv(len(old)) + _uv(len(new)) + frame[1 + fcs_bytes :]


def _zstd_dict_header(head: bytes) -> tuple[int, int, int]:
    cur = _Cursor(head)
    if cur.byte() != _TAG_ZSTD_DICT:
        raise DeltaError("not a zstd-dict payload (tag)")
    old_size = cur.uv()
    new_size = cur.uv()
    return old_size, new_size, cur.pos


def _zstd_dict_ram(head: bytes) -> int:
    """Window old + new (addressed in place, from XIP flash on a device) plus decoder state."""
    old_size, new_size, _ = _zstd_dict_header(head)
    return old_size + new_size + _ZSTD_DCTX_BYTES


def _zstd_dict_apply(
    old: ReadAt, old_size: int, payload: ReadAt, payload_size: int, sink: Sink, new_size: int
) -> None:
    """Decode with old as dictionary.

    Here, unlike on a device with XIP, the dictionary must be a bytes object,
    so this reads the whole old image; the zstd window is the new image's size
    (single segment), bounded by the caller's new_size.
    """
    got_old, got_new, start = _zstd_dict_header(_read(payload, 0, min(payload_size, 21), "payload"))
    if got_old != old_size:
        raise DeltaError(f"payload is for an old image of {got_old} bytes, not {old_size}")
    if got_new != new_size:
        raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
    if start == payload_size:
        raise DeltaError("zstd-dict payload has no frame")
    old_bytes = b"".join(
        _read(old, off, min(PIECE, old_size - off), "old") for off in range(0, old_size, PIECE)
    )
    header = bytes([_FHD_SINGLE_FCS8]) + new_size.to_bytes(8, "little")
    stream = _Stream(
        "zstd-dict", payload, start, payload_size, header, max(1 << 10, new_size), old_bytes
    )
    budget = [new_size]
    for off in range(0, new_size, PIECE):
        _emit(sink, stream.take(min(PIECE, new_size - off)), budget)
    stream.finish()


# --------------------------------------------------------------------------
# bsdiff: the transform and the decoding loop both back ends share

_STREAMS: Final = ("seek", "x", "y", "diff", "extra")


def _bsdiff_triples(old: bytes, new: bytes) -> tuple[list[tuple[int, int, int]], bytes, bytes]:
    """bsdiff's (x, y, z) triples, reordered as (seek, x, y) with the seek *before* the copy.

    Seek-first makes a trailing seek unnecessary and lets zero-length triples
    fold into the next seek, so every triple produces >= 1 byte: the decoder
    can then bound the number of triples by new_size.
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


def _bsdiff_columns(old: bytes, new: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """The five raw streams (seek, x, y, diff, extra), before compression.

    Columns compress better than interleaved triples (each column has its own
    statistics: measured -4 % control bytes against one columnar frame, -6 %
    against rows).  The seek column stores ``seek - previous y``: an insertion
    of y bytes then shows up as 0, the displacement change it really is.
    """
    triples, diff, extra = _bsdiff_triples(old, new)
    seeks = bytearray()
    xs = bytearray()
    ys = bytearray()
    prev_y = 0
    for seek, x, y in triples:
        seeks += _uv(_zigzag(seek - prev_y))
        xs += _uv(x)
        ys += _uv(y)
        prev_y = y
    return bytes(seeks), bytes(xs), bytes(ys), diff, extra


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


def _bsdiff_run(
    old: ReadAt, old_size: int, streams: list[_Reader], sink: Sink, new_size: int
) -> None:
    """Replay the control triples: O(3 x PIECE) memory on top of the stream decoders."""
    seeks, xs, ys, diff, extra = streams
    seek_uv, x_uv, y_uv, diff_take, extra_take = seeks.uv, xs.uv, ys.uv, diff.take, extra.take
    old_pos = 0
    new_pos = 0
    prev_y = 0
    while new_pos < new_size:
        old_pos += _unzigzag(seek_uv()) + prev_y
        x = x_uv()
        y = y_uv()
        if not 0 <= old_pos <= old_size:
            raise DeltaError(f"seek to {old_pos} outside the old image")
        if x + y == 0 or new_pos + x + y > new_size:
            raise DeltaError(f"control ({x}, {y}) at {new_pos} outside the new image")
        if old_pos + x > old_size:
            raise DeltaError(f"diff of {x} at {old_pos} runs past the old image")
        # the checks above keep every piece within new_size: _emit's budget is implied here
        end = old_pos + x
        while old_pos < end:
            n = end - old_pos if end - old_pos < PIECE else PIECE
            sink(_add(_read(old, old_pos, n, "old"), diff_take(n)))
            old_pos += n
        left = y
        while left:
            n = left if left < PIECE else PIECE
            sink(extra_take(n))
            left -= n
        new_pos += x + y
        prev_y = y
    for stream in streams:
        stream.finish()


# --------------------------------------------------------------------------
# bsdiff-zstd


def _bsdiff_zstd_encode(old: bytes, new: bytes) -> bytes:
    """bsdiff transform, five columns, each a stripped zstd frame."""
    raw_streams = _bsdiff_columns(old, new)
    logs = (_CONTROL_WINDOW_LOG,) * 3 + (_DATA_WINDOW_LOG,) * 2
    window_logs: list[int] = []
    bodies: list[bytes] = []
    for data, log in zip(raw_streams, logs, strict=True):
        if not data:
            window_logs.append(10)
            bodies.append(b"")
            continue
        got_log, body = _strip_stream_frame(_compress(data, log))
        window_logs.append(got_log)
        bodies.append(body)
    nib = [w - 10 for w in window_logs] + [0]
    head = bytes([_TAG_BSDIFF_ZSTD]) + _uv(len(new))
    head += bytes(nib[i] | nib[i + 1] << 4 for i in range(0, 6, 2))
    head += b"".join(_uv(len(b)) for b in bodies[:-1])
    return head + b"".join(bodies)


def _bsdiff_zstd_header(head: bytes) -> tuple[int, list[int], list[int], int]:
    """(new_size, window logs, stream lengths of the first four, header length)."""
    cur = _Cursor(head)
    if cur.byte() != _TAG_BSDIFF_ZSTD:
        raise DeltaError("not a bsdiff-zstd payload (tag)")
    new_size = cur.uv()
    packed = [cur.byte() for _ in range(3)]
    logs = [10 + ((packed[i // 2] >> (4 * (i % 2))) & 0x0F) for i in range(5)]
    if packed[2] >> 4:
        raise DeltaError("bsdiff-zstd header has reserved bits set")
    if max(logs) > MAX_WINDOW_LOG:
        raise DeltaError(f"bsdiff-zstd window log {max(logs)} exceeds {MAX_WINDOW_LOG}")
    lengths = [cur.uv() for _ in range(4)]
    return new_size, logs, lengths, cur.pos


_BSDIFF_HEAD_MAX: Final = 1 + _MAX_VARINT_BYTES + 3 + 4 * _MAX_VARINT_BYTES


def _bsdiff_zstd_ram(head: bytes) -> int:
    """One streaming zstd decoder per non-empty stream, plus three 64 KiB pieces.

    The pieces are: old bytes read, diff bytes taken, output handed to the sink.
    Independent of image size: that is the point of this encoder.
    """
    _, logs, lengths, _ = _bsdiff_zstd_header(head)
    # The last stream's length is not in the header; count it as present.
    present = [n > 0 for n in lengths] + [True]
    return sum(_window_ram(log) for log, p in zip(logs, present, strict=True) if p) + 3 * PIECE


def _zstd_stream(name: str, payload: ReadAt, start: int, end: int, log: int) -> _Stream:
    """A stripped zstd frame with a ``1 << log`` window, its frame header rebuilt."""
    return _Stream(name, payload, start, end, bytes([_FHD_STREAM, (log - 10) << 3]), 1 << log)


def _bsdiff_zstd_apply(
    old: ReadAt, old_size: int, payload: ReadAt, payload_size: int, sink: Sink, new_size: int
) -> None:
    """Stream the new image: O(windows + 3 x PIECE) memory, whatever the image size."""
    got_new, logs, lengths, pos = _bsdiff_zstd_header(
        _read(payload, 0, min(payload_size, _BSDIFF_HEAD_MAX), "payload")
    )
    if got_new != new_size:
        raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
    bounds = _stream_bounds(pos, lengths, payload_size, "bsdiff-zstd")
    streams: list[_Reader] = [
        _zstd_stream(name, payload, start, end, log)
        for name, (start, end), log in zip(_STREAMS, bounds, logs, strict=True)
    ]
    _bsdiff_run(old, old_size, streams, sink, new_size)


# --------------------------------------------------------------------------
# bsdiff-lzma

_Coder = tuple[int, int]
"""How one bsdiff-lzma stream is stored: (method, log), two header bytes.

``(0, 0)`` no stream; ``(props, log)`` with props < 225 the LZMA properties
byte and a ``1 << log`` dictionary; ``(0xFF, log)`` a stripped zstd frame
with a ``1 << log`` window.
"""

_EMPTY: Final[_Coder] = (0, 0)


def _smallest_coding(data: bytes, zstd_log: int) -> tuple[_Coder, bytes]:
    """Try zstd and every LZMA variant on one stream; keep the fewest bytes (then least RAM).

    The LZMA dictionary is the stream's size rounded up to a power of two,
    capped at :data:`LZMA_DICT_LOG`: a small control column gets a small
    dictionary, so the decoder's RAM follows what the payload needs.
    """
    if not data:
        return _EMPTY, b""
    got_log, body = _strip_stream_frame(_compress(data, zstd_log))
    options = [(len(body), _window_ram(got_log), (_ZSTD_CODER, got_log), body)]
    dict_log = min(LZMA_DICT_LOG, max(_LZMA_MIN_DICT_LOG, (len(data) - 1).bit_length()))
    for lc, lp, pb in _LZMA_VARIANTS:
        props = _lzma_props(lc, lp, pb)
        body = _lzma_compress(data, props, dict_log)
        options.append((len(body), _lzma_ram(props, dict_log), (props, dict_log), body))
    _, _, coder, body = min(options, key=lambda o: o[:2])
    return coder, body


def _bsdiff_lzma_encode(old: bytes, new: bytes) -> bytes:
    """bsdiff transform, five columns, each stored the smallest way found."""
    logs = (_CONTROL_WINDOW_LOG,) * 3 + (_DATA_WINDOW_LOG,) * 2
    coded = [
        _smallest_coding(data, log)
        for data, log in zip(_bsdiff_columns(old, new), logs, strict=True)
    ]
    head = bytes([_TAG_BSDIFF_LZMA]) + _uv(len(new))
    head += bytes(b for coder, _ in coded for b in coder)
    head += b"".join(_uv(len(body)) for _, body in coded[:-1])
    return head + b"".join(body for _, body in coded)


def _check_coder(name: str, coder: _Coder) -> None:
    method, log = coder
    if coder == _EMPTY:
        return
    if method == _ZSTD_CODER:
        if not 10 <= log <= MAX_WINDOW_LOG:
            raise DeltaError(f"bsdiff-lzma {name} stream: zstd window log {log} not in 10..20")
        return
    if method >= 225:
        raise DeltaError(f"bsdiff-lzma {name} stream: coder {method:#04x} unknown")
    lc, lp, _ = _lzma_lc_lp_pb(method)
    if lc + lp > 4:
        raise DeltaError(f"bsdiff-lzma {name} stream: lc + lp = {lc + lp} exceeds LZMA2's 4")
    if not _LZMA_MIN_DICT_LOG <= log <= MAX_LZMA_DICT_LOG:
        raise DeltaError(
            f"bsdiff-lzma {name} stream: dictionary log {log} not in "
            f"{_LZMA_MIN_DICT_LOG}..{MAX_LZMA_DICT_LOG}"
        )


def _bsdiff_lzma_header(head: bytes) -> tuple[int, list[_Coder], list[int], int]:
    """(new_size, the five coders, stream lengths of the first four, header length)."""
    cur = _Cursor(head)
    if cur.byte() != _TAG_BSDIFF_LZMA:
        raise DeltaError("not a bsdiff-lzma payload (tag)")
    new_size = cur.uv()
    coders: list[_Coder] = []
    for name in _STREAMS:
        coder = (cur.byte(), cur.byte())
        _check_coder(name, coder)
        coders.append(coder)
    lengths = [cur.uv() for _ in range(4)]
    return new_size, coders, lengths, cur.pos


_BSDIFF_LZMA_HEAD_MAX: Final = 1 + _MAX_VARINT_BYTES + 2 * 5 + 4 * _MAX_VARINT_BYTES


def _coder_ram(coder: _Coder) -> int:
    method, log = coder
    if coder == _EMPTY:
        return 0
    if method == _ZSTD_CODER:
        return _window_ram(log)
    return _lzma_ram(method, log)


def _bsdiff_lzma_ram(head: bytes) -> int:
    """Every present stream's decoder (all five are open at once), plus three 64 KiB pieces.

    The header names every stream's coder and dictionary, so this is exact
    for what the payload declares -- and the decoder refuses a stream that
    would need more (bigger dictionary, other LZMA properties).
    """
    _, coders, _, _ = _bsdiff_lzma_header(head)
    return sum(_coder_ram(c) for c in coders) + 3 * PIECE


def _open_stream(name: str, payload: ReadAt, start: int, end: int, coder: _Coder) -> _Reader:
    method, log = coder
    if coder == _EMPTY:
        if start != end:
            raise DeltaError(f"{name} stream declared empty but has {end - start} bytes")
        return _Reader(name)
    if start == end:
        raise DeltaError(f"{name} stream has a coder but no bytes")
    if method == _ZSTD_CODER:
        return _zstd_stream(name, payload, start, end, log)
    return _LzmaStream(name, payload, start, end, method, log)


def _bsdiff_lzma_apply(
    old: ReadAt, old_size: int, payload: ReadAt, payload_size: int, sink: Sink, new_size: int
) -> None:
    """Stream the new image: the five decoders' RAM plus 3 x PIECE, whatever the image size."""
    got_new, coders, lengths, pos = _bsdiff_lzma_header(
        _read(payload, 0, min(payload_size, _BSDIFF_LZMA_HEAD_MAX), "payload")
    )
    if got_new != new_size:
        raise DeltaError(f"payload makes {got_new} bytes, not new_size {new_size}")
    bounds = _stream_bounds(pos, lengths, payload_size, "bsdiff-lzma")
    streams = [
        _open_stream(name, payload, start, end, coder)
        for name, (start, end), coder in zip(_STREAMS, bounds, coders, strict=True)
    ]
    _bsdiff_run(old, old_size, streams, sink, new_size)


# --------------------------------------------------------------------------
# the table and the public functions

ENCODERS: Mapping[str, Encoder] = MappingProxyType(
    {
        "zstd-dict": Encoder(
            "zstd-dict", _TAG_ZSTD_DICT, _zstd_dict_encode, _zstd_dict_apply, _zstd_dict_ram
        ),
        "bsdiff-zstd": Encoder(
            "bsdiff-zstd",
            _TAG_BSDIFF_ZSTD,
            _bsdiff_zstd_encode,
            _bsdiff_zstd_apply,
            _bsdiff_zstd_ram,
        ),
        "bsdiff-lzma": Encoder(
            "bsdiff-lzma",
            _TAG_BSDIFF_LZMA,
            _bsdiff_lzma_encode,
            _bsdiff_lzma_apply,
            _bsdiff_lzma_ram,
        ),
    }
)
"""Encoder name -> row.  The name is what a manifest records."""


def _encoder(name: str) -> Encoder:
    try:
        return ENCODERS[name]
    except KeyError:
        raise DeltaError(f"unknown delta encoder {name!r}") from None


def encode_with(encoder: str, old: bytes, new: bytes) -> bytes:
    """The payload ``encoder`` makes for (old, new), checked by decoding it.

    The check costs one decode (well under the encode time) and means a
    payload that would brick nothing but waste a whole fleet's transfer --
    because of an encoder bug -- never leaves the build machine.
    """
    row = _encoder(encoder)
    payload = row.encode(old, new)
    out: list[bytes] = []
    row.apply(
        lambda off, n: old[off : off + n],
        len(old),
        lambda off, n: payload[off : off + n],
        len(payload),
        out.append,
        len(new),
    )
    if b"".join(out) != new:
        raise AssertionError(f"{encoder} payload does not reproduce the new image")
    return payload


def encode(old: bytes, new: bytes, *, encoders: Iterable[str] | None = None) -> Delta:
    """Run every encoder (or the ones named) and keep the fewest bytes.

    Ties go to the encoder whose decoder needs less RAM, so a box with a small
    budget is never excluded for nothing.
    """
    names = list(ENCODERS) if encoders is None else list(encoders)
    if not names:
        raise ValueError("no encoders to choose from")
    best: tuple[int, int, Delta] | None = None
    for name in names:
        data = encode_with(name, old, new)
        key = (len(data), decode_ram(name, data))
        if best is None or key < best[:2]:
            best = (*key, Delta(name, data))
    assert best is not None
    return best[2]


def apply(
    encoder: str,
    old: ReadAt,
    old_size: int,
    payload: ReadAt,
    payload_size: int,
    sink: Sink,
    *,
    new_size: int,
) -> None:
    """Decode ``payload`` against ``old`` and stream the new image into ``sink``.

    Pieces are at most :data:`PIECE` bytes, never more than ``new_size`` in
    total.  Any malformed, truncated or oversized payload raises
    :class:`DeltaError`; exceptions raised by ``old``, ``payload`` or ``sink``
    themselves propagate unchanged (they are the caller's, not the payload's).
    Bytes already given to the sink before an error are not taken back: the
    caller writes into an inactive slot and only trusts it after the image hash.
    """
    row = _encoder(encoder)
    if old_size < 0 or payload_size < 0 or new_size < 0:
        raise DeltaError("negative size")
    if payload_size == 0:
        raise DeltaError("empty payload")
    row.apply(old, old_size, payload, payload_size, sink, new_size)


def decode_ram(encoder: str, payload_head: bytes) -> int:
    """Bytes of memory the decoder needs, read from the payload's header.

    ``payload_head`` must hold the header (the first 64 bytes always do).  For
    ``zstd-dict`` this is old + new image size: the window a device addresses
    in place from XIP flash.  For ``bsdiff-zstd`` and ``bsdiff-lzma`` it is
    RAM proper: every stream decoder (they are all open at once) plus three
    :data:`PIECE` buffers.
    """
    return _encoder(encoder).decode_ram(payload_head)
