"""Format 2 manifests (fwdist.air): exact bytes, the 160-byte budget, signatures, strictness."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist import air
from fwdist.errors import ManifestError
from fwdist.manifest import SIGNING_CONTEXT as V1_CONTEXT
from fwdist.manifest import key_id
from fwdist.testing import make_releases

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY2 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}
BOTH = {**TRUSTED, key_id(KEY2.public_key()): KEY2.public_key()}
IMAGE_SHA = hashlib.sha256(b"new image").digest()
BASE_SHA = hashlib.sha256(b"old image").digest()
PIECE = hashlib.sha256(b"the delta").digest()[:24]

DELTA = air.AirManifest(
    product_id=air.product_id("lockbox"), hardware_id=air.hardware_id("lockbox", "lb-r2"),
    version="1.1.0", security_counter=3, created=1_700_000_000, image_size=262_144,
    image_sha256=IMAGE_SHA, encoder="bsdiff-lzma", pieces=1, size=284, decode_ram_kib=370,
    rows=(air.Row(PIECE, 284, 284),), source_id=BASE_SHA[:4])

# The layout of docs/wire-format.md ("Manifest format 2"), field by field.
DELTA_BODY = b"".join([
    bytes([2, 0]),  # format, flags
    air.product_id("lockbox"), air.hardware_id("lockbox", "lb-r2"),
    bytes([1, 1, 0]),  # version 1.1.0, three varints
    bytes([3]),  # security counter
    (1_700_000_000).to_bytes(4, "big"),  # created
    bytes([0x80, 0x80, 0x10]),  # image size 262144 as LEB128
    IMAGE_SHA,
    bytes([3]),  # encoder bsdiff-lzma
    BASE_SHA[:4],  # base image id
    bytes([0xF2, 0x02]),  # decoder RAM 370 KiB
    bytes([1]),  # one piece, inline:
    PIECE, (284).to_bytes(3, "big"),  # its SHA-256/192 and size
])


def test_single_piece_delta_is_the_documented_bytes_and_within_160() -> None:
    assert air.encode_body(DELTA) == DELTA_BODY
    assert len(DELTA_BODY) == 88
    wire = air.sign(DELTA, [KEY])
    assert len(wire) == 88 + 66 == 154
    assert wire[88] == 1 and wire[89] == key_id(KEY.public_key())[0]
    assert air.verify(wire, TRUSTED) == DELTA


def test_ids_are_stable() -> None:
    # boxes in the field compare these with their own: changing them strands every box
    assert air.product_id("lockbox").hex() == hashlib.sha256(
        b"fwdist product\x00lockbox").hexdigest()[:8]
    assert air.hardware_id("lockbox", "lb-r2") != air.hardware_id("other", "lb-r2")
    assert air.ENCODER_IDS == {"zstd-pieces": 0, "zstd-dict": 1, "bsdiff-zstd": 2,
                               "bsdiff-lzma": 3, "bsdiff3-lzma": 4, "bsdiff3-heatshrink": 5,
                               "bsdiff-lzma+thumb2": 6, "bsdiff-zstd+thumb2": 7,
                               "bsdiff3-lzma+thumb2": 8, "bsdiff3-heatshrink+thumb2": 9}


def test_colliding_product_ids_are_refused() -> None:
    assert air.product_id("p11969") == air.product_id("p44711")
    air.check_ids_distinct(["p11969", "p11969", "lockbox"])
    with pytest.raises(ManifestError, match="share the 4-byte product id 15da9987"):
        air.check_ids_distinct(["lockbox", "p11969", "p44711"])


def test_optional_fields_cost_only_when_present() -> None:
    m = replace(DELTA, expires=1_800_000_000, min_battery=30, required=True)
    body = air.encode_body(m)
    assert len(body) == 88 + 4 + 1
    assert body[1] == air.Flag.REQUIRED | air.Flag.EXPIRES | air.Flag.MIN_BATTERY
    assert air.decode(air.sign(m, [KEY])).manifest == m


def test_unknown_encoder_ids_decode_as_such() -> None:
    m = replace(DELTA, encoder="#77")
    assert air.encode_body(m)[53] == 77
    assert air.decode(air.sign(m, [KEY])).manifest.encoder == "#77"
    with pytest.raises(ManifestError, match="no format 2 id"):
        air.encode_body(replace(DELTA, encoder="#3"))  # that one has a name


@pytest.mark.parametrize("cut, why", [
    (lambda b: b[:1] + bytes([0x10]) + b[2:], "unknown flags"),
    (lambda b: b[:10] + bytes([0x81, 0x00]) + b[11:], "shortest form"),  # major 1 as 2 bytes
    (lambda b: bytes([1]) + b[1:], "not a format 2"),
    (lambda b: b[:1] + bytes([4]) + b[2:18] + bytes([0]) + b[18:], "minimum battery of 0"),
    (lambda b: b[:-28] + bytes([2]) + b[-27:], "truncated"),  # two pieces, one row
    (lambda b: b[:-3] + bytes(3), "piece size out of range"),
])
def test_malformed_bodies_are_refused(cut: object, why: str) -> None:
    body = cut(DELTA_BODY)  # type: ignore[operator]
    with pytest.raises(ManifestError, match=why):  # (each fails before any signature is read)
        air.decode(body)


def test_signatures_name_their_key_and_count() -> None:
    wire = air.sign(DELTA, [KEY])
    other = {key_id(KEY2.public_key()): KEY2.public_key()}
    with pytest.raises(ManifestError, match="no key this box trusts"):
        air.verify(wire, other)
    with pytest.raises(ManifestError, match="does not verify"):
        air.verify(wire, TRUSTED, threshold=2)
    both = air.sign(DELTA, [KEY, KEY2])
    assert len(both) == 88 + 1 + 2 * 65
    assert air.verify(both, BOTH, threshold=2) == DELTA
    assert air.signers(air.decode(both), BOTH) == set(BOTH)
    sa = air.decode(both)
    twice = sa.body + bytes([2]) + 2 * (bytes([sa.signatures[0].hint]) + sa.signatures[0].signature)
    with pytest.raises(ManifestError, match="ascending order, or repeat"):
        air.decode(twice)
    with pytest.raises(ManifestError, match=r"1\.\.8 signatures"):
        air.decode(sa.body + bytes([0]))


def test_a_format_1_signature_never_verifies_format_2() -> None:
    sig = KEY.sign(V1_CONTEXT + DELTA_BODY)
    wire = DELTA_BODY + bytes([1, key_id(KEY.public_key())[0]]) + sig
    with pytest.raises(ManifestError, match="does not verify"):
        air.verify(wire, TRUSTED)


def test_a_release_becomes_one_manifest_per_payload(tmp_path: Path) -> None:
    rel = make_releases(tmp_path, count=2, size=16 * 1024).releases[1]
    m = rel.manifest
    tables = {ref: p.table for ref, p in rel.payloads.items()}
    base = make_releases(tmp_path / "b", count=1, size=16 * 1024).releases[0].image
    got = air.payloads_for(m, tables, hashlib.sha256(base).digest())
    assert [p.manifest.encoder for p in got] == [m.deltas[0].encoder, "zstd-pieces"]
    for p, ref in zip(got, (m.deltas[0], m.full), strict=True):
        a, table = p.manifest, tables[ref.table_sha256]
        assert a.pieces == len(table.pieces) == ref.pieces
        assert a.size == ref.size and a.image_sha256 == m.image_sha256
        assert a.product_id == air.product_id("lockbox")
        assert a.hardware_id == air.hardware_id("lockbox", "lb-r2")
        rows = a.rows or air.decode_table(p.table, a)
        assert [r.id for r in rows] == [e.id[:24] for e in table.pieces]
        assert a.applies_to(hashlib.sha256(base).digest())
        inline = a.pieces <= air.INLINE_PIECES
        assert (p.table == b"") == inline
        width = air.row_width(a.compressed)
        fixed = len(air.encode_body(replace(a, rows=a.rows[:1], pieces=1, table_id=None,
                                            size=a.rows[0].wire_size))) if inline else None
        if inline:  # each piece past the first costs one row: at most 30 bytes
            assert fixed is not None
            assert p.overhead_bytes == fixed + 66 + (a.pieces - 1) * width
    # a box on an image no delta starts from gets the full payload only
    assert [p.manifest.encoder for p in air.payloads_for(m, tables, bytes(32))] == ["zstd-pieces"]


def test_every_delta_encoder_has_its_own_format_2_id() -> None:
    from fwdist import delta

    assert {name: air.encoder_id(name) for name in delta.ENCODERS} == {
        "zstd-dict": 1, "bsdiff-zstd": 2, "bsdiff-lzma": 3, "bsdiff3-lzma": 4,
        "bsdiff3-heatshrink": 5, "bsdiff-lzma+thumb2": 6, "bsdiff-zstd+thumb2": 7,
        "bsdiff3-lzma+thumb2": 8, "bsdiff3-heatshrink+thumb2": 9,
    }
    assert air.encoder_id(air.FULL_ENCODER) == 0
