"""The release commands as a user runs them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
        "--init-store",
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
    proc = fwdist("verify", "--store", copy, "--pubkey", released / "release.key.pub", ok=False)
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
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--security-counter", "-3"],
            "--security-counter must be 0..4294967295",
        ),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--security-counter", "4294967296"],
            "--security-counter must be 0..4294967295",
        ),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--expires", "0"], "--expires must be"),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--expires", "-2"], "--expires must be"),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--expires", "nan"], "--expires must be"),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--expires", "100000000"],
            "--expires must be",
        ),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--level", "99"], "--level must be 1..22"),
        (["stage", "{d}/fw1.bin", "--version", "2.0.0", "--level", "0"], "--level must be 1..22"),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--max-piece", "2097152"],
            "--max-piece must be at most 1048576",
        ),
        (
            ["stage", "{d}/fw1.bin", "--version", "2.0.0", "--from", "1.0.0", "--from", "2.0.0"],
            "delta source 2.0.0 is not older than 2.0.0",
        ),
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
    (copy / "tmp" / ("ab" * 32 + ".0123456789abcdef")).write_bytes(b"x")  # a killed write
    (copy / "tmp" / "notes.txt").write_bytes(b"not fwdist's")
    out = json.loads(fwdist("gc", "--store", copy, "--json").stdout)
    assert (out["removed_objects"], out["removed_bytes"], out["removed_tmp"]) == (1, 4, 1)
    assert out["strays"] == ["tmp/notes.txt"] and out["skipped"] == []
    assert (copy / "tmp" / "notes.txt").read_bytes() == b"not fwdist's"
    proc = fwdist("verify", "--store", copy, "--pubkey", released / "release.key.pub", ok=False)
    assert (proc.returncode, proc.stdout) == (
        1,
        "fwdist: verify: tmp/notes.txt: not part of an fwdist store; left alone\n",
    )
    (copy / "tmp" / "notes.txt").unlink()
    assert fwdist("verify", "--store", copy, "--pubkey", released / "release.key.pub").stdout == (
        f"ok: 2 releases, {out['kept_objects']} objects\n"
    )


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = json.loads(fwdist("demo", "--dir", tmp_path / "demo", "--boxes", "0", "--json").stdout)
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
        "--init-store",
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
    pub = tmp_path / "k.pub"
    report = json.loads(fwdist("verify", "--store", store, "--pubkey", pub, "--json").stdout)
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
    assert fwdist("verify", "--store", store, "--pubkey", pub).returncode == 0


def rle_bomb(declared: int) -> bytes:
    """A zstd frame of RLE blocks: 4 bytes per 128 KiB of zeros, ``declared`` bytes in all."""
    frame = b"\x28\xb5\x2f\xfd" + b"\xe0" + declared.to_bytes(8, "little")  # single segment
    block = 128 * 1024
    for done in range(0, declared, block):
        n = min(block, declared - done)
        last = int(done + n == declared)
        frame += ((n << 3) | (1 << 1) | last).to_bytes(3, "little") + b"\x00"
    return frame


def copy_store(released: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(released / "store"), str(copy)], check=True)
    return copy


def stage_argv(d: Path, store: Path, image: str, version: str, *more: str) -> list[str | Path]:
    return [
        "stage",
        d / image,
        "--store",
        store,
        "--product",
        "lockbox",
        "--version",
        version,
        "--key",
        d / "release.key",
        *more,
    ]


def test_verify_trusts_only_the_key_the_user_names(released: Path, tmp_path: Path) -> None:
    """A forged release signed by a key planted in keys/ must not verify (issue 9, item 14)."""
    copy = copy_store(released, tmp_path)
    fwdist("keygen", tmp_path / "forger.key")
    forged = [*stage_argv(released, copy, "fw1.bin", "1.2.0")]
    forged[forged.index(released / "release.key")] = tmp_path / "forger.key"
    staged = fwdist(*forged)
    assert len(list((copy / "keys").glob("*.pub"))) == 2
    proc = fwdist("verify", "--store", copy, ok=False)
    assert proc.returncode == 2 and "--pubkey" in proc.stderr
    assert staged.stderr.count("fwdist: warning: ignoring lockbox@1.") == 2  # not its releases
    proc = fwdist("verify", "--store", copy, "--pubkey", released / "release.key.pub", ok=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        "fwdist: verify: lockbox@1.2.0: manifest is signed by unknown key"
    )
    both = fwdist(
        "verify",
        "--store",
        copy,
        "--pubkey",
        released / "release.key.pub",
        "--pubkey",
        tmp_path / "forger.key.pub",
    )
    assert both.stdout.startswith("ok: 3 releases")


def _blocked_on(lock: Path) -> int:
    """How many processes wait for the flock on ``lock`` (from /proc/locks)."""
    inode = f":{lock.stat().st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and inode in line)


def test_concurrent_stages_never_lower_the_security_counter(released: Path, tmp_path: Path) -> None:
    """Two real `stage` processes, both released at once by a lock this test holds: whichever
    wins, the newer version never carries the lower counter (issue 9, item 11)."""
    import fcntl

    copy = copy_store(released, tmp_path)
    lock = copy / "lock"
    with open(lock, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "fwdist", *map(str, argv)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for argv in (
                stage_argv(released, copy, "fw1.bin", "1.2.0", "--security-counter", "9"),
                stage_argv(released, copy, "fw0.bin", "1.3.0"),
            )
        ]
        deadline = time.monotonic() + 120
        while _blocked_on(lock) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _blocked_on(lock) == 2, "both stages must wait for the store lock"
        fcntl.flock(held, fcntl.LOCK_UN)
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    counters = {
        v: json.loads(fwdist("inspect", "--store", copy, f"lockbox@{v}", "--json").stdout)[
            "security_counter"
        ]
        for v in ("1.1.0", "1.2.0", "1.3.0")
        if (copy / "releases" / "lockbox" / v).exists()
    }
    if codes == [0, 0]:  # 1.2.0 first: 1.3.0 inherits its counter
        assert counters == {"1.1.0": 0, "1.2.0": 9, "1.3.0": 9}
    else:  # 1.3.0 first: 1.2.0 is then older than the newest release and refused
        assert codes == [1, 0], results
        assert "not newer than the staged 1.3.0" in results[0][1]
        assert counters == {"1.1.0": 0, "1.3.0": 0}


def test_a_symlink_out_of_the_store_is_one_line_and_nothing_outside_goes(
    released: Path, tmp_path: Path
) -> None:
    copy = copy_store(released, tmp_path)
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "thesis.tex").write_text("years of work")
    (copy / "tmp").rmdir()
    (copy / "tmp").symlink_to(outside)
    proc = fwdist("gc", "--store", copy, ok=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"fwdist: error: store {copy}: tmp is a symbolic link; fwdist never follows links out "
        "of a store (replace it with what it points to)\n",
    )
    assert (outside / "thesis.tex").read_text() == "years of work"


def test_a_store_is_created_only_when_asked(released: Path, tmp_path: Path) -> None:
    store = tmp_path / "new-store"
    proc = fwdist(*stage_argv(released, store, "fw0.bin", "1.0.0"), ok=False)
    assert (proc.returncode, proc.stderr) == (
        1,
        f"fwdist: error: no store at {store} (stage --init-store creates one)\n",
    )
    assert not store.exists()
    fwdist(*stage_argv(released, store, "fw0.bin", "1.0.0", "--init-store"))
    assert (store / "releases" / "lockbox" / "1.0.0").is_file()
    bad = fwdist(
        *stage_argv(released, tmp_path / "s2", "fw0.bin", "1.0.0", "--init-store", "--level", "99"),
        ok=False,
    )
    assert bad.returncode == 1 and not (tmp_path / "s2").exists()
    missing = fwdist(
        *stage_argv(released, tmp_path / "s3", "missing.bin", "1.0.0", "--init-store"), ok=False
    )
    assert missing.returncode == 1 and not (tmp_path / "s3").exists()


@pytest.mark.parametrize(
    "argv",
    [
        [
            "stage",
            "{d}/fw0.bin",
            "--product",
            "lockbox",
            "--version",
            "1.0.0",
            "--key",
            "{d}/release.key",
            "--init-store",
        ],
        ["gc"],
        ["verify", "--pubkey", "{d}/release.key.pub"],
        ["inspect", "lockbox@1.0.0"],
        ["plan", "--product", "lockbox", "--from", "1.0.0", "--to", "1.1.0"],
    ],
)
def test_a_file_given_as_the_store_is_one_line(released: Path, argv: list[str]) -> None:
    file = released / "fw1.bin"
    before = file.read_bytes()
    proc = fwdist(*[a.format(d=released) for a in argv], "--store", file, ok=False)
    assert (proc.returncode, proc.stderr) == (1, f"fwdist: error: {file} is not a directory\n")
    assert file.read_bytes() == before


def _read_only(store: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run fwdist with ``store`` bind-mounted read-only in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a read-only mount")
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f'mount --bind -o ro "{store}" "{store}"'],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip("this machine allows no private read-only mount")
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            script,
            str(store),
            sys.executable,
            "-m",
            "fwdist",
            *map(str, argv),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_read_only_store_is_one_line_for_stage_and_gc(released: Path, tmp_path: Path) -> None:
    copy = copy_store(released, tmp_path)
    before = snapshot(copy)
    for argv in (["gc"], stage_argv(released, copy, "fw1.bin", "1.2.0")):
        proc = _read_only(copy, *argv, "--store", copy)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == (
            f"fwdist: error: cannot lock store {copy}: Read-only file system "
            "(stage and gc need a writable store)\n"
        )
    proc = _read_only(copy, "verify", "--store", copy, "--pubkey", released / "release.key.pub")
    assert (proc.returncode, proc.stdout) == (0, "ok: 2 releases, " + proc.stdout.split(", ")[1])
    assert snapshot(copy) == before


@pytest.mark.parametrize(
    ("frm", "to", "message"),
    [
        ("1.1.0", "1.0.0", "a box on 1.1.0 refuses 1.0.0: it is not newer"),
        ("1.1.0", "1.1.0", "a box on 1.1.0 already runs it"),
    ],
)
def test_plan_refuses_what_a_box_refuses(released: Path, frm: str, to: str, message: str) -> None:
    where = ["--store", released / "store", "--product", "lockbox"]
    proc = fwdist("plan", *where, "--from", frm, "--to", to, ok=False)
    assert (proc.returncode, proc.stderr) == (1, f"fwdist: error: {message}\n")


@pytest.mark.parametrize("name", ["", ".", "{d}/no-such-dir/k", "{d}"])
def test_keygen_refuses_a_path_it_cannot_use_in_one_line(released: Path, name: str) -> None:
    before = sorted(p.name for p in released.iterdir())
    proc = fwdist("keygen", name.format(d=released), ok=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("fwdist: error: ") and "Traceback" not in proc.stderr
    assert sorted(p.name for p in released.iterdir()) == before


def test_verify_of_a_decompression_bomb_stays_small(released: Path, tmp_path: Path) -> None:
    """A 32 KB object that declares 1 GiB (issue 9, item 15): verify names it in bounded RAM."""
    copy = copy_store(released, tmp_path)
    bomb = rle_bomb(1 << 30)
    assert 32_000 < len(bomb) < 33_000
    name = "ee" * 32
    (copy / "objects" / "ee").mkdir(exist_ok=True)
    (copy / "objects" / "ee" / name).write_bytes(bomb)
    measure = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print(p.stdout, end='')"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "fwdist",
            "verify",
            "--store",
            str(copy),
            "--pubkey",
            str(released / "release.key.pub"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    first, *problems = proc.stdout.splitlines()
    code, max_rss_kib = map(int, first.split())
    assert max_rss_kib < 150 * 1024
    assert code == 1
    assert problems == [
        f"fwdist: verify: object {name} declares no size or more than 1048576 bytes"
    ]


def test_an_unreadable_manifest_stops_gc_from_removing_but_not_stage(
    released: Path, tmp_path: Path
) -> None:
    copy = copy_store(released, tmp_path)
    (copy / "releases" / "lockbox" / "1.5.0").write_bytes(b"")
    orphan = copy / "objects" / "ff" / ("ff" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"junk")
    proc = fwdist("gc", "--store", copy, ok=False)
    assert proc.returncode == 1
    assert proc.stderr == (
        "fwdist: gc: cannot read lockbox@1.5.0: manifest is not valid msgpack: ValueError\n"
        "fwdist: gc: removed no objects: an unreadable release may need any of them "
        "(repair or remove it, then run gc again)\n"
    )
    assert orphan.read_bytes() == b"junk"
    staged = fwdist(*stage_argv(released, copy, "fw0.bin", "1.6.0"))
    assert staged.stderr == (
        "fwdist: warning: ignoring lockbox@1.5.0: manifest is not valid msgpack: ValueError; "
        "only releases the staging key or a --trust key signed count\n"
    )
    (copy / "releases" / "lockbox" / "1.5.0").unlink()
    out = json.loads(fwdist("gc", "--store", copy, "--json").stdout)
    assert (out["removed_objects"], out["removed_bytes"], out["skipped"]) == (1, 4, [])
