"""Fixtures shared by every kind of test: keys, stores and sample firmware releases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings

from fwdist import keys
from fwdist.chunker import ChunkerParams
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci")

SMALL_CHUNKS = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    private, _ = keys.generate(tmp_path / "release.key")
    return private


@pytest.fixture
def private_key(keyfile: Path) -> Ed25519PrivateKey:
    return keys.load_private(keyfile)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store", create=True)


@pytest.fixture(scope="session")
def sample() -> SampleFirmware:
    return SampleFirmware(size=64 * 1024, seed=3)


@pytest.fixture
def stage_sample() -> StageSample:
    """Stage consecutive sample releases: ``stage_sample(store, key, sample, tmp, releases=2)``."""
    return _stage_sample


StageSample = Callable[..., list[Path]]


def _stage_sample(
    store: Store,
    key: Ed25519PrivateKey,
    sample: SampleFirmware,
    tmp: Path,
    releases: int = 2,
    **options: object,
) -> list[Path]:
    """Stage ``releases`` consecutive sample releases, each with a delta from the one before."""
    images = []
    for r in range(releases):
        image = tmp / f"fw-{r}.bin"
        image.write_bytes(sample.image(r))
        sources = (sample.version(r - 1),) if r else ()
        stage(
            store,
            image,
            key,
            StageOptions(
                "lockbox",
                sample.version(r),
                sources=sources,
                chunker=SMALL_CHUNKS,
                now=1_700_000_000,
                **options,
            ),
        )  # type: ignore[arg-type]
        images.append(image)
    return images
