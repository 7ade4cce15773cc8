"""Content-defined chunking (FastCDC-2020) and piece ids.

Pieces are cut where a gear hash over the content says so, not at fixed offsets,
so an insertion in a new release moves only the cut points near it and every
other piece keeps its id (SHA-256 of its uncompressed bytes) and is deduplicated
in the store. The cutting itself is pyfastcdc's compiled FastCDC-2020, whose cut
points equal the reference (the Rust ``fastcdc`` crate's v2020 module) for the
same parameters; ``tests/property/test_chunker_reference.py`` holds it to an
independent pure-Python transcription of that reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

MIN_SIZE = 4 * 1024
AVG_SIZE = 16 * 1024
MAX_SIZE = 64 * 1024


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC-2020 bounds; ``avg`` is the normalisation point, as in the paper."""

    min_size: int = MIN_SIZE
    avg_size: int = AVG_SIZE
    max_size: int = MAX_SIZE

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise ValueError(
                f"chunk sizes must satisfy 64 <= min <= avg <= max, got "
                f"{self.min_size}/{self.avg_size}/{self.max_size}"
            )
        if self.avg_size & (self.avg_size - 1):
            raise ValueError(f"average chunk size must be a power of two, got {self.avg_size}")

    def cutter(self) -> FastCDC:
        return FastCDC(
            avg_size=self.avg_size,
            min_size=self.min_size,
            max_size=self.max_size,
            normalized_chunking=1,
        )


@dataclass(frozen=True)
class Chunk:
    """A cut: where it starts in the image, and its bytes."""

    offset: int
    data: bytes

    @property
    def piece_id(self) -> bytes:
        return piece_id(self.data)


def piece_id(data: bytes | memoryview) -> bytes:
    """The content address of a piece: SHA-256 of its uncompressed bytes."""
    return hashlib.sha256(data).digest()


def cut_points(data: bytes | memoryview, params: ChunkerParams = ChunkerParams()) -> list[int]:
    """End offsets of the chunks of ``data`` (the last one is ``len(data)``)."""
    return [c.offset + c.length for c in params.cutter().cut_buf(data)]


def chunk_bytes(
    data: bytes | memoryview, params: ChunkerParams = ChunkerParams()
) -> Iterator[Chunk]:
    """Chunks of an in-memory buffer."""
    view = memoryview(data)
    for c in params.cutter().cut_buf(view):
        yield Chunk(c.offset, bytes(view[c.offset : c.offset + c.length]))


def chunk_stream(stream: BinaryIO, params: ChunkerParams = ChunkerParams()) -> Iterator[Chunk]:
    """Chunks of a file read in bounded memory (at most a few ``max_size`` buffers).

    The bytes of each chunk are copied out, because pyfastcdc reuses its read
    buffer once the next chunk is produced.
    """
    for c in params.cutter().cut_stream(stream):
        yield Chunk(c.offset, bytes(c.data))
