"""The TUF/Uptane attack list against a lockbox provisioned with a 2-of-3 root.

Each attack leaves the box's state exactly as it was (the persistent state's bytes, so
version, counter, target, root and time at once), and the box says why in a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from fwdist import manifest, trust
from fwdist import protocol as p
from fwdist.lockbox import IdleStep, Lockbox, LockboxError
from fwdist.lockbox._update import RootLink
from fwdist.testing import Phone, Release, Releases, box_config
from tests.trust_helpers import (
    EXPIRES,
    RELEASE_KEYS,
    ROOT_KEYS,
    T0,
    key,
    root_v1,
    threshold,
    timestamp,
)

NOW = 0  # the box has no clock: only signed times move its lower bound
LEAKED = RELEASE_KEYS[0]
STRANGER = key("stranger")
ROOT1 = trust.sign(root_v1(), ROOT_KEYS[:2])


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 2, deltas=False)


def resign(r: Release, signers: list[object]) -> Release:
    """The same release signed by ``signers`` instead of the test key."""
    wire = manifest.sign_all(r.manifest, signers)  # type: ignore[arg-type]
    return replace(r, wire=wire, air=())


def boxed(rel: Releases, root: bytes = ROOT1) -> Lockbox:
    config = box_config(rel)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter, root=root)
    box = Lockbox(flash, config, {})
    box.boot(NOW)
    return box


def reason(box: Lockbox, r: Release) -> p.Reason | None:
    return box.judge(r.wire, NOW)


def good(r: Release) -> Release:
    return resign(r, RELEASE_KEYS[1:])


def unchanged(box: Lockbox) -> Callable[[], None]:
    before = (box.state_bytes(), box.trust_status())

    def check() -> None:
        assert (box.state_bytes(), box.trust_status()) == before

    return check


def test_a_provisioned_box_installs_a_release_two_of_three_signed(rel: Releases) -> None:
    box = boxed(rel)
    assert box.trust_status() == {"root_version": 1, "root_expires": EXPIRES, "time": 0,
                                  "timestamp_version": None, "latest": None, "revoked": [],
                                  "behind_latest": False, "windows": []}
    log = Phone([good(rel.releases[1])]).session(box, NOW)
    assert log.rejected is None
    assert box.idle(NOW) is IdleStep.BUILT and box.idle(NOW) is IdleStep.INSTALLED
    assert box.status()["running_version"] == rel.releases[1].version


@pytest.mark.parametrize(("attack", "signers", "why"), [
    ("arbitrary software", [STRANGER], p.Reason.UNKNOWN_KEY),
    ("one leaked key", [LEAKED], p.Reason.BAD_SIGNATURE),
    ("one leaked key and a stranger", [LEAKED, STRANGER], p.Reason.BAD_SIGNATURE),
    ("root keys are no release keys", ROOT_KEYS[:2], p.Reason.UNKNOWN_KEY),
])
def test_below_the_threshold_nothing_is_accepted(rel: Releases, attack: str,
                                                 signers: list[object], why: p.Reason) -> None:
    box = boxed(rel)
    same = unchanged(box)
    forged = resign(rel.releases[2], signers)
    assert reason(box, forged) is why, attack
    assert Phone([forged]).session(box, NOW).rejected is why
    same()


def test_rollback_is_refused(rel: Releases) -> None:
    box = boxed(rel)
    Phone([good(rel.releases[1])]).session(box, NOW)
    assert (box.idle(NOW), box.idle(NOW)) == (IdleStep.BUILT, IdleStep.INSTALLED)
    same = unchanged(box)
    assert reason(box, good(rel.releases[0])) is p.Reason.NOT_NEWER
    same()


def test_wrong_hardware_and_mix_and_match_are_refused(rel: Releases) -> None:
    box = boxed(rel)
    same = unchanged(box)
    other = replace(rel.releases[1].manifest, hardware="lb-r9")
    assert box.judge(manifest.sign_all(other, RELEASE_KEYS[1:]), NOW) is p.Reason.WRONG_HARDWARE
    scoped = trust.next_root(root_v1(), releases=(
        trust.ReleaseRole(threshold(1, [STRANGER]), "lockbox", "lb-r2"),
        trust.ReleaseRole(threshold(2, RELEASE_KEYS), "lockbox", "lb-r9")))
    link = trust.sign(scoped, ROOT_KEYS[:2])
    box2 = boxed(rel)
    assert box2.offer_root([link], NOW) is None
    # the 2-of-3 signers are scoped to other hardware: their release means nothing here
    assert box2.judge(good(rel.releases[1]).wire, NOW) is p.Reason.UNKNOWN_KEY
    # a timestamp signed by a key the root never named (another root's) is refused
    foreign = trust.sign(trust.Timestamp(1, T0, T0 + 9), [STRANGER])
    assert box.offer_timestamp(foreign, NOW) is p.Reason.BAD_TIMESTAMP
    same()


def test_a_chain_with_a_missing_or_badly_signed_link_changes_nothing(rel: Releases) -> None:
    box = boxed(rel)
    same = unchanged(box)
    v2 = trust.next_root(root_v1())
    v3 = trust.next_root(v2)
    assert box.offer_root([trust.sign(v3, ROOT_KEYS[:2])], NOW) is p.Reason.BAD_ROOT
    assert box.offer_root([trust.sign(v2, ROOT_KEYS[:1])], NOW) is p.Reason.BAD_ROOT
    # a good link followed by a bad one: nothing of the chain is taken
    chain = [trust.sign(v2, ROOT_KEYS[:2]), trust.sign(v3, [ROOT_KEYS[0], STRANGER])]
    assert box.offer_root(chain, NOW) is p.Reason.BAD_ROOT
    assert box.offer_root([b"\x94" + b"\x00" * 5000], NOW) is p.Reason.BAD_ROOT  # endless data
    same()


def test_an_expired_root_is_refused_and_a_box_whose_root_expired_takes_nothing(
        rel: Releases) -> None:
    box = boxed(rel)
    assert box.offer_timestamp(timestamp(1, T0), NOW) is None
    same = unchanged(box)
    stale = trust.next_root(root_v1(), expires=T0)
    assert box.offer_root([trust.sign(stale, ROOT_KEYS[:2])], NOW) is p.Reason.METADATA_EXPIRED
    same()
    short = trust.sign(replace(root_v1(), expires=T0 + 100), ROOT_KEYS[:2])
    box2 = boxed(rel, short)
    assert box2.offer_timestamp(timestamp(1, T0 + 100), NOW) is None
    assert reason(box2, good(rel.releases[1])) is p.Reason.ROOT_EXPIRED


def test_a_box_catches_up_several_root_versions_in_one_offer(rel: Releases) -> None:
    box = boxed(rel)
    new_release_keys = [key(f"release-b{i}") for i in range(3)]
    v2 = trust.next_root(root_v1(), root=threshold(2, [*ROOT_KEYS[:2], key("root3")]))
    v3 = trust.next_root(v2, releases=(trust.ReleaseRole(threshold(2, new_release_keys)),))
    chain = [ROOT1, trust.sign(v2, [*ROOT_KEYS[:2], key("root3")]),
             trust.sign(v3, [ROOT_KEYS[0], key("root3")])]
    assert box.offer_root(chain, NOW) is None
    assert box.trust_status()["root_version"] == 3
    assert reason(box, good(rel.releases[1])) is p.Reason.UNKNOWN_KEY
    assert reason(box, resign(rel.releases[1], new_release_keys[:2])) is None
    assert box.offer_root(chain, NOW) is None  # current: nothing more to take
    assert box.trust_status()["root_version"] == 3


def test_a_fast_forward_by_a_leaked_key_is_reset_by_the_rotation_that_removes_it(
        rel: Releases) -> None:
    """Root 1 lets one release key sign (threshold 1); that key leaks, signs the newest
    release with a huge counter, and the box accepts it as its target. Root 2 drops the
    key: the target goes, and the vendor's next release is accepted."""
    one_of_three = trust.sign(replace(root_v1(), releases=(
        trust.ReleaseRole(threshold(1, RELEASE_KEYS)),)), ROOT_KEYS[:2])
    box = boxed(rel, one_of_three)
    evil = manifest.sign_all(replace(rel.releases[2].manifest, security_counter=2**32 - 1),
                             [LEAKED])
    assert box.judge(evil, NOW) is None
    assert Phone([replace(rel.releases[2], wire=evil, air=())]).session(
        box, NOW).rejected is None
    assert box.status()["target_version"] == rel.releases[2].version
    v2 = trust.next_root(trust.decode_root(one_of_three).root,
                         releases=(trust.ReleaseRole(threshold(1, RELEASE_KEYS[1:])),))
    assert box.offer_root([trust.sign(v2, ROOT_KEYS[:2])], NOW) is None
    st = box.status()
    assert (st["state"], st["target_version"], st["running_version"], st["running_counter"]) == (
        "idle", None, rel.releases[0].version, rel.releases[0].manifest.security_counter)
    assert box.judge(evil, NOW) is p.Reason.UNKNOWN_KEY  # the key is no release key now
    assert reason(box, resign(rel.releases[1], [RELEASE_KEYS[2]])) is None


