"""Release manifests signed by a threshold: format 1's signature list and ``add_signature`` on
both formats, so signers sign offline one after another."""

from __future__ import annotations

import hashlib

import pytest

from fwdist import air, manifest
from fwdist.errors import ManifestError
from fwdist.manifest import Manifest, PayloadRef, key_id
from tests.trust_helpers import RELEASE_KEYS, ROOT_KEYS, threshold
from tests.unit.test_air import DELTA

RELEASE = Manifest(
    product="lockbox", hardware="lb-r2", version="1.1.0", security_counter=3, image_size=4096,
    image_sha256=hashlib.sha256(b"image").digest(),
    full=PayloadRef("zstd-pieces", 100, 1, hashlib.sha256(b"table").digest()), created=1)
SIGNERS = threshold(2, RELEASE_KEYS).trusted()


def test_one_signature_keeps_the_four_element_envelope() -> None:
    one = manifest.sign(RELEASE, RELEASE_KEYS[0])
    assert one == manifest.sign_all(RELEASE, [RELEASE_KEYS[0]])
    assert one[0] == 0x94  # fixarray of 4: the bytes every earlier release has
    sm = manifest.decode(one)
    assert (sm.key_id, len(sm.signatures)) == (key_id(RELEASE_KEYS[0].public_key()), 1)


def test_format1_signers_add_signatures_one_by_one() -> None:
    draft = manifest.sign_all(RELEASE, [])
    assert draft[0] == 0x93 and manifest.decode(draft).signatures == ()
    with pytest.raises(ManifestError, match=r"unknown key \(none: an unsigned draft\)"):
        manifest.verify(draft, SIGNERS, threshold=2)
    one = manifest.add_signature(draft, RELEASE_KEYS[2])
    with pytest.raises(ManifestError, match="has 1 of the 2 signatures it needs"):
        manifest.verify(one, SIGNERS, threshold=2)
    two = manifest.add_signature(one, RELEASE_KEYS[0])
    assert two == manifest.sign_all(RELEASE, [RELEASE_KEYS[0], RELEASE_KEYS[2]])
    assert two[0] == 0x93 and len(manifest.decode(two).signatures) == 2
    assert manifest.verify(two, SIGNERS, threshold=2) == RELEASE
    with pytest.raises(ManifestError, match="already carries a signature of that key"):
        manifest.add_signature(two, RELEASE_KEYS[0])


def test_format1_a_signature_list_of_one_is_not_canonical() -> None:
    one = manifest.decode(manifest.sign(RELEASE, RELEASE_KEYS[0]))
    listed = manifest._pack([manifest.FORMAT, one.body, [list(one.signatures[0])]])
    with pytest.raises(ManifestError, match="not in canonical form"):
        manifest.decode(listed)


def test_format1_a_leaked_key_below_the_threshold_signs_nothing_accepted() -> None:
    leaked_and_stranger = manifest.sign_all(RELEASE, [RELEASE_KEYS[1], ROOT_KEYS[0]])
    with pytest.raises(ManifestError, match="has 1 of the 2"):
        manifest.verify(leaked_and_stranger, SIGNERS, threshold=2)


def test_format2_signers_add_signatures_one_by_one() -> None:
    one = air.sign(DELTA, [RELEASE_KEYS[1]])
    with pytest.raises(ManifestError, match="does not verify"):
        air.verify(one, SIGNERS, threshold=2)
    two = air.add_signature(one, RELEASE_KEYS[0])
    assert two == air.sign(DELTA, [RELEASE_KEYS[0], RELEASE_KEYS[1]])
    assert len(two) == len(one) + 65
    assert air.verify(two, SIGNERS, threshold=2) == DELTA
    with pytest.raises(ManifestError, match="already carries a signature of that key"):
        air.add_signature(two, RELEASE_KEYS[1])
