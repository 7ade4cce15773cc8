"""A store someone else can write to: links out of it, planted manifests, damaged leftovers, bombs.

Each test plants what a hostile peer (or a failing disk) could leave in a store and checks the
one rule behind issue 9: fwdist reports it in one line, never follows it out of the store, never
deletes what it did not write, and never lets it lower what an honest release says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import keys
from fwdist.chunker import ChunkerParams
from fwdist.errors import FwdistError, StagingError, StoreError
from fwdist.manifest import FORMAT, encode_body, key_id, sign
from fwdist.releases import gc, load_manifest, verify_store
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store, compress

SMALL_CHUNKS = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)
SAMPLE = SampleFirmware(size=48 * 1024, seed=17)
NOW = 1_700_000_000


def _stage(store: Store, key: Ed25519PrivateKey, tmp: Path, r: int, **kw: object) -> None:
    image = tmp / f"fw-{r}.bin"
    image.write_bytes(SAMPLE.image(r))
    opts = StageOptions("lockbox", SAMPLE.version(r), chunker=SMALL_CHUNKS, now=NOW + r, **kw)  # type: ignore[arg-type]
    stage(store, image, key, opts)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _forge(store: Store, version: str, counter: int, signer: Ed25519PrivateKey | None) -> None:
    """Plant a copy of 1.0.0 renamed ``version`` with ``counter``: signed by ``signer``, or
    claiming the honest key's id with a signature of zeros when ``signer`` is None."""
    honest_wire = store.get_manifest("lockbox", "1.0.0")
    _, _, honest_kid, _ = msgpack.unpackb(honest_wire)
    m = dataclasses.replace(
        load_manifest(store, "lockbox", "1.0.0"), version=version, security_counter=counter
    )
    if signer is not None:
        wire = sign(m, signer)
        store.put_key(key_id(signer.public_key()), keys.public_pem(signer.public_key()))
    else:
        body = encode_body(m)
        wire = msgpack.packb([FORMAT, body, honest_kid, b"\x00" * 64], use_bin_type=True)
    path = store.manifest_path("lockbox", version)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(wire)


# -- item 10: symbolic links ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "action"),
    [
        ("tmp", "gc"),
        ("objects/ab", "gc"),
        ("objects", "gc"),
        ("lock", "gc"),
        ("releases/lockbox", "stage"),
        ("releases", "stage"),
        ("keys", "stage"),
        ("objects/ab", "stage"),
        ("tmp", "verify"),
    ],
)
def test_a_symlink_in_the_store_is_refused_and_nothing_outside_is_touched(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, link: str, action: str
) -> None:
    _stage(store, private_key, tmp_path, 0)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ("ab" * 32)).write_bytes(b"the user's own file, named like an object")
    (outside / "notes.txt").write_bytes(b"the user's notes")
    before = _files(outside)
    target = store.root / link
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    target.symlink_to(outside if link != "lock" else outside / "lockfile")

    with pytest.raises(StoreError, match=f"{link} is a symbolic link") as err:
        opened = Store.open(store.root)
        if action == "gc":
            gc(opened)
        elif action == "verify":
            verify_store(opened, store.root.parent / "release.key.pub")
        else:
            _stage(opened, private_key, tmp_path, 1)
    assert "\n" not in str(err.value)
    assert _files(outside) == before
    assert sorted(p.name for p in outside.iterdir()) == ["ab" * 32, "notes.txt"]


def test_a_symlink_planted_after_open_is_refused_under_the_lock(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"x")
    opened = Store.open(store.root)
    shutil.rmtree(store.root / "tmp")
    (store.root / "tmp").symlink_to(outside)
    with pytest.raises(StoreError, match="tmp is a symbolic link"):
        gc(opened)
    assert (outside / "precious").read_bytes() == b"x"


# -- item 12: only verified releases count ------------------------------------------------------


@pytest.mark.parametrize("forger", ["zero signature", "planted key"])
def test_stage_takes_version_and_counter_only_from_verified_releases(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, forger: str
) -> None:
    _stage(store, private_key, tmp_path, 0, security_counter=3)
    signer = Ed25519PrivateKey.generate() if forger == "planted key" else None
    _forge(store, "1.1.0", (1 << 32) - 1, signer)
    _forge(store, "9.9.9", 7, signer)
    image = tmp_path / "fw-2.bin"
    image.write_bytes(SAMPLE.image(2))
    result = stage(
        store, image, private_key, StageOptions("lockbox", "1.2.0", chunker=SMALL_CHUNKS, now=NOW)
    )
    assert result.manifest.security_counter == 3
    assert [line.split(":")[0] for line in result.ignored] == ["lockbox@1.1.0", "lockbox@9.9.9"]
    from fwdist.releases import scan_releases  # new in issue 9: imported here so that the
    # other tests of this file can be run against the code before it

    scan = scan_releases(store, "lockbox", [private_key.public_key()])
    assert [m.version for m in scan.verified] == ["1.0.0", "1.2.0"]
    assert [m.security_counter for m in scan.verified] == [3, 3]


