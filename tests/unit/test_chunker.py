"""Chunker parameters and piece ids."""

from __future__ import annotations

import hashlib
import random

import pytest

from fwdist.chunker import ChunkerParams, chunk_bytes, cut_points, piece_id


def test_default_params_are_4_16_64_kib() -> None:
    p = ChunkerParams()
    assert (p.min_size, p.avg_size, p.max_size) == (4096, 16384, 65536)


@pytest.mark.parametrize(
    "sizes", [(32, 64, 128), (4096, 1024, 65536), (4096, 16384, 8192), (4096, 12000, 65536)]
)
def test_bad_params_are_refused(sizes: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        ChunkerParams(*sizes)


def test_piece_id_is_sha256_of_content() -> None:
    assert piece_id(b"abc") == hashlib.sha256(b"abc").digest()


def test_exact_cut_points_of_a_seeded_megabyte() -> None:
    data = random.Random(11).randbytes(1 << 20)
    cuts = cut_points(data)
    assert len(cuts) == 50
    assert cuts[-1] == 1 << 20
    assert hashlib.sha256(repr(cuts).encode()).hexdigest()[:16] == EXPECTED_CUTS_DIGEST


def test_identical_content_gives_identical_ids_across_images() -> None:
    block = random.Random(5).randbytes(100_000)
    a = {c.piece_id for c in chunk_bytes(random.Random(6).randbytes(50_000) + block)}
    b = {c.piece_id for c in chunk_bytes(random.Random(7).randbytes(30_000) + block)}
    assert len(a & b) == 2


EXPECTED_CUTS_DIGEST = "1864f29a1045b360"
