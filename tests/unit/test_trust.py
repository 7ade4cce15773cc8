"""Roots and timestamps: thresholds, the rotation rule, replay and expiry, scoped release roles."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from fwdist import trust
from fwdist.errors import StoreError, TrustError
from fwdist.store import Store
from tests.trust_helpers import (
    EXPIRES,
    RELEASE_KEYS,
    ROOT_KEYS,
    T0,
    TIMESTAMP_KEY,
    key,
    root_v1,
    threshold,
    timestamp,
)

NEW_ROOT_KEY = key("root3")


def root_v2() -> trust.Root:
    """Root 2 replaces root key 2 by a new one."""
    return trust.next_root(root_v1(), root=threshold(2, [*ROOT_KEYS[:2], NEW_ROOT_KEY]))


def test_a_2_of_3_root_is_a_few_hundred_bytes_and_deterministic() -> None:
    wire = trust.sign(root_v1(), ROOT_KEYS[:2])
    assert len(wire) == 423
    assert hashlib.sha256(wire).hexdigest()[:16] == "ad36047c898345fd"
    assert trust.decode_root(wire).root == root_v1()


def test_a_root_needs_a_threshold_of_its_own_root_keys() -> None:
    with pytest.raises(TrustError, match="1 of the 2 signatures"):
        trust.verify_root(trust.sign(root_v1(), ROOT_KEYS[:1]))
    with pytest.raises(TrustError, match="1 of the 2 signatures"):  # a release key is no root key
        trust.verify_root(trust.sign(root_v1(), [ROOT_KEYS[0], RELEASE_KEYS[0]]))
    assert trust.verify_root(trust.sign(root_v1(), ROOT_KEYS[1:])) == root_v1()


def test_signers_add_signatures_one_by_one_offline() -> None:
    draft = trust.sign(root_v1())
    with pytest.raises(TrustError, match="0 of the 2"):
        trust.verify_root(draft)
    one = trust.add_signature(draft, ROOT_KEYS[2])
    two = trust.add_signature(one, ROOT_KEYS[0])
    assert two == trust.sign(root_v1(), [ROOT_KEYS[0], ROOT_KEYS[2]])
    with pytest.raises(TrustError, match="already carries a signature of that key"):
        trust.add_signature(two, ROOT_KEYS[0])


def test_a_forged_signature_does_not_count() -> None:
    s = trust.decode_root(trust.sign(root_v1(), ROOT_KEYS[:2]))
    kid = s.signatures[0][0]
    forged = replace(s, signatures=((kid, bytes(64)), s.signatures[1])).wire
    with pytest.raises(TrustError, match="1 of the 2"):
        trust.verify_root(forged)


def test_the_chain_moves_a_root_forward_link_by_link() -> None:
    links = [trust.sign(root_v1(), ROOT_KEYS[:2]),
             trust.sign(root_v2(), [ROOT_KEYS[0], ROOT_KEYS[1], NEW_ROOT_KEY])]
    v3 = trust.next_root(root_v2())
    links.append(trust.sign(v3, [ROOT_KEYS[1], NEW_ROOT_KEY]))
    assert trust.verify_chain(root_v1(), links) == (root_v2(), v3)
    assert trust.verify_chain(v3, links) == ()


@pytest.mark.parametrize(("signers", "error"), [
    ([ROOT_KEYS[0], NEW_ROOT_KEY], "root 2 by root 1's keys: 1 of the 2"),
    ([ROOT_KEYS[0], ROOT_KEYS[2]], "root 2 by its own keys: 1 of the 2"),
    ([ROOT_KEYS[0]], "root 2 by root 1's keys: 1 of the 2"),
])
def test_a_link_needs_a_threshold_of_the_old_and_of_the_new_root(
        signers: list[object], error: str) -> None:
    with pytest.raises(TrustError, match=error):
        trust.verify_chain(root_v1(), [trust.sign(root_v2(), signers)])  # type: ignore[arg-type]


def test_a_chain_with_a_missing_link_is_refused() -> None:
    v3 = trust.next_root(root_v2())
    with pytest.raises(TrustError, match="skips from version 1 to 3"):
        trust.verify_chain(root_v1(), [trust.sign(v3, [ROOT_KEYS[1], NEW_ROOT_KEY])])


def test_an_expired_last_root_is_refused_but_an_expired_middle_one_is_passed() -> None:
    old = replace(root_v2(), expires=T0)
    v3 = trust.next_root(old, expires=EXPIRES)
    links = [trust.sign(old, [ROOT_KEYS[0], ROOT_KEYS[1]]),
             trust.sign(v3, [ROOT_KEYS[1], NEW_ROOT_KEY])]
    assert [r.version for r in trust.verify_chain(root_v1(), links, now=T0 + 1)] == [2, 3]
    with pytest.raises(TrustError, match=f"root 2 expired at {T0}"):
        trust.verify_chain(root_v1(), links[:1], now=T0)


def test_a_legacy_single_key_box_rotates_to_a_real_root() -> None:
    legacy_key = key("legacy")
    legacy = trust.legacy_root(legacy_key.public_key())
    assert (legacy.version, legacy.expires) == (0, trust.NEVER)
    link = trust.sign(root_v1(), [legacy_key, *ROOT_KEYS[:2]])
    assert trust.verify_chain(legacy, [link]) == (root_v1(),)
    with pytest.raises(TrustError, match="by root 0's keys: 0 of the 1"):
        trust.verify_chain(legacy, [trust.sign(root_v1(), ROOT_KEYS[:2])])


def test_a_timestamp_must_be_newer_unexpired_and_signed_by_the_timestamp_role() -> None:
    root = root_v1()
    first = trust.verify_timestamp(root, timestamp(5, T0))
    assert (first.version, first.time, first.expires) == (5, T0, T0 + 86_400)
    for old in (timestamp(5, T0 + 10), timestamp(4, T0 + 10), timestamp(6, T0 - 1)):
        with pytest.raises(TrustError, match="is not newer than 5"):
            trust.verify_timestamp(root, old, previous=first)
    with pytest.raises(TrustError, match=f"expired at {T0 + 86_400}"):
        trust.verify_timestamp(root, timestamp(6, T0), previous=first, now=T0 + 86_400)
    by_release_key = trust.sign(trust.Timestamp(6, T0, T0 + 9), [RELEASE_KEYS[0]])
    with pytest.raises(TrustError, match="0 of the 1"):
        trust.verify_timestamp(root, by_release_key)


def test_a_signature_under_another_context_does_not_verify() -> None:
    """A timestamp key's signature over a timestamp body, made with the root context."""
    ts = trust.Timestamp(1, T0, T0 + 9)
    body = trust.encode_body(ts)
    sig = TIMESTAMP_KEY.sign(trust.CONTEXTS[trust.Kind.ROOT] + body)
    kid = trust.key_id(TIMESTAMP_KEY.public_key())
    wire = trust.Signed(trust.Kind.TIMESTAMP, ts, body, ((kid, sig),)).wire
    with pytest.raises(TrustError, match="0 of the 1"):
        trust.verify_timestamp(root_v1(), wire)


