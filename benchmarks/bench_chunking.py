"""Chunking throughput next to hashlib SHA-256 over the same buffer.

SHA-256 is the right yardstick: staging must hash every byte anyway (piece ids
and the whole-image digest), so a chunker much slower than SHA-256 would be the
bottleneck, and one near it is "free". Two fwdist figures: cut points alone
(what FastCDC costs) and cut points plus piece ids (what staging does).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from benchmarks.inputs import firmware_like
from benchmarks.record import Record

SEED = 11


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs: the least disturbed by the other tenants of the machine."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def run(quick: bool) -> list[Record]:
    from fwdist.chunker import ChunkerParams, chunk_bytes, cut_points

    size = 256 << 20
    repeats = 3 if quick else 5
    buf = firmware_like(size, SEED)
    params = ChunkerParams()
    mib = size / (1 << 20)

    sha = best_seconds(lambda: hashlib.sha256(buf).digest(), repeats)
    cuts = best_seconds(lambda: cut_points(buf, params), repeats)

    def cut_and_hash() -> None:
        for c in chunk_bytes(buf, params):
            c.piece_id  # noqa: B018 - computing the id is the work being timed

    both = best_seconds(cut_and_hash, repeats)
    pieces = len(cut_points(buf, params))
    where = (
        f"{mib:.0f} MiB firmware-like buffer (seed {SEED}), FastCDC "
        f"{params.min_size >> 10}/{params.avg_size >> 10}/{params.max_size >> 10} KiB; "
        f"best of {repeats}"
    )
    return [
        Record(
            "chunking/cut_points",
            round(mib / cuts, 1),
            "MiB/s",
            peer="hashlib sha256",
            peer_value=round(mib / sha, 1),
            better="higher",
            note=where,
        ),
        Record(
            "chunking/cut_points+piece_ids",
            round(mib / both, 1),
            "MiB/s",
            peer="hashlib sha256",
            peer_value=round(mib / sha, 1),
            better="higher",
            note="cut points, then SHA-256 of every piece (the staging path)",
        ),
        Record(
            "chunking/pieces",
            pieces,
            "pieces",
            note=f"pieces in the {mib:.0f} MiB buffer (mean {size // pieces} bytes)",
        ),
    ]
