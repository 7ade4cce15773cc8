"""zstd frames stored stripped: compress, strip the header, check, rebuild and decode.

A stored frame has no magic number, no frame header and no checksum -- only
its blocks.  The decoder rebuilds the two-to-nine header bytes from fields the
payload header carries anyway (a window log, a content size), which saves
every byte the header would repeat (fwdist checks the image's SHA-256 anyway).
"""

from __future__ import annotations

from typing import IO, Final, cast

import zstandard as zstd

from fwdist.delta._core import READ_SIZE, DeltaError, ReadAt, Reader, Source, read_exact

LEVEL: Final = 22
"""zstd level for every stream: encode once on a build machine, send to many boxes."""

# libzstd's decoder state (ZSTD_estimateDCtxSize() for libzstd 1.5.x, 64-bit).
# A constant, not a call, so decode_ram is the same on every machine.
DCTX_BYTES: Final = 95_968
BLOCK_MAX: Final = 128 * 1024
_WILDCOPY_OVERLENGTH: Final = 32

# A box's zstd decoder whose window is flash (zstd-dict): the entropy tables a block may
# load -- Huffman DTable (1 + 2^12) x 4, FSE tables for literal lengths (1 + 2^9) x 8,
# offsets (1 + 2^8) x 8 and match lengths (1 + 2^9) x 8, the table-building workspace
# (2,560 bytes) -- and 128 bytes of repeat offsets and state.  The literal buffer (one
# block) comes on top: literals are decoded before the block's sequences run.
ENTROPY_BYTES: Final = 16_388 + 4_104 + 2_056 + 4_104 + 2_560 + 128
WILDCOPY: Final = _WILDCOPY_OVERLENGTH

FHD_STREAM: Final = 0x00  # no content size, not single-segment, no checksum, no dict id
FHD_SINGLE_FCS8: Final = 0xE0  # single segment, 8-byte content size


FAST_TARGET_LENGTH: Final = 999
"""btultra2's own default target length: for zstd-dict, 4096 bought nothing.

Measured on the six device pairs: identical bytes (cyfmac43430 one byte fewer)
in 0.4x the time (0.32 s against 0.77 s on cyfmac43430).  The bsdiff columns
keep 4096, which saves 5-20 bytes on the smallest pairs.
"""


MAX_TABLE_LOG: Final = 22
"""Largest chain and hash table logs the encoder asks libzstd for (4 MiB entries each).

Level 22 sizes them to the window: on an 11 MB pair (zstandard 0.22 -> 0.23)
zstd-dict's encoder held 385 MB of tables (593 MB peak for the stage), on a
5 MB one 257 MB.  Every device pair and orjson already stay at 21, so their
bytes do not move; above that the cap bounds the encoder near 32 MB of tables
plus its window.
"""


def compress(
    data: bytes,
    window_log: int,
    dict_data: bytes = b"",
    content_size: bool = False,
    target_length: int = 4096,
) -> bytes:
    """One zstd frame at level 22, magicless, without checksum or dictionary id.

    Parameters come from ``from_level`` with the real source and dictionary
    sizes so that tiny inputs get tiny tables (zstd also shrinks the window to
    the input, which is why callers read the window back from the header).
    """
    fields: dict[str, int] = dict(
        source_size=len(data),
        dict_size=len(dict_data),
        window_log=window_log,
        strategy=zstd.STRATEGY_BTULTRA2,
        target_length=target_length,
        write_checksum=False,
        write_content_size=content_size,
        write_dict_id=False,
        format=zstd.FORMAT_ZSTD1_MAGICLESS,
    )
    params = zstd.ZstdCompressionParameters.from_level(LEVEL, **fields)
    if max(params.chain_log, params.hash_log) > MAX_TABLE_LOG:
        params = zstd.ZstdCompressionParameters.from_level(
            LEVEL,
            chain_log=min(params.chain_log, MAX_TABLE_LOG),
            hash_log=min(params.hash_log, MAX_TABLE_LOG),
            **fields,
        )
    return zstd.ZstdCompressor(compression_params=params, dict_data=_raw_dict(dict_data)).compress(
        data
    )


def _raw_dict(dict_data: bytes) -> zstd.ZstdCompressionDict | None:
    """The old image as a raw-content dictionary (no dictionary at all when it is empty)."""
    if not dict_data:
        return None
    return zstd.ZstdCompressionDict(dict_data, dict_type=zstd.DICT_TYPE_RAWCONTENT)


def strip_stream_frame(frame: bytes) -> tuple[int, bytes]:
    """Split a streaming frame into (window log, blocks); the decoder rebuilds the header."""
    if len(frame) < 5 or frame[0] != FHD_STREAM or frame[1] & 0x07:
        raise AssertionError("zstd produced an unexpected frame header")
    return (frame[1] >> 3) + 10, frame[2:]


def window_ram(window_log: int) -> int:
    """RAM of one streaming zstd decoder, as ZSTD_estimateDStreamSize counts it.

    Decoder state, one input block, and the window plus a block of slack.
    """
    window = 1 << window_log
    block = min(window, BLOCK_MAX)
    return DCTX_BYTES + block + window + block + 2 * _WILDCOPY_OVERLENGTH


def _check_blocks(payload: ReadAt, start: int, end: int, block_max: int) -> None:
    """Walk the zstd block headers of a stripped frame: it must end exactly at ``end``.

    Reads three bytes per block, so a frame is validated before a byte of it
    is decoded, and trailing junk after the last block is refused.
    """
    pos = start
    while True:
        if pos + 3 > end:
            raise DeltaError("zstd frame truncated")
        header = int.from_bytes(read_exact(payload, pos, 3, "payload"), "little")
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


class ZstdStream(Reader):
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
        _check_blocks(payload, start, end, min(max_window, BLOCK_MAX))
        try:
            decompressor = zstd.ZstdDecompressor(
                dict_data=_raw_dict(dict_data),
                max_window_size=max_window,
                format=zstd.FORMAT_ZSTD1_MAGICLESS,
            )
            self._reader = decompressor.stream_reader(
                cast("IO[bytes]", Source(header, payload, start, end)), read_size=READ_SIZE
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


def open_stream(name: str, payload: ReadAt, start: int, end: int, log: int) -> ZstdStream:
    """A stripped streaming frame with a ``1 << log`` window, its frame header rebuilt."""
    return ZstdStream(name, payload, start, end, bytes([FHD_STREAM, (log - 10) << 3]), 1 << log)
