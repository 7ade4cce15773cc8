"""Sign-off on a store: thresholds on formats 1 and 2, offline signing, the next timestamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from fwdist import air, signoff, trust
from fwdist.errors import ManifestError
from fwdist.keys import Signer
from fwdist.sample import SampleFirmware
from fwdist.staging import StageOptions, stage
from fwdist.store import Store
from tests.trust_helpers import RELEASE_KEYS, ROOT_KEYS, T0, TIMESTAMP_KEY, root_v1

SAMPLE = SampleFirmware(size=32 * 1024, seed=5)


def staged(tmp_path: Path, version: str = "1.0.0", key: Signer | None = None,
           r: int = 0) -> Store:
    store = Store.open(tmp_path / "store", create=True)
    image = tmp_path / f"fw-{version}.bin"
    image.write_bytes(SAMPLE.image(r))
    stage(store, image, key, StageOptions("lockbox", version, now=T0),
          also_trust=[k.public_key() for k in RELEASE_KEYS])
    return store


def test_an_unsigned_stage_counts_once_two_of_three_signed(tmp_path: Path) -> None:
    store, root = staged(tmp_path), root_v1()
    assert store.get_air("lockbox", "1.0.0") is None
    status = signoff.release_status(store, root, "lockbox", "1.0.0")
    assert (status.have, status.need, status.have_air, status.released) == (0, 2, None, False)
    signoff.add_signature(store, "lockbox", "1.0.0", RELEASE_KEYS[0])
    status = signoff.release_status(store, root, "lockbox", "1.0.0")
    assert (status.have, status.have_air, status.released) == (1, 1, False)
    with pytest.raises(ManifestError) as e:
        signoff.require_released(store, root, "lockbox", "1.0.0")
    assert str(e.value) == ("lockbox@1.0.0 carries 1 of the 2 release signatures root 1 "
                            "requires; it is not released")
    signoff.add_signature(store, "lockbox", "1.0.0", RELEASE_KEYS[2])
    assert signoff.require_released(store, root, "lockbox", "1.0.0").have == 2
    keys, _ = trust.release_policy(root, "lockbox", "lockbox")
    bundle = store.get_air("lockbox", "1.0.0")
    assert bundle is not None
    for wire in air.decode_bundle(bundle):
        assert air.verify(wire, keys, threshold=2).version == "1.0.0"


def test_a_signer_cannot_count_twice(tmp_path: Path) -> None:
    store = staged(tmp_path)
    signoff.add_signature(store, "lockbox", "1.0.0", RELEASE_KEYS[1])
    before = (store.get_manifest("lockbox", "1.0.0"), store.get_air("lockbox", "1.0.0"))
    with pytest.raises(ManifestError, match="already carries a signature of that key"):
        signoff.add_signature(store, "lockbox", "1.0.0", RELEASE_KEYS[1])
    assert (store.get_manifest("lockbox", "1.0.0"), store.get_air("lockbox", "1.0.0")) == before


def test_a_key_outside_the_role_adds_nothing_that_counts(tmp_path: Path) -> None:
    store = staged(tmp_path)
    for outsider in (ROOT_KEYS[0], TIMESTAMP_KEY):
        signoff.add_signature(store, "lockbox", "1.0.0", outsider)
    status = signoff.release_status(store, root_v1(), "lockbox", "1.0.0")
    assert (status.have, status.have_air) == (0, 0)


def test_the_next_timestamp_names_only_released_and_keeps_revocations(tmp_path: Path) -> None:
    store, root = staged(tmp_path), root_v1()
    first = signoff.next_timestamp(store, root, now=T0, expires=T0 + 60)
    assert first == trust.Timestamp(1, T0, T0 + 60, (), ())
    for k in RELEASE_KEYS[:2]:
        signoff.add_signature(store, "lockbox", "1.0.0", k)
    store.put_timestamp(trust.sign(signoff.next_timestamp(store, root, now=T0, expires=T0 + 60),
                                   [TIMESTAMP_KEY]))
    # the clock going back does not take the signed time back
    second = signoff.next_timestamp(store, root, now=T0 - 500, expires=T0 + 90,
                                    revoke=[("lockbox", "1.0.0")])
    assert second == trust.Timestamp(2, T0, T0 + 90, (), (("lockbox", "1.0.0"),))
    store.put_timestamp(trust.sign(second, [TIMESTAMP_KEY]))
    third = signoff.next_timestamp(store, root, now=T0 + 5, expires=T0 + 95)
    assert third == trust.Timestamp(3, T0 + 5, T0 + 95, (), (("lockbox", "1.0.0"),))


def test_the_current_root_follows_the_chain_from_the_anchor(tmp_path: Path) -> None:
    store = staged(tmp_path)
    one = trust.sign(root_v1(), ROOT_KEYS[:2])
    two_meta = trust.next_root(root_v1(), releases=(trust.ReleaseRole(
        trust.Threshold.of(1, [RELEASE_KEYS[0].public_key()])),))
    two = trust.sign(two_meta, ROOT_KEYS[1:])
    store.put_root(one)
    store.put_root(two)
    root, wire = signoff.current_root(store, one)
    assert (root, wire) == (two_meta, two)
    assert signoff.release_status(store, root, "lockbox", "1.0.0").need == 1
