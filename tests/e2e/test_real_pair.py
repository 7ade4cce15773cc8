"""Stage a real pair of consecutive compiled releases through the CLI and beat the peers.

The binaries are orjson's extension module from the 3.10.6 and 3.10.7 wheels,
downloaded from the package index into the ignored benchmark cache on first use
(``benchmarks.inputs``, which checks their SHA-256). Every peer is measured
here, in the same run, with the benchmark suite's own runners (each peer's
patch must rebuild the new release): bsdiff4 always (a dependency; it writes
Debian bsdiff 4.3's patch), the Debian tools when they are on PATH. The best
peer when this was written was ``zstd -19 --long=27 --patch-from``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import bsdiff4
import pytest

from benchmarks.bench_pairs import PEERS
from benchmarks.inputs import PAIRS, InputError, pair_files


def fwdist(*args: str | Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "fwdist", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def orjson_pair() -> tuple[Path, Path]:
    pair = next(p for p in PAIRS if p.product == "orjson")
    try:
        return pair_files(pair)
    except InputError as e:  # only when the package index cannot be reached
        pytest.skip(f"cannot fetch the orjson wheels: {e}")


@pytest.fixture(scope="module")
def staged(
    orjson_pair: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, dict[str, object]]:
    """(store, key, ``plan --json``) once the pair is staged, 3.10.7 with a delta from 3.10.6."""
    old, new = orjson_pair
    tmp = tmp_path_factory.mktemp("orjson")
    store, key = tmp / "store", tmp / "k"
    fwdist("keygen", key)
    common = ["--store", store, "--product", "orjson", "--key", key]
    fwdist("stage", old, "--version", "3.10.6", "--init-store", *common)
    fwdist("stage", new, "--version", "3.10.7", "--from", "3.10.6", *common)
    plan = json.loads(
        fwdist(
            "plan",
            "--store",
            store,
            "--product",
            "orjson",
            "--from",
            "3.10.6",
            "--to",
            "3.10.7",
            "--json",
        )
    )
    return store, key, plan


def test_orjson_delta_is_pinned_and_verifies(
    orjson_pair: tuple[Path, Path], staged: tuple[Path, Path, dict[str, object]]
) -> None:
    _, new = orjson_pair
    store, key, plan = staged
    assert plan["image_bytes"] == 265_168
    assert plan["encoder"] == "bsdiff-lzma"
    assert plan["payload_bytes"] == 41_838
    assert plan["air_bytes"] == 42_280
    fwdist("verify", "--store", store, "--pubkey", key.with_name("k.pub"))
    info = json.loads(fwdist("inspect", "--store", store, "orjson@3.10.7", "--json"))
    assert info["image_sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()


def test_orjson_delta_beats_bsdiff4(
    orjson_pair: tuple[Path, Path], staged: tuple[Path, Path, dict[str, object]]
) -> None:
    old, new = (p.read_bytes() for p in orjson_pair)
    patch = bsdiff4.diff(old, new)
    assert bsdiff4.patch(old, patch) == new
    air_bytes = staged[2]["air_bytes"]
    assert isinstance(air_bytes, int)
    assert air_bytes < len(patch)


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_orjson_delta_beats_peer(
    peer: str,
    orjson_pair: tuple[Path, Path],
    staged: tuple[Path, Path, dict[str, object]],
    tmp_path: Path,
) -> None:
    commands, measure = PEERS[peer]
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.skip(f"{peer}: {', '.join(missing)} not on PATH (see benchmarks/tools.py)")
    old, new = orjson_pair
    result = measure(old, new, tmp_path, hashlib.sha256(new.read_bytes()).hexdigest())
    air_bytes = staged[2]["air_bytes"]
    assert isinstance(air_bytes, int)
    assert air_bytes < result.air_bytes, result.note