def test_a_replayed_old_timestamp_changes_nothing(rel: Releases) -> None:
    box = boxed(rel)
    assert box.offer_timestamp(timestamp(2, T0 + 50), NOW) is None
    same = unchanged(box)
    for replay in (timestamp(2, T0 + 50), timestamp(1, T0 + 60), timestamp(3, T0 + 49)):
        assert box.offer_timestamp(replay, NOW) is p.Reason.STALE_TIMESTAMP
    assert box.offer_timestamp(timestamp(3, T0 + 60, expires=T0 + 60), NOW) is (
        p.Reason.METADATA_EXPIRED)
    same()
    assert box.trust_status()["time"] == T0 + 50


def test_a_box_without_a_clock_refuses_an_expired_release_after_a_signed_timestamp(
        rel: Releases) -> None:
    box = boxed(rel)
    expiring = replace(rel.releases[1].manifest, expires=T0 + 1000)
    wire = manifest.sign_all(expiring, RELEASE_KEYS[1:])
    assert box.judge(wire, NOW) is None  # no clock: it cannot know yet
    assert box.offer_timestamp(timestamp(1, T0 + 1001), NOW) is None
    assert box.judge(wire, NOW) is p.Reason.EXPIRED


def test_a_frozen_box_knows_it_is_behind_the_latest(rel: Releases) -> None:
    box = boxed(rel)
    latest = rel.releases[2].version
    assert box.offer_timestamp(timestamp(1, T0, latest=(("lockbox", latest),)), NOW) is None
    assert (box.trust_status()["latest"], box.trust_status()["behind_latest"]) == (latest, True)