def test_latest_and_revoked_are_looked_up_by_product() -> None:
    ts = trust.decode_timestamp(timestamp(1, T0, latest=(("door", "2.0.0"), ("lock", "1.3.0")),
                                          revoked=(("lock", "1.2.0"),))).timestamp
    assert (ts.latest_for("lock"), ts.latest_for("safe")) == ("1.3.0", None)
    assert (ts.is_revoked("lock", "1.2.0"), ts.is_revoked("door", "1.2.0")) == (True, False)


def test_the_most_specific_release_role_wins() -> None:
    a, b, c = (threshold(1, [RELEASE_KEYS[i]]) for i in range(3))
    root = replace(root_v1(), releases=(trust.ReleaseRole(a), trust.ReleaseRole(b, "lock"),
                                        trust.ReleaseRole(c, "lock", "rev-b")))
    trust.decode_root(trust.sign(root))  # a valid root
    ids = {name: next(iter(t.trusted())) for name, t in (("a", a), ("b", b), ("c", c))}
    assert next(iter(trust.release_policy(root, "door", "rev-b")[0])) == ids["a"]
    assert next(iter(trust.release_policy(root, "lock", "rev-a")[0])) == ids["b"]
    assert next(iter(trust.release_policy(root, "lock", "rev-b")[0])) == ids["c"]
    only_lock = replace(root, releases=(trust.ReleaseRole(b, "lock"),))
    with pytest.raises(TrustError, match="names no release signers for door/rev-b"):
        trust.release_policy(only_lock, "door", "rev-b")


@pytest.mark.parametrize(("change", "error"), [
    ({"root": trust.Threshold(3, ())}, "1..8 keys"),
    ({"root": trust.Threshold(0, (b"\x01" * 32,))}, "threshold of 1..their count"),
    ({"releases": ()}, "1..4 release roles"),
    ({"releases": (trust.ReleaseRole(threshold(1, RELEASE_KEYS), None, "rev-b"),)},
     "names its product too"),
    ({"version": 1 << 32}, "0..2"),
])
def test_a_bad_root_cannot_be_made(change: dict[str, object], error: str) -> None:
    with pytest.raises(TrustError, match=error):
        trust.sign(replace(root_v1(), **change))  # type: ignore[arg-type]


def test_the_store_keeps_the_chain_and_the_latest_timestamp(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", create=True)
    assert (store.root_versions(), store.root_chain(), store.get_timestamp()) == ([], [], None)
    one, two = trust.sign(root_v1(), ROOT_KEYS[:2]), trust.sign(root_v2(), ROOT_KEYS[:2])
    assert (store.put_root(two), store.put_root(one), store.put_root(one)) == (2, 1, 1)
    assert store.root_versions() == [1, 2]
    assert store.root_chain(after=1) == [two]
    with pytest.raises(StoreError, match="root 2 is already in the store, with other bytes"):
        store.put_root(trust.sign(root_v2(), [ROOT_KEYS[0], NEW_ROOT_KEY]))
    store.put_timestamp(timestamp(1, T0))
    store.put_timestamp(timestamp(2, T0 + 1))
    assert store.get_timestamp() == timestamp(2, T0 + 1)
    with pytest.raises(StoreError, match="not a timestamp"):
        store.put_timestamp(one)
    assert (tmp_path / "s" / "trust" / "root" / "2").read_bytes() == two
    (tmp_path / "s" / "trust" / "root" / "notes").write_text("x")
    (tmp_path / "s" / "trust" / "extra").write_text("x")
    assert Store.open(tmp_path / "s").strays() == ["trust/extra", "trust/root/notes"]
