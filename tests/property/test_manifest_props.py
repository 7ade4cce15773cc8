"""Manifests round-trip canonically, reject every flipped bit, and decode-or-raise on any input."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fwdist import air
from fwdist.errors import ManifestError
from fwdist.manifest import Manifest, PayloadRef, decode, decode_table, key_id, sign, verify

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TRUSTED = {key_id(KEY.public_key()): KEY.public_key()}

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
versions = st.tuples(*[st.integers(0, 10**6)] * 3).map(lambda t: ".".join(map(str, t)))
digests = st.binary(min_size=32, max_size=32)
sizes = st.integers(0, 2**40)


@st.composite
def payloads(draw: st.DrawFn, delta: bool) -> PayloadRef:
    return PayloadRef(
        encoder=draw(st.sampled_from(["zstd-pieces", "zstd-dict", "bsdiff-zstd"])),
        size=draw(sizes),
        pieces=draw(st.integers(0, 2**20)),
        table_sha256=draw(digests),
        decode_ram=draw(st.integers(0, 2**32 - 1)),
        source_version=draw(versions) if delta else None,
        source_sha256=draw(digests) if delta else None,
    )


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    created = draw(st.integers(0, 2**40))
    return Manifest(
        product=draw(names),
        hardware=draw(names),
        version=draw(versions),
        security_counter=draw(st.integers(0, 2**32 - 1)),
        image_size=draw(st.integers(1, 2**40)),
        image_sha256=draw(digests),
        full=draw(payloads(False)),
        deltas=tuple(draw(st.lists(payloads(True), max_size=4))),
        required=draw(st.booleans()),
        min_battery=draw(st.integers(0, 100)),
        min_app=draw(versions),
        created=created,
        expires=draw(st.none() | st.integers(created, 2**41)),
    )


@settings(max_examples=150)
@given(manifests())
def test_round_trip_is_canonical(m: Manifest) -> None:
    wire = sign(m, KEY)
    assert verify(wire, TRUSTED) == m
    assert sign(verify(wire, TRUSTED), KEY) == wire


@settings(max_examples=150)
@given(manifests(), st.data())
def test_any_flipped_bit_is_rejected(m: Manifest, data: st.DataObject) -> None:
    wire = bytearray(sign(m, KEY))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ManifestError):
        verify(bytes(wire), TRUSTED)


@settings(max_examples=400)
@given(st.binary(max_size=2048))
def test_decoder_parses_or_raises_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        decode(data)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_table_decoder_parses_or_raises_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        decode_table(data)


@settings(max_examples=100)
@given(manifests(), st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_manifests_are_rejected(m: Manifest, junk: bytes) -> None:
    wire = sign(m, KEY)
    for bad in (wire[:-1], wire + junk, wire[: len(wire) // 2]):
        with pytest.raises(ManifestError):
            decode(bad)
    assert hashlib.sha256(wire).digest() != hashlib.sha256(wire + junk).digest()


# --- format 2 (fwdist.air): the manifest as it crosses the air ---------------------------------

ids = st.binary(min_size=air.ID_BYTES, max_size=air.ID_BYTES)
short = st.binary(min_size=air.PIECE_HASH_BYTES, max_size=air.PIECE_HASH_BYTES)
piece_sizes = st.integers(1, air.MAX_PIECE_SIZE)


@st.composite
def air_manifests(draw: st.DrawFn) -> air.AirManifest:
    encoder = draw(st.sampled_from([*air.ENCODER_IDS, "#200"]))
    compressed = encoder == air.FULL_ENCODER
    pieces = draw(st.integers(1, 40))
    table_id = None
    rows: tuple[air.Row, ...] = ()
    if pieces <= air.INLINE_PIECES:
        sizes = draw(st.lists(piece_sizes, min_size=pieces, max_size=pieces))
        rows = tuple(
            air.Row(draw(short), n, draw(st.integers(1, air.MAX_PIECE_SIZE + 1024)) if compressed
                    else n) for n in sizes)
        size = sum(r.wire_size for r in rows)
    else:
        table_id = draw(short)
        size = draw(st.integers(1, 2**32 - 1))
    created = draw(st.integers(0, 2**32 - 1))
    return air.AirManifest(
        product_id=draw(ids), hardware_id=draw(ids), version=draw(versions),
        security_counter=draw(st.integers(0, 2**32 - 1)), created=created,
        image_size=draw(st.integers(1, 2**32 - 1)), image_sha256=draw(digests), encoder=encoder,
        pieces=pieces, size=size, decode_ram_kib=draw(st.integers(0, 2**32 - 1)), rows=rows,
        table_id=table_id,
        source_id=None if compressed else draw(st.binary(min_size=4, max_size=4)),
        required=draw(st.booleans()), min_battery=draw(st.integers(0, 100)),
        expires=draw(st.none() | st.integers(created, 2**32 - 1)),
    )


KEY2 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
BOTH = {**TRUSTED, key_id(KEY2.public_key()): KEY2.public_key()}


@settings(max_examples=200)
@given(air_manifests(), st.booleans())
def test_air_round_trip_is_canonical(m: air.AirManifest, two: bool) -> None:
    keys = [KEY, KEY2] if two else [KEY]
    wire = air.sign(m, keys)
    assert air.verify(wire, BOTH, threshold=len(keys)) == m
    assert air.sign(air.decode(wire).manifest, keys) == wire
    assert len(wire) == len(air.encode_body(m)) + air.signature_block_bytes(len(keys))


@settings(max_examples=200)
@given(air_manifests(), st.data())
def test_air_any_flipped_bit_is_rejected(m: air.AirManifest, data: st.DataObject) -> None:
    wire = bytearray(air.sign(m, [KEY]))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ManifestError):
        air.verify(bytes(wire), TRUSTED)


@settings(max_examples=500)
@given(st.binary(max_size=1024))
def test_air_decoder_parses_or_raises_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        sa = air.decode(data)
        assert sa.wire == data  # what decodes is the one encoding of what it decodes to
        assert air.encode_body(sa.manifest) == sa.body


@settings(max_examples=100)
@given(air_manifests(), st.binary(min_size=1, max_size=8))
def test_air_truncated_or_extended_manifests_are_rejected(m: air.AirManifest, junk: bytes) -> None:
    wire = air.sign(m, [KEY])
    for bad in (wire[:-1], wire + junk, wire[: len(wire) // 2]):
        with pytest.raises(ManifestError):
            air.decode(bad)
    assert air.decode_prefix(wire + junk)[1] == len(wire)


@settings(max_examples=100)
@given(st.lists(st.tuples(short, piece_sizes, piece_sizes), min_size=17, max_size=40),
       st.booleans(), st.data())
def test_air_table_round_trips_and_rejects_any_flipped_bit(
        raw: list[tuple[bytes, int, int]], compressed: bool, data: st.DataObject) -> None:
    rows = tuple(air.Row(h, n, w if compressed else n) for h, n, w in raw)
    table = air.encode_table(rows, compressed)
    m = air.AirManifest(
        product_id=b"prod", hardware_id=b"hard", version="1.0.0", security_counter=0, created=0,
        image_size=1, image_sha256=bytes(32),
        encoder=air.FULL_ENCODER if compressed else "bsdiff-lzma", pieces=len(rows),
        size=sum(r.wire_size for r in rows), decode_ram_kib=0, table_id=air.short_hash(table),
        source_id=None if compressed else b"base")
    assert air.decode_table(table, m) == rows
    assert len(table) == len(rows) * air.row_width(compressed)
    bad = bytearray(table)
    bit = data.draw(st.integers(0, len(bad) * 8 - 1))
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ManifestError):
        air.decode_table(bytes(bad), m)


@settings(max_examples=300)
@given(air_manifests(), st.data())
def test_air_edited_manifests_parse_canonically_or_raise(m: air.AirManifest,
                                                        data: st.DataObject) -> None:
    wire = air.sign(m, [KEY])
    start = data.draw(st.integers(0, len(wire)))
    end = data.draw(st.integers(start, min(len(wire), start + 8)))
    edited = wire[:start] + data.draw(st.binary(max_size=8)) + wire[end:]
    with contextlib.suppress(ManifestError):
        sa = air.decode(edited)
        assert sa.wire == edited
        assert air.encode_body(sa.manifest) == sa.body
