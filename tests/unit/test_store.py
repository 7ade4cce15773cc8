"""The content-addressed store: atomic objects, manifests, damage detection, undo on failure."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fwdist.errors import StoreError
from fwdist.store import Store, compress, decompress


def test_create_and_reopen(tmp_path: Path) -> None:
    Store.open(tmp_path / "s", create=True)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "fwdist-store",
        "keys",
        "objects",
        "releases",
        "tmp",
    ]
    Store.open(tmp_path / "s")


def test_open_refuses_a_non_store_and_a_non_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not an fwdist store"):
        Store.open(tmp_path)
    (tmp_path / "x").write_text("precious")
    with pytest.raises(StoreError, match="not empty"):
        Store.open(tmp_path, create=True)
    assert (tmp_path / "x").read_text() == "precious"


def test_objects_are_deduplicated_and_named_by_content(store: Store) -> None:
    oid = store.put_content(b"piece" * 1000)
    assert oid == hashlib.sha256(b"piece" * 1000).digest()
    assert store.put_content(b"piece" * 1000) == oid
    assert list(store.object_ids()) == [oid]
    assert store.get_content(oid) == b"piece" * 1000
    assert store.object_path(oid).relative_to(store.root).parts[:2] == ("objects", oid.hex()[:2])


def test_damaged_object_is_detected(store: Store) -> None:
    oid = store.put_content(b"a" * 100)
    store.object_path(oid).write_bytes(compress(b"b" * 100, 3))
    with pytest.raises(StoreError, match="damaged"):
        store.get_content(oid)


def test_missing_object_is_named(store: Store) -> None:
    with pytest.raises(StoreError, match="ab" * 32):
        store.get_frame(bytes.fromhex("ab" * 32))


def test_transaction_undoes_every_file_it_created(store: Store) -> None:
    kept = store.put_content(b"kept")
    with pytest.raises(RuntimeError), store.transaction():
        store.put_content(b"new 1")
        store.put_content(b"new 2")
        store.put_manifest("lockbox", "1.0.0", b"manifest")
        raise RuntimeError("killed")
    assert list(store.object_ids()) == [kept]
    assert store.releases() == []
    assert list((store.root / "tmp").iterdir()) == []


def test_full_disk_is_a_clear_error_and_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreError, match="no space left on device"):
        store.put_content(b"x" * 10)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(store.object_ids()) == []
    assert list((store.root / "tmp").iterdir()) == []


def test_manifest_cannot_be_overwritten(store: Store) -> None:
    store.put_manifest("lockbox", "1.0.0", b"one")
    with pytest.raises(StoreError, match="already staged"):
        store.put_manifest("lockbox", "1.0.0", b"two")
    assert store.get_manifest("lockbox", "1.0.0") == b"one"


def test_releases_sort_numerically(store: Store) -> None:
    for v in ("1.10.0", "1.9.0", "1.2.3"):
        store.put_manifest("lockbox", v, b"m")
    store.put_manifest("other", "0.1.0", b"m")
    assert store.releases("lockbox") == [
        ("lockbox", "1.2.3"),
        ("lockbox", "1.9.0"),
        ("lockbox", "1.10.0"),
    ]
    assert len(store.releases()) == 4


def test_decompress_refuses_bombs_and_garbage() -> None:
    frame = compress(b"\x00" * 100_000, 19)
    assert len(frame) < 100
    with pytest.raises(StoreError, match="more than"):
        decompress(frame, 1000)
    with pytest.raises(StoreError):
        decompress(b"not zstd", 1000)
    assert decompress(frame, 100_000) == b"\x00" * 100_000


def test_dedup_repairs_a_truncated_object_instead_of_trusting_it(store: Store) -> None:
    content = b"firmware piece " * 500
    oid = hashlib.sha256(content).digest()
    fresh = compress(content, 19)
    store.put_frame(oid, fresh[:10], durable=False)  # what a crash mid-write can leave
    assert store.reuse_frame(oid, fresh, len(content)) == fresh
    assert store.get_content(oid) == content
    assert store.reuse_frame(oid, compress(content, 3), len(content)) == fresh  # intact: kept
