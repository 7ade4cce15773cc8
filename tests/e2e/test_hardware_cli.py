"""``fwdist hardware set|show|list`` and a box provisioned from a profile, as real processes.

Issue 10 items 1, 5: bad input is one line and exit 1 with the store untouched; a stage
for a hardware id with a profile makes only payloads its boxes decode; and a box with the
documented 32 KiB profile installs two successive releases through ``lockbox serve`` and
``app push`` (item 5: no box is ever stuck).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fwdist.hardware import NRF52832
from fwdist.sample import SampleFirmware
from tests.e2e.test_device_cli import TIMEOUT, Box, fwdist, fwdist_json

SAMPLE = SampleFirmware(size=96 * 1024, seed=5)
NRF = ["--ram", "32768", "--flash", "524288", "--sector", "4096", "--align", "4", "--slot",
       "163840", "--staging", "180224", "--arch", "thumb2", "--formats",
       "bsdiff3-lzma,bsdiff3-lzma+thumb2,bsdiff3-heatshrink,bsdiff3-heatshrink+thumb2"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    fwdist("keygen", tmp_path / "k")
    for r in (0, 1, 2):
        (tmp_path / f"fw{r}.bin").write_bytes(SAMPLE.image(r))
    fwdist("stage", tmp_path / "fw0.bin", "--store", tmp_path / "s", "--product", "lockbox",
           "--version", "1.0.0", "--key", tmp_path / "k", "--init-store", "--hardware",
           "nrf52832")
    return tmp_path / "s"


def test_set_show_list(store: Path) -> None:
    out = fwdist_json("hardware", "set", "nrf52832", "--store", store, *NRF)
    assert out == {**NRF52832.as_json(), "schema": 1}
    assert (store / "hardware" / "nrf52832.json").read_bytes() == NRF52832.encode()
    assert fwdist_json("hardware", "show", "nrf52832", "--store", store) == out
    fwdist("hardware", "set", "small", "--store", store, *NRF[:-4], "--ram", "8192",
           "--formats", "bsdiff-lzma")
    listed = fwdist_json("hardware", "list", "--store", store)
    assert [p["id"] for p in listed["profiles"]] == ["nrf52832", "small"]
    assert listed["profiles"][1]["formats"] == ["bsdiff-lzma", "full"]
    assert (listed["profiles"][1]["decoder_ram"], listed["profiles"][1]["arch"]) == (8192, "none")
    line = fwdist("hardware", "show", "small", "--store", store).stdout
    assert line == ("small: decoder RAM 8.0 KiB, flash 512.0 KiB in 4.0 KiB sectors (writes of "
                    "4 B), slots 160.0 KiB, staging 176.0 KiB, none, formats bsdiff-lzma,full\n")


@pytest.mark.parametrize(("args", "line"), [
    (["--ram", "100"], "hardware profile 'nrf52832': decoder RAM must be 1024..4294967295 "
                       "bytes, got 100"),
    (["--sector", "1000"], "hardware profile 'nrf52832': sector size must be a power of two, "
                           "256..1048576 bytes, got 1000"),
    (["--align", "8192"], "hardware profile 'nrf52832': write alignment must be a power of "
                          "two, 1..256 bytes, got 8192"),
    (["--slot", "5000"], "hardware profile 'nrf52832': slot size must be a positive multiple "
                         "of the 4096-byte sector, got 5000"),
    (["--staging", "0"], "hardware profile 'nrf52832': staging size must be a positive "
                         "multiple of the 4096-byte sector, got 0"),
    (["--flash", "262144"], "hardware profile 'nrf52832': two 163840-byte slots, a "
                            "180224-byte staging area and 4 sectors of journal and manifests "
                            "need 524288 bytes of flash, more than its 262144"),
    (["--arch", "arm"], "--arch must be one of none, thumb2, xtensa, got 'arm'"),
    (["--formats", "lz4"], "hardware profile 'nrf52832': unknown payload format 'lz4' (known: "
                           "bsdiff-lzma, bsdiff-lzma+thumb2, bsdiff-zstd, bsdiff-zstd+thumb2, "
                           "bsdiff3-heatshrink, bsdiff3-heatshrink+thumb2, bsdiff3-lzma, "
                           "bsdiff3-lzma+thumb2, full, zstd-dict)"),
    (["--formats", "zstd-dict,,full"], "--formats must be format names separated by commas, "
                                       "got 'zstd-dict,,full'"),
    (["--formats", "zstd-dict,zstd-dict"], "payload format 'zstd-dict' is named twice"),
])
def test_every_bad_value_is_one_line_exit_1_and_the_store_is_untouched(
    store: Path, args: list[str], line: str
) -> None:
    fwdist("hardware", "set", "nrf52832", "--store", store, *NRF)
    before = snapshot(store)
    proc = fwdist("hardware", "set", "nrf52832", "--store", store, *NRF, *args, ok=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"fwdist: error: {line}\n")
    assert snapshot(store) == before


def test_other_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    cases = [
        (["hardware", "show", "nope", "--store", store], 1,
         "fwdist: error: the store has no hardware profile 'nope' (profiles: none; "
         "`fwdist hardware set` makes one)\n"),
        (["hardware", "set", "bad id", "--store", store, *NRF], 1,
         "fwdist: error: hardware profile 'bad id': hardware id must be 1-64 of "
         "[A-Za-z0-9._-] starting alphanumeric, got 'bad id'\n"),
        (["hardware", "list", "--store", tmp_path / "none"], 1,
         f"fwdist: error: no store at {tmp_path / 'none'}\n"),
    ]
    for args, code, err in cases:
        proc = fwdist(*args, ok=False)
        assert (proc.returncode, proc.stderr) == (code, err), args
    proc = fwdist("hardware", "set", "x", "--store", store, *NRF, "--ram", "lots", ok=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    (store / "hardware").mkdir()
    (store / "hardware" / "broken.json").write_text("{}")
    proc = fwdist("hardware", "list", "--store", store, ok=False)
    assert (proc.returncode, proc.stderr) == (
        1, "fwdist: error: hardware/broken.json: missing field 'schema'\n")


def test_init_takes_a_profile_file_or_a_store_profile(store: Path, tmp_path: Path) -> None:
    fwdist("hardware", "set", "nrf52832", "--store", store, *NRF)
    (tmp_path / "p.json").write_text(fwdist("hardware", "show", "nrf52832", "--store", store,
                                            "--json").stdout)
    common = ["--product", "lockbox", "--pubkey", tmp_path / "k.pub", "--image",
              tmp_path / "fw0.bin", "--version", "1.0.0"]
    for name, how in (("a", ["--hardware", tmp_path / "p.json"]),
                      ("b", ["--store", store, "--hardware", "nrf52832"])):
        fwdist("lockbox", "init", "--state", tmp_path / name, *common, *how)
        config = json.loads((tmp_path / name / "box.json").read_text())["config"]
        assert {k: config[k] for k in ("hardware", "ram_budget", "sector_size", "align",
                                       "slot_size", "staging_size", "formats")} == {
            "hardware": "nrf52832", "ram_budget": 32768, "sector_size": 4096, "align": 4,
            "slot_size": 163840, "staging_size": 180224,
            "formats": ["bsdiff3-heatshrink", "bsdiff3-heatshrink+thumb2", "bsdiff3-lzma",
                        "bsdiff3-lzma+thumb2"]}
    proc = fwdist("lockbox", "init", "--state", tmp_path / "c", *common, "--hardware",
                  tmp_path / "p.json", "--ram", "4096", ok=False)
    assert (proc.returncode, proc.stderr) == (
        1, "fwdist: error: --ram and the hardware profile 'nrf52832' both size the box; give "
           "one of them\n")
    assert not (tmp_path / "c").exists()


def push_until_installed(store: Path, key: Path, box: Box, version: str) -> list[dict[str, Any]]:
    """16,000-byte sessions until the box runs ``version`` (at most 30)."""
    reports = []
    deadline = time.monotonic() + 4 * TIMEOUT
    while True:
        r: dict[str, Any] = fwdist_json("app", "push", "--store", store, "--product", "lockbox",
                                        "--pubkey", key, "--to", box.address, "--max-bytes",
                                        "16000")
        reports.append(r)
        assert r["rejected"] is None, r
        if r["installed"] and r["box_version"] == version:
            return reports
        assert len(reports) < 30 and time.monotonic() < deadline, reports
        time.sleep(0.1)  # the box builds and installs between sessions


def test_a_32_kib_box_installs_two_successive_releases(store: Path, tmp_path: Path) -> None:
    fwdist("hardware", "set", "nrf52832", "--store", store, *NRF)
    key = tmp_path / "k"
    fwdist("lockbox", "init", "--state", tmp_path / "box", "--product", "lockbox", "--pubkey",
           tmp_path / "k.pub", "--image", tmp_path / "fw0.bin", "--version", "1.0.0",
           "--store", store, "--hardware", "nrf52832")
    box = Box(tmp_path / "box")
    try:
        box.start()
        for r, (old, new) in enumerate((("1.0.0", "1.1.0"), ("1.1.0", "1.2.0")), start=1):
            staged = fwdist_json("stage", tmp_path / f"fw{r}.bin", "--store", store,
                                 "--product", "lockbox", "--version", new, "--key", key,
                                 "--from", old, "--hardware", "nrf52832")
            for ref in (staged["full"], *staged["deltas"]):
                assert ref["decode_ram"] <= 32768, ref
            plan = fwdist_json("plan", "--store", store, "--product", "lockbox", "--from", old,
                               "--to", new)
            assert plan["decoder_ram"] <= 32768
            push_until_installed(store, key.with_suffix(".pub"), box, new)
            status = fwdist_json("lockbox", "status", "--state", tmp_path / "box")
            assert status["running_version"] == new
            assert status["running_sha256"] == hashlib.sha256(SAMPLE.image(r)).hexdigest()
    finally:
        box.kill()
