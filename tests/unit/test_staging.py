"""Staging, planning, verifying and collecting garbage, through the library API."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import delta
from fwdist.chunker import ChunkerParams
from fwdist.errors import StagingError, StoreError
from fwdist.releases import (
    gc,
    load_manifest,
    load_table,
    plan,
    release_image,
    verify_store,
)
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store

StageSample = Callable[..., list[Path]]

SMALL_CHUNKS = ChunkerParams(min_size=1024, avg_size=4096, max_size=16384)


def test_stage_two_releases_and_plan(
    store: Store,
    private_key: Ed25519PrivateKey,
    sample: SampleFirmware,
    stage_sample: StageSample,
    tmp_path: Path,
) -> None:
    images = stage_sample(store, private_key, sample, tmp_path)
    new = images[1].read_bytes()
    m = load_manifest(store, "lockbox", "1.1.0")
    assert m.image_size == len(new) == 65536
    assert m.image_sha256 == hashlib.sha256(new).digest()
    assert release_image(store, m) == new
    assert [d.source_version for d in m.deltas] == ["1.0.0"]
    assert m.deltas[0].encoder in delta.ENCODERS
    p = plan(store, "lockbox", "1.0.0", "1.1.0")
    assert p.air_bytes == p.manifest_bytes + p.table_bytes + p.payload_bytes
    assert p.payload_bytes == m.deltas[0].size
    # issue 11: one inline row replaces the table and the msgpack manifest of every payload
    assert p.pieces == 1 and p.format2_overhead_bytes == 87 + 66 <= 160 < p.overhead_bytes
    full = plan(store, "lockbox", "0.9.0", "1.1.0")
    assert full.encoder == "zstd-pieces" and full.payload_bytes == m.full.size
    assert p.air_bytes * 2 < full.air_bytes < len(new)
    assert verify_store(store, tmp_path / "release.key.pub").ok


def test_second_release_reuses_unchanged_pieces(
    store: Store,
    private_key: Ed25519PrivateKey,
    sample: SampleFirmware,
    stage_sample: StageSample,
    tmp_path: Path,
) -> None:
    stage_sample(store, private_key, sample, tmp_path)
    old = load_table(store, load_manifest(store, "lockbox", "1.0.0").full)
    new = load_table(store, load_manifest(store, "lockbox", "1.1.0").full)
    shared = {e.id for e in old.pieces} & {e.id for e in new.pieces}
    assert 0 < len(shared) < len(new.pieces)


def test_stage_is_deterministic(
    tmp_path: Path,
    private_key: Ed25519PrivateKey,
    sample: SampleFirmware,
    stage_sample: StageSample,
) -> None:
    a = Store.open(tmp_path / "a", create=True)
    b = Store.open(tmp_path / "b", create=True)
    (tmp_path / "ia").mkdir()
    (tmp_path / "ib").mkdir()
    stage_sample(a, private_key, sample, tmp_path / "ia")
    stage_sample(b, private_key, sample, tmp_path / "ib")
    assert a.get_manifest("lockbox", "1.1.0") == b.get_manifest("lockbox", "1.1.0")


def _image(tmp_path: Path, data: bytes, name: str = "img.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (StageOptions("lockbox", "1.0.0"), "not newer"),
        (StageOptions("lockbox", "0.9.0"), "not newer"),
        (StageOptions("lockbox", "2.0.0", security_counter=-1), "must be 0..4294967295"),
        (StageOptions("lockbox", "2.0.0", security_counter=1 << 32), "must be 0..4294967295"),
        (StageOptions("lockbox", "2.0.0", expires_days=0), "--expires must be from 0.042"),
        (StageOptions("lockbox", "2.0.0", expires_days=1e-9), "--expires must be from 0.042"),
        (StageOptions("lockbox", "2.0.0", expires_days=3651), "to 3650 days"),
        (StageOptions("lockbox", "2.0.0", expires_days=float("inf")), "to 3650 days"),
        (StageOptions("lockbox", "2.0.0", expires_days=float("nan")), "got nan"),
        (StageOptions("lockbox", "2.0.0", level=23), "--level must be 1..22"),
        (StageOptions("lockbox", "2.0.0", delta_piece_size=2 << 20), "delta piece size"),
        (StageOptions("lockbox", "2.0.0", sources=("0.5.0",)), "no release lockbox@0.5.0"),
        (StageOptions("lockbox", "2.0.0", hardware="other-board"), "hardware"),
        (StageOptions("lockbox", "2.0.0", min_battery=120), "min-battery"),
    ],
)
def test_user_errors_leave_the_store_as_it_was(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, opts: StageOptions, message: str
) -> None:
    stage(store, _image(tmp_path, b"v1" * 5000), private_key, StageOptions("lockbox", "1.0.0"))
    before = sorted(p for p in store.root.rglob("*") if p.name != "lock")
    with pytest.raises((StagingError, StoreError), match=message):
        stage(store, _image(tmp_path, b"v2" * 5000, "new.bin"), private_key, opts)
    assert sorted(p for p in store.root.rglob("*") if p.name != "lock") == before


def test_the_security_counter_never_goes_down(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    opts = StageOptions("lockbox", "1.0.0", security_counter=5)
    stage(store, _image(tmp_path, b"v1" * 5000), private_key, opts)
    with pytest.raises(StagingError, match="security counter 4 is lower than 5"):
        stage(
            store,
            _image(tmp_path, b"v2" * 5000, "new.bin"),
            private_key,
            StageOptions("lockbox", "1.1.0", security_counter=4),
        )
    image = _image(tmp_path, b"v3" * 5000, "v3.bin")
    result = stage(store, image, private_key, StageOptions("lockbox", "1.2.0"))
    assert result.manifest.security_counter == 5


def test_empty_and_missing_images_are_refused(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(StagingError, match="empty"):
        stage(store, _image(tmp_path, b""), private_key, StageOptions("lockbox", "1.0.0"))
    with pytest.raises(StagingError, match="cannot read"):
        stage(store, tmp_path / "nope.bin", private_key, StageOptions("lockbox", "1.0.0"))
    assert store.releases() == [] and list(store.object_ids()) == []


def test_a_product_whose_4_byte_id_another_has_is_refused(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    image = _image(tmp_path, SampleFirmware(8 * 1024, seed=3).image(0))
    stage(store, image, private_key, StageOptions("p11969", "1.0.0"))
    objects = sorted(store.object_ids())
    with pytest.raises(StagingError) as refused:
        stage(store, image, private_key, StageOptions("p44711", "1.0.0"))
    assert str(refused.value) == ("products 'p11969' and 'p44711' share the 4-byte product id "
                                  "15da9987; rename one")
    assert store.releases() == [("p11969", "1.0.0")] and sorted(store.object_ids()) == objects
    stage(store, image, private_key, StageOptions("p11969", "1.0.1"))  # the same name is fine


def test_a_stage_killed_midway_leaves_no_visible_release(
    store: Store, private_key: Ed25519PrivateKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Die at the 5th object write: nothing half-written is visible; the undo removes the rest."""
    image = _image(tmp_path, SampleFirmware(64 * 1024, seed=9).image(0))
    calls = 0
    real = Store.put_frame

    def dying(self: Store, oid: bytes, frame: bytes, durable: bool = True) -> bool:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return real(self, oid, frame, durable)

    monkeypatch.setattr(Store, "put_frame", dying)
    with pytest.raises(KeyboardInterrupt):
        stage(store, image, private_key, StageOptions("lockbox", "1.0.0", chunker=SMALL_CHUNKS))
    assert store.releases() == []
    assert list(store.object_ids()) == []
    assert list((store.root / "tmp").iterdir()) == []


