"""Manifest encoding, signing and strict decoding."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fwdist.errors import ManifestError
from fwdist.manifest import (
    FORMAT,
    Manifest,
    PayloadRef,
    PieceEntry,
    PieceTable,
    Version,
    decode,
    decode_table,
    encode_body,
    key_id,
    sign,
    verify,
)

H = hashlib.sha256


def example() -> Manifest:
    return Manifest(
        product="lockbox",
        hardware="lb-rev4",
        version="2.1.0",
        security_counter=3,
        image_size=265_168,
        image_sha256=H(b"image").digest(),
        full=PayloadRef("zstd-pieces", 108_000, 17, H(b"full table").digest(), 65536),
        deltas=(
            PayloadRef(
                "zstd-dict",
                42_300,
                3,
                H(b"delta table").digest(),
                600_000,
                "2.0.0",
                H(b"old image").digest(),
            ),
        ),
        required=True,
        min_battery=30,
        min_app="5.2.0",
        created=1_700_000_000,
        expires=1_700_000_000 + 90 * 86400,
    )


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_sign_verify_round_trip(key: Ed25519PrivateKey) -> None:
    wire = sign(example(), key)
    assert verify(wire, {key_id(key.public_key()): key.public_key()}) == example()


def test_manifest_is_small_enough_for_the_air(key: Ed25519PrivateKey) -> None:
    """The exact size a box on 2.0.0 receives for this manifest; a growing format shows here."""
    assert len(sign(example(), key)) == 340


def test_signature_is_deterministic(key: Ed25519PrivateKey) -> None:
    assert sign(example(), key) == sign(example(), key)


def test_unknown_key_is_rejected(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(ManifestError, match="unknown key"):
        verify(sign(example(), key), {key_id(other.public_key()): other.public_key()})


def test_signature_from_a_different_key_with_the_same_id_is_rejected(
    key: Ed25519PrivateKey,
) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(ManifestError, match="does not verify"):
        verify(sign(example(), key), {key_id(key.public_key()): other.public_key()})


def test_unknown_format_is_rejected_with_its_number(key: Ed25519PrivateKey) -> None:
    _, body, kid, sig = msgpack.unpackb(sign(example(), key))
    with pytest.raises(ManifestError, match="unknown manifest format 2"):
        decode(msgpack.packb([FORMAT + 1, body, kid, sig]))


def test_unknown_field_is_rejected(key: Ed25519PrivateKey) -> None:
    body = msgpack.unpackb(encode_body(example()), strict_map_key=False)
    body[99] = 1
    wire = msgpack.packb([FORMAT, msgpack.packb(body), b"k" * 8, b"s" * 64])
    with pytest.raises(ManifestError, match="unknown fields"):
        decode(wire)


def test_non_canonical_body_is_rejected() -> None:
    body = msgpack.unpackb(encode_body(example()), strict_map_key=False)
    reordered = dict(reversed(list(body.items())))
    wire = msgpack.packb([FORMAT, msgpack.packb(reordered), b"k" * 8, b"s" * 64])
    with pytest.raises(ManifestError, match="canonical"):
        decode(wire)


def test_oversized_manifest_is_rejected_before_parsing() -> None:
    with pytest.raises(ManifestError, match="over the"):
        decode(b"\x00" * 20_000)


@pytest.mark.parametrize(
    "change",
    [
        {"product": "bad name!"},
        {"version": "1.2"},
        {"min_battery": 101},
        {"image_size": 0},
        {"image_sha256": b"short"},
        {"security_counter": -1},
        {"expires": 1},
    ],
)
def test_invalid_fields_are_refused_at_signing(
    key: Ed25519PrivateKey, change: dict[str, object]
) -> None:
    with pytest.raises(ManifestError):
        sign(dataclasses.replace(example(), **change), key)  # type: ignore[arg-type]


def test_payload_for_picks_the_delta_of_the_running_image() -> None:
    m = example()
    assert m.payload_for(H(b"old image").digest()) is m.deltas[0]
    assert m.payload_for(H(b"something else").digest()) is m.full
    assert m.delta_from("2.0.0") is m.deltas[0]
    assert m.delta_from("1.0.0") is None


def test_versions_order_numerically() -> None:
    assert Version.parse("1.10.0") > Version.parse("1.9.9")
    for bad in ("1.2", "01.2.3", "1.2.3-rc1", "a.b.c", ""):
        with pytest.raises(ManifestError):
            Version.parse(bad)


def test_piece_table_round_trip_and_exact_size() -> None:
    table = PieceTable(
        True, tuple(PieceEntry(H(bytes([i])).digest(), 16384, 9000 + i) for i in range(3))
    )
    data = table.encode()
    assert len(data) == 127
    assert decode_table(data, table.sha256) == table
    assert table.wire_size == 27003 and table.content_size == 49152


def test_piece_table_hash_mismatch_is_rejected() -> None:
    table = PieceTable(False, (PieceEntry(H(b"x").digest(), 10, 10),))
    with pytest.raises(ManifestError, match="does not match"):
        decode_table(table.encode(), H(b"other").digest())


def test_piece_table_rejects_bad_rows() -> None:
    for rows in ([[b"x" * 31, 5]], [[b"x" * 32, 0]], [[b"x" * 32, 5, 6]], [["s", 1]]):
        with pytest.raises(ManifestError):
            decode_table(msgpack.packb([FORMAT, False, rows]))
