"""Chunking is deterministic, covers the input exactly, respects its bounds, and is local."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist.chunker import ChunkerParams, chunk_bytes, chunk_stream, cut_points

PARAMS = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)


def data_of(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


@settings(max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(0, 40_000))
def test_pieces_reassemble_and_respect_bounds(seed: int, length: int) -> None:
    data = data_of(seed, length)
    chunks = list(chunk_bytes(data, PARAMS))
    assert b"".join(c.data for c in chunks) == data
    starts = [c.offset for c in chunks]
    assert starts == [0, *(c.offset + len(c.data) for c in chunks[:-1])][: len(chunks)]
    for c in chunks[:-1]:
        assert PARAMS.min_size <= len(c.data) <= PARAMS.max_size
    if chunks:
        assert 0 < len(chunks[-1].data) <= PARAMS.max_size


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1), length=st.integers(0, 40_000), read_size=st.integers(1, 10_000)
)
def test_stream_and_buffer_cut_identically(seed: int, length: int, read_size: int) -> None:
    data = data_of(seed, length)

    class Trickle:
        """A reader that returns at most ``read_size`` bytes per call (short reads)."""

        def __init__(self) -> None:
            self.pos = 0

        def read(self, n: int = -1) -> bytes:
            n = read_size if n < 0 else min(n, read_size)
            out = data[self.pos : self.pos + n]
            self.pos += len(out)
            return out

    streamed = [(c.offset, c.data) for c in chunk_stream(Trickle(), PARAMS)]  # type: ignore[arg-type]
    assert streamed == [(c.offset, c.data) for c in chunk_bytes(data, PARAMS)]


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**32 - 1),
    at=st.floats(0.0, 1.0),
    insert=st.binary(min_size=1, max_size=64),
)
def test_an_insertion_only_moves_nearby_cut_points(seed: int, at: float, insert: bytes) -> None:
    """Cut points more than one max-size window after the edit shift by len(insert) exactly."""
    data = data_of(seed, 60_000)
    pos = int(at * len(data))
    edited = data[:pos] + insert + data[pos:]
    before = cut_points(data, PARAMS)
    after = cut_points(edited, PARAMS)
    # A cut point at least two max-size pieces before the edit is untouched.
    assert [c for c in before if c < pos - 2 * PARAMS.max_size] == [
        c for c in after if c < pos - 2 * PARAMS.max_size
    ]
    # Far enough after the edit the chunker has resynchronised: cut points shift by len(insert).
    far = pos + 3 * PARAMS.max_size
    tail_before = {c + len(insert) for c in before if c > far}
    tail_after = {c for c in after if c > far + len(insert)}
    assert len(tail_before & tail_after) >= len(tail_before) - 1
