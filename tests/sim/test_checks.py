"""The issue's checks on the default scenario, with the real lockbox in the loop.

rmls-passive on the built-in 256 KiB sample release, 400 boxes (one run): the
field's offset-resume must take "15 or more" accesses at p50 (the calibration),
fwdist-delta at most a quarter of it, and within 10 % of the oracle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.release import load_release, stage_sample
from sim.runner import SimResult, simulate
from sim.scenario import load


@pytest.fixture(scope="module")
def rmls(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    s = load("rmls-passive").with_run(boxes=400, runs=1)
    d = stage_sample(
        tmp_path_factory.mktemp("rmls") / "sample",
        s.release.product,
        s.release.sample_image_bytes,
        s.release.sample_seed,
    )
    rel = load_release(
        Path(d) / "store",
        s.release.product,
        s.release.target,
        tuple(s.release.running),
        sample=True,
    )
    return simulate(s, rel, workers=2)


def _p50(r: SimResult, name: str) -> float:
    v = r.strategies[name].accesses_p50
    assert v is not None, name
    return v


def test_offset_resume_takes_15_or_more_accesses(rmls: SimResult) -> None:
    assert _p50(rmls, "offset-resume") >= 15
    assert _p50(rmls, "object-4k") >= _p50(rmls, "offset-resume")
    assert rmls.strategies["restart"].unfinished_share > 0.9


def test_fwdist_delta_is_at_most_a_quarter_of_offset_resume(rmls: SimResult) -> None:
    assert _p50(rmls, "fwdist-delta") <= _p50(rmls, "offset-resume") / 4
    assert _p50(rmls, "fwdist-full") <= _p50(rmls, "offset-resume") / 2
    for name in ("fwdist-full", "fwdist-delta"):
        assert rmls.strategies[name].install_errors == 0
        assert rmls.strategies[name].unfinished_share == 0.0


def test_fwdist_delta_within_10_percent_of_the_oracle(rmls: SimResult) -> None:
    # A knife edge by construction: a median access carries ~14 KB and both payloads are
    # ~10-13 KB, so p50 is 1 or 2. It holds with the delta encoders in this tree (fwdist's
    # delta + manifest + table 10.3 KB vs bsdiff's 10.3 KB); it failed (2 vs 1) when fwdist
    # sent 13.4 KB per box.
    assert _p50(rmls, "fwdist-delta") <= 1.1 * _p50(rmls, "oracle")