def test_a_revoked_release_is_dropped_as_a_target_and_never_installed(rel: Releases) -> None:
    box = boxed(rel)
    r1 = good(rel.releases[1])
    Phone([r1]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT
    revoke = timestamp(1, T0, revoked=(("lockbox", r1.version),))
    assert box.offer_timestamp(revoke, NOW) is None
    st = box.status()
    assert (st["state"], st["target_version"], st["running_version"]) == (
        "idle", None, rel.releases[0].version)
    assert box.idle(NOW) is None
    assert reason(box, r1) is p.Reason.REVOKED
    assert box.trust_status()["revoked"] == [r1.version]


def test_the_policy_is_checked_again_just_before_install(rel: Releases) -> None:
    """A target built under root 1 whose release keys root 2 replaced, rotated behind the
    box's back (a journal record, as a power cut between rotation and re-check leaves it)."""
    box = boxed(rel)
    Phone([good(rel.releases[1])]).session(box, NOW)
    assert box.idle(NOW) is IdleStep.BUILT
    v2 = trust.next_root(root_v1(), releases=(
        trust.ReleaseRole(threshold(1, [STRANGER])),))
    box._commit(RootLink(trust.sign(v2, ROOT_KEYS[:2])))
    box._verified = None
    assert box.idle(NOW) is IdleStep.REFUSED
    assert box.status()["running_version"] == rel.releases[0].version


def test_a_legacy_box_rotates_from_its_single_key_to_a_root(rel: Releases) -> None:
    config = box_config(rel)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter)
    box = Lockbox(flash, config, rel.trusted)
    box.boot(NOW)
    assert box.trust_status()["root_version"] == 0
    assert box.offer_root([ROOT1], NOW) is p.Reason.BAD_ROOT  # not signed by the legacy key
    link = trust.add_signature(ROOT1, rel.key)
    assert box.offer_root([link], NOW) is None
    assert box.trust_status()["root_version"] == 1
    assert reason(box, rel.releases[1]) is p.Reason.UNKNOWN_KEY
    assert reason(box, good(rel.releases[1])) is None
    box.boot(NOW)  # the root is in flash
    assert box.trust_status()["root_version"] == 1


def test_provisioning_refuses_a_root_short_of_its_own_threshold(rel: Releases) -> None:
    config = box_config(rel)
    with pytest.raises(LockboxError, match="1 of the 2 signatures"):
        Lockbox.provision(config.make_flash(), config, rel.releases[0].image, "1.0.0",
                          root=trust.sign(root_v1(), ROOT_KEYS[:1]))


def test_a_root_too_large_for_the_journal_beside_the_target_is_refused(rel: Releases) -> None:
    """On 1 KiB sectors a journal half cannot hold an 8-key release role's root beside a
    target: the root is refused (TOO_LARGE), the target kept, nothing changed."""
    config = box_config(rel, sector_size=1024)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter,
                      root=ROOT1)
    box = Lockbox(flash, config, {})
    box.boot(NOW)
    assert Phone([good(rel.releases[1])]).session(box, NOW).rejected is None
    same = unchanged(box)
    wide = trust.next_root(root_v1(), releases=(
        trust.ReleaseRole(threshold(2, [key(f"wide{i}") for i in range(8)])),
        trust.ReleaseRole(threshold(2, [key(f"wider{i}") for i in range(8)]), "lockbox")))
    link = trust.sign(wide, ROOT_KEYS[:2])
    assert 800 < len(link) <= 1024
    assert box.offer_root([link], NOW) is p.Reason.TOO_LARGE
    same()
    assert box.status()["target_version"] == rel.releases[1].version


def test_a_box_that_reconciles_its_journal_with_its_images_keeps_its_root(
        rel: Releases) -> None:
    """A running image that rotted makes boot rebuild the state from what flash proves
    (verifying stored manifests under the box's root): the root and timestamp stay."""
    box = boxed(rel)
    assert box.offer_root([trust.sign(trust.next_root(root_v1()), ROOT_KEYS[:2])], NOW) is None
    assert box.offer_timestamp(timestamp(1, T0), NOW) is None
    Phone([good(rel.releases[1])]).session(box, NOW)
    before = box.trust_status()
    slot = box.layout.slots[box.s.active]  # type: ignore[union-attr]
    slot.erase(0, slot.flash.sector_size)
    box.boot(NOW)
    assert box.trust_status() == before
    assert box.trust_status()["root_version"] == 2