def test_an_honest_manifest_copied_under_another_version_does_not_count(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0, security_counter=2)
    replay = store.manifest_path("lockbox", "9.9.9")
    replay.write_bytes(store.get_manifest("lockbox", "1.0.0"))
    image = tmp_path / "fw-1.bin"
    image.write_bytes(SAMPLE.image(1))
    result = stage(store, image, private_key, StageOptions("lockbox", "1.1.0", now=NOW))
    assert result.ignored == ("lockbox@9.9.9: lockbox@9.9.9 holds the manifest of lockbox@1.0.0",)
    assert result.manifest.security_counter == 2


def test_a_delta_source_must_verify(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    _forge(store, "1.1.0", 0, None)
    before = _files(store.root)
    image = tmp_path / "fw-2.bin"
    image.write_bytes(SAMPLE.image(2))
    opts = StageOptions("lockbox", "1.2.0", sources=("1.1.0",), chunker=SMALL_CHUNKS, now=NOW)
    with pytest.raises(StagingError, match=r"delta source lockbox@1\.1\.0: manifest signature"):
        stage(store, image, private_key, opts)
    assert _files(store.root) == before


def test_releases_signed_by_a_rotated_key_count_when_trusted(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0, security_counter=5)
    new_key = Ed25519PrivateKey.generate()
    image = tmp_path / "fw-1.bin"
    image.write_bytes(SAMPLE.image(1))
    opts = StageOptions("lockbox", "1.1.0", sources=("1.0.0",), chunker=SMALL_CHUNKS, now=NOW)
    result = stage(store, image, new_key, opts, also_trust=[private_key.public_key()])
    assert result.manifest.security_counter == 5 and result.ignored == ()
    assert [d.source_version for d in result.manifest.deltas] == ["1.0.0"]


def test_a_planted_manifest_at_the_target_version_is_named_not_overwritten(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    _forge(store, "1.1.0", 0, None)
    planted = store.manifest_path("lockbox", "1.1.0").read_bytes()
    with pytest.raises(StagingError, match=r"lockbox@1\.1\.0 is already staged, by a manifest"):
        _stage(store, private_key, tmp_path, 1)
    assert store.manifest_path("lockbox", "1.1.0").read_bytes() == planted


# -- item 13: damaged leftovers under the names staging wants ---------------------------------


def test_stage_repairs_damaged_leftovers_of_delta_pieces_and_tables(
    tmp_path: Path, private_key: Ed25519PrivateKey
) -> None:
    """Stage 1.0.0 and 1.1.0 (delta) twice: the second store first gets junk under every
    name the 1.1.0 stage will want; staging must not take the junk for the real thing."""
    clean = Store.open(tmp_path / "clean", create=True)
    (tmp_path / "a").mkdir()
    _stage(clean, private_key, tmp_path / "a", 0)
    first = set(clean.object_ids())
    _stage(clean, private_key, tmp_path / "a", 1, sources=("1.0.0",))
    wanted = set(clean.object_ids()) - first
    assert len(wanted) >= 4  # new full pieces, delta pieces and both tables

    dirty = Store.open(tmp_path / "dirty", create=True)
    (tmp_path / "b").mkdir()
    _stage(dirty, private_key, tmp_path / "b", 0)
    for oid in wanted:
        dirty.put_frame(oid, compress(b"junk left by a crash " + oid, 3))
    _stage(dirty, private_key, tmp_path / "b", 1, sources=("1.0.0",))
    report = verify_store(dirty, tmp_path / "release.key.pub")
    assert report.problems == []
    assert {oid: dirty.get_frame(oid) for oid in wanted} == {
        oid: clean.get_frame(oid) for oid in wanted
    }


# -- item 15: bounded decompression -------------------------------------------------------------


def test_verify_refuses_an_object_that_declares_more_than_any_object_holds(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    zeros = b"\x00" * (2 << 20)  # 2 MiB: more than the 1 MiB any table or piece may hold
    oid = hashlib.sha256(zeros).digest()
    store.put_frame(oid, compress(zeros, 19))
    report = verify_store(store, tmp_path / "release.key.pub")
    assert report.problems == [f"object {oid.hex()} declares no size or more than {1 << 20} bytes"]


# -- item 16: stray entries ---------------------------------------------------------------------


STRAYS = {
    "objects/README": "file",
    "objects/ab/" + "cd" * 32: "file",
    "objects/ab/notes.txt": "file",
    "objects/zz": "dir",
    "tmp/a-directory": "dir",
    "releases/lockbox/1.5.0": "dir",
    "releases/README": "file",
    "releases/lockbox/notes.txt": "file",
    "releases/Not_A_Name!": "dir",
}


@pytest.mark.parametrize("stray", sorted(STRAYS))
def test_stray_entries_are_reported_and_left_alone(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, stray: str
) -> None:
    _stage(store, private_key, tmp_path, 0)
    path = store.root / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    if STRAYS[stray] == "dir":
        path.mkdir()
        (path / "inside").write_bytes(b"someone's file")
    else:
        path.write_bytes(b"someone's file")
    pub = tmp_path / "release.key.pub"

    report = verify_store(store, pub)
    assert report.problems == [f"{stray}: not part of an fwdist store; left alone"]
    collected = gc(store)
    assert collected.strays == (stray,) and collected.removed_objects == 0
    assert path.exists()
    _stage(store, private_key, tmp_path, 1)
    assert [v for _, v in store.releases("lockbox")] == ["1.0.0", "1.1.0"]


def test_an_empty_manifest_is_reported_and_stops_neither_stage_nor_verify(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    orphan = store.put_content(b"an orphan")
    store.manifest_path("lockbox", "1.5.0").write_bytes(b"")
    pub = tmp_path / "release.key.pub"
    assert verify_store(store, pub).problems == [
        "lockbox@1.5.0: manifest is not valid msgpack: ValueError"
    ]
    result = gc(store)
    # gc cannot tell which objects an unreadable manifest needs, so it removes none
    assert result.skipped == ("lockbox@1.5.0: manifest is not valid msgpack: ValueError",)
    assert (result.removed_objects, result.kept_objects) == (0, len(list(store.object_ids())))
    assert store.has(orphan)
    _stage(store, private_key, tmp_path, 1)
    assert store.manifest_path("lockbox", "1.5.0").read_bytes() == b""
    store.manifest_path("lockbox", "1.5.0").unlink()
    assert gc(store).removed_objects == 1 and not store.has(orphan)


def test_a_fifo_where_a_manifest_or_object_belongs_never_blocks(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    _stage(store, private_key, tmp_path, 0)
    os.mkfifo(store.manifest_path("lockbox", "1.5.0"))
    oid = hashlib.sha256(b"fifo").digest()
    store.object_path(oid).parent.mkdir(exist_ok=True)
    os.mkfifo(store.object_path(oid))
    fifos = [store.manifest_path("lockbox", "1.5.0"), store.object_path(oid)]
    with _unblocker(fifos) as unblocked:
        problems = verify_store(store, tmp_path / "release.key.pub").problems
        with pytest.raises(StoreError, match="not a regular file"):
            store.get_frame(oid)
        strays = gc(store).strays
    assert unblocked == []  # nothing ever waited on a FIFO
    assert problems == [
        f"objects/{oid.hex()[:2]}/{oid.hex()}: not part of an fwdist store; left alone",
        "releases/lockbox/1.5.0: not part of an fwdist store; left alone",
    ]
    assert strays == (f"objects/{oid.hex()[:2]}/{oid.hex()}", "releases/lockbox/1.5.0")


@contextlib.contextmanager
def _unblocker(fifos: list[Path]) -> Iterator[list[Path]]:
    """Open each FIFO's writing end whenever a reader waits on it, so that a reader that
    blocks is released (and recorded) instead of hanging the test run."""
    unblocked: list[Path] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for fifo in fifos:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: nobody is reading
                    continue
                os.close(fd)
                unblocked.append(fifo)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield unblocked
    finally:
        stop.set()
        thread.join()


def test_an_oversized_manifest_file_is_not_read_whole(store: Store) -> None:
    path = store.manifest_path("lockbox", "1.0.0")
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte on paper
    with pytest.raises(StoreError, match="larger than any manifest"):
        store.get_manifest("lockbox", "1.0.0")


# -- item 17: what --store names ------------------------------------------------------------------


def test_open_names_a_file_a_missing_store_and_a_damaged_one(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a store")
    with pytest.raises(StoreError, match="is not a directory"):
        Store.open(tmp_path / "file")
    with pytest.raises(StoreError, match="is not a directory"):
        Store.open(tmp_path / "file", create=True)
    assert (tmp_path / "file").read_bytes() == b"not a store"
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    Store.open(tmp_path / "s", create=True)
    (tmp_path / "s" / "tmp").rmdir()
    with pytest.raises(StoreError, match="tmp is missing"):
        Store.open(tmp_path / "s")


def test_a_store_that_cannot_be_written_is_one_clear_error(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage(store, private_key, tmp_path, 0)
    real_open = os.open

    def read_only(path: object, flags: int, *args: object, **kw: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    before = _files(store.root)
    monkeypatch.setattr(os, "open", read_only)
    for attempt in (lambda: gc(store), lambda: _stage(store, private_key, tmp_path, 1)):
        with pytest.raises(FwdistError, match=r"cannot lock store .*: Read-only file system"):
            attempt()
    monkeypatch.undo()
    assert _files(store.root) == before
