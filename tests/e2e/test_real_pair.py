"""Stage a real pair of consecutive compiled releases through the CLI and beat the peers.

The binaries are orjson's extension module from the 3.10.6 and 3.10.7 wheels,
downloaded from the package index into the ignored benchmark cache on first use
(``benchmarks.inputs``, which checks their SHA-256). Best peer for this pair,
measured with the Debian tools: ``zstd -19 --long=27 --patch-from`` = 42,854
bytes (bsdiff 49,560, xdelta3 -9 53,905); the benchmark suite re-measures them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.inputs import PAIRS, InputError, pair_files

BEST_PEER_ORJSON = 42_854


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


def test_orjson_delta_beats_every_peer_and_verifies(
    orjson_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    old, new = orjson_pair
    store = tmp_path / "store"
    fwdist("keygen", tmp_path / "k")
    common = ["--store", store, "--product", "orjson", "--key", tmp_path / "k"]
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
    assert plan["image_bytes"] == 265_168
    assert plan["encoder"] == "bsdiff-lzma"
    assert plan["payload_bytes"] == 41_838
    assert plan["air_bytes"] == 42_280
    assert plan["air_bytes"] < BEST_PEER_ORJSON
    fwdist("verify", "--store", store, "--pubkey", tmp_path / "k.pub")
    info = json.loads(fwdist("inspect", "--store", store, "orjson@3.10.7", "--json"))
    assert info["image_sha256"] == hashlib.sha256(new.read_bytes()).hexdigest()
