"""Fixtures shared by every kind of test: keys, stores, sample firmware releases and histories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import settings

from fwdist import keys
from fwdist.chunker import ChunkerParams
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store
from fwdist.testing import Releases, make_releases
from tests.pg_helpers import PostgresServer, PostgresUnavailable, in_ci, postgres_server

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci")

# the dashboard's headless Chromium (`browser`), defined beside its helpers
pytest_plugins = ("tests.browser_helpers",)

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


@pytest.fixture(scope="session")
def release_history(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Releases]:
    """Staged release histories for the box's tests: ``release_history(count, size, seed)``.

    Each distinct history (:func:`fwdist.testing.make_releases` with these arguments) is
    staged once per test run, however many modules ask for it.
    """
    built: dict[tuple[object, ...], Releases] = {}

    def history(count: int, size: int, seed: int, *, deltas: bool = True) -> Releases:
        key = (count, size, seed, deltas)
        if key not in built:
            root = tmp_path_factory.mktemp(f"releases-{count}x{size}-{seed}")
            built[key] = make_releases(root, count=count, size=size, seed=seed, deltas=deltas)
        return built[key]

    return history


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster for the whole run (see tests/pg_helpers.py).

    Skipped with the reason when the binaries are missing; under ``CI`` that is a failure,
    because ``.ci/run`` installs them.
    """
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as e:
        if in_ci():
            pytest.fail(f"CI is set but PostgreSQL is unavailable: {e}")
        pytest.skip(f"PostgreSQL unavailable: {e}")


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """A fresh, empty database on the shared cluster: ``postgresql+psycopg://...``."""
    return pg_server.create_database()
