"""The release commands as a user runs them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fwdist.sample import SampleFirmware


def fwdist(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "fwdist", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with lockbox 1.0.0 and 1.1.0 (delta from 1.0.0), staged through the CLI."""
    d = tmp_path_factory.mktemp("release")
    sample = SampleFirmware(size=96 * 1024, seed=21)
    fwdist("keygen", d / "release.key")
    for r in (0, 1):
        (d / f"fw{r}.bin").write_bytes(sample.image(r))
    fwdist(
        "stage",
        d / "fw0.bin",
        "--store",
        d / "store",
        "--product",
        "lockbox",
        "--version",
        "1.0.0",
        "--key",
        d / "release.key",
        "--json",
    )
    fwdist(
        "stage",
        d / "fw1.bin",
        "--store",
        d / "store",
        "--product",
        "lockbox",
        "--version",
        "1.1.0",
        "--key",
        d / "release.key",
        "--from",
        "1.0.0",
        "--min-battery",
        "30",
        "--required",
        "--expires",
        "90",
        "--json",
    )
    return d


def test_keygen_writes_a_private_key_only_its_owner_reads(released: Path) -> None:
    assert (released / "release.key").stat().st_mode & 0o777 == 0o600
    assert (released / "release.key.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_inspect_and_plan_report_the_release(released: Path) -> None:
    info = json.loads(
        fwdist("inspect", "--store", released / "store", "lockbox@1.1.0", "--json").stdout
    )
    image = (released / "fw1.bin").read_bytes()
    assert info["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert info["image_size"] == len(image)
    assert (info["required"], info["min_battery"]) == (True, 30)
    assert info["expires"] - info["created"] == 90 * 86400
    assert [d["from"] for d in info["deltas"]] == ["1.0.0"]
    plan = json.loads(
        fwdist(
            "plan",
            "--store",
            released / "store",
            "--product",
            "lockbox",
            "--from",
            "1.0.0",
            "--to",
            "1.1.0",
            "--json",
        ).stdout
    )
    assert plan["air_bytes"] == (
        plan["manifest_bytes"] + plan["table_bytes"] + info["deltas"][0]["size"]
    )
    assert plan["encoder"] == info["deltas"][0]["encoder"]
    assert plan["image_bytes"] == len(image)
    assert plan["pieces"] == info["deltas"][0]["pieces"]
    assert plan["air_bytes"] < info["full"]["size"] // 2


def test_verify_passes_then_names_a_tampered_manifest(released: Path, tmp_path: Path) -> None:
    store = released / "store"
    assert (
        fwdist("verify", "--store", store, "--pubkey", released / "release.key.pub").returncode == 0
    )
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
    manifest = copy / "releases" / "lockbox" / "1.1.0"
    data = bytearray(manifest.read_bytes())
    data[40] ^= 1
    manifest.write_bytes(bytes(data))
    proc = fwdist("verify", "--store", copy, ok=False)
    assert proc.returncode == 1
    assert "lockbox@1.1.0" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stage", "{d}/missing.bin", "--version", "2.0.0"], "cannot read image"),
        (["stage", "{d}/empty.bin", "--version", "2.0.0"], "is empty"),
        (["stage", "{d}/fw1.bin", "--version", "1.1.0"], "not newer"),
        (["stage", "{d}/fw1.bin", "--version", "1.0.5"], "not newer"),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--key", "{d}/release.key.pub"],
            "private key",
        ),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--from", "0.1.0"],
            "no release lockbox@0.1.0",
        ),
        (["stage", "{d}/fw1.bin", "--version", "2.0"], "X.Y.Z"),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--security-counter", "-3"], "lower than"),
    ],
)
def test_user_errors_are_one_line_and_change_nothing(
    released: Path, args: list[str], message: str
) -> None:
    d = released
    (d / "empty.bin").write_bytes(b"")
    before = snapshot(d / "store")
    argv = [a.format(d=d) for a in args]
    if "--key" not in argv:
        argv += ["--key", str(d / "release.key")]
    proc = fwdist(*argv, "--store", d / "store", "--product", "lockbox", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fwdist: error: ")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(d / "store") == before


def test_unknown_release_and_non_store_are_clear_errors(released: Path, tmp_path: Path) -> None:
    proc = fwdist("inspect", "--store", released / "store", "lockbox@9.9.9", ok=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        "fwdist: error: no release lockbox@9.9.9 in the store\n",
    )
    proc = fwdist(
        "plan", "--store", tmp_path, "--product", "x", "--from", "1.0.0", "--to", "1.1.0", ok=False
    )
    assert proc.returncode == 1 and "not an fwdist store" in proc.stderr


def test_gc_removes_only_orphans(released: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(released / "store"), str(copy)], check=True)
    orphan = copy / "objects" / "ff" / ("ff" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"junk")
    (copy / "tmp" / "half-written").write_bytes(b"x")
    out = json.loads(fwdist("gc", "--store", copy, "--json").stdout)
    assert (out["removed_objects"], out["removed_bytes"], out["removed_tmp"]) == (1, 4, 1)
    assert fwdist("verify", "--store", copy).returncode == 0


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = json.loads(fwdist("demo", "--dir", tmp_path / "demo", "--json").stdout)
    assert out["verified"] is True
    assert out["releases"] == ["1.0.0", "1.1.0"]
    assert out["plan"]["air_bytes"] < out["full_air_bytes"] // 2
    assert out["installed"] is True
    assert out["lockbox"]["running_version"] == "1.1.0"
    assert out["lockbox"]["sessions"] >= -(-out["plan"]["air_bytes"] // 2000)


def test_stage_killed_with_sigkill_leaves_no_release_and_recovers(tmp_path: Path) -> None:
    """kill -9 a stage mid-way: no release is visible, every object left is whole,
    gc removes the leftovers, and the same stage then succeeds."""
    image = tmp_path / "big.bin"
    image.write_bytes(SampleFirmware(size=8 << 20, seed=4).image(0))
    fwdist("keygen", tmp_path / "k")
    store = tmp_path / "store"
    argv = [
        sys.executable,
        "-m",
        "fwdist",
        "stage",
        str(image),
        "--store",
        str(store),
        "--product",
        "big",
        "--version",
        "1.0.0",
        "--key",
        str(tmp_path / "k"),
        "--level",
        "19",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        objects = store / "objects"
        while time.monotonic() < deadline and len(list(objects.rglob("*"))) < 40:
            time.sleep(0.01)
        proc.kill()
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -9, "stage finished before it could be killed"
    assert list((store / "releases").rglob("*")) == []
    report = json.loads(fwdist("verify", "--store", store, "--json").stdout)
    assert report["ok"] and report["releases"] == 0 and report["objects"] > 0
    out = json.loads(fwdist("gc", "--store", store, "--json").stdout)
    assert out["removed_objects"] == report["objects"] and out["kept_objects"] == 0
    fwdist(
        "stage",
        image,
        "--store",
        store,
        "--product",
        "big",
        "--version",
        "1.0.0",
        "--key",
        tmp_path / "k",
        "--level",
        "3",
    )
    assert fwdist("verify", "--store", store).returncode == 0
