"""Manifests round-trip canonically, reject every flipped bit, and decode-or-raise on any input."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

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
