"""Shared fixtures for the simulator tests: a small staged release (real stage, real deltas)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.release import ReleaseInfo, load_release, stage_sample

SIZE = 64 * 1024


@pytest.fixture(scope="session")
def small_release(tmp_path_factory: pytest.TempPathFactory) -> ReleaseInfo:
    root = tmp_path_factory.mktemp("sim-release")
    d = stage_sample(root / "sample", "lockbox-sample", SIZE, 3)
    return load_release(d / "store", "lockbox-sample", "1.2.0", ("1.1.0", "1.0.0"), sample=True)


def fake_release(image_bytes: int, oracle: dict[str, int] | None = None) -> ReleaseInfo:
    """Release facts for the arithmetic strategies only (no store is read)."""
    from sim.release import PeerDelta

    oracle = oracle or {"1.1.0": image_bytes // 10}
    return ReleaseInfo(
        Path("/nonexistent"),
        "p",
        "1.2.0",
        image_bytes,
        tuple(oracle),
        {v: PeerDelta("test", n) for v, n in oracle.items()},
    )