def test_verify_names_a_damaged_piece_and_gc_keeps_live_objects(
    store: Store,
    private_key: Ed25519PrivateKey,
    sample: SampleFirmware,
    stage_sample: StageSample,
    tmp_path: Path,
) -> None:
    stage_sample(store, private_key, sample, tmp_path)
    orphan = store.put_content(b"orphan")
    report = gc(store)
    assert report.removed_objects == 1 and not store.has(orphan)
    assert verify_store(store, tmp_path / "release.key.pub").ok
    victim = load_table(store, load_manifest(store, "lockbox", "1.1.0").full).pieces[2].id
    path = store.object_path(victim)
    frame = bytearray(path.read_bytes())
    frame[-1] ^= 0xFF
    path.write_bytes(bytes(frame))
    report_bad = verify_store(store, tmp_path / "release.key.pub")
    assert not report_bad.ok
    assert any(victim.hex() in p for p in report_bad.problems)


def test_verify_with_the_wrong_public_key_fails(
    store: Store,
    private_key: Ed25519PrivateKey,
    sample: SampleFirmware,
    stage_sample: StageSample,
    tmp_path: Path,
) -> None:
    from fwdist import keys

    stage_sample(store, private_key, sample, tmp_path, releases=1)
    _, other_pub = keys.generate(tmp_path / "other.key")
    report = verify_store(store, other_pub)
    assert report.problems == [
        "lockbox@1.0.0: manifest is signed by unknown key " + load_key_id(store)
    ]


def load_key_id(store: Store) -> str:
    return store.key_files()[0].stem
