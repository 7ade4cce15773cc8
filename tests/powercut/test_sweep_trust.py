"""Power cut at every flash operation of a root rotation and of a timestamp update.

Each sweep runs the change once on a copy of the flash to count its operations (pinned),
then for every operation index cuts power right before it, or in the middle of it (torn),
reboots, checks the box holds a whole root (the old one or a link of the chain) and a whole
timestamp (old or new), relays the same metadata again, and ends in exactly the state of the
run that was never cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from fwdist import manifest, trust
from fwdist.flash import Flash, PowerCut
from fwdist.lockbox import IdleStep, Lockbox
from fwdist.testing import Phone, Releases, box_config
from tests.trust_helpers import RELEASE_KEYS, ROOT_KEYS, T0, root_v1, threshold, timestamp

NOW = 0


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 5, deltas=False)


def _box(rel: Releases, flash: Flash) -> Lockbox:
    box = Lockbox(flash, box_config(rel), {})
    box.boot(NOW)
    return box


def _with_target(rel: Releases, root: trust.Root, built: bool) -> Flash:
    """A box on root ``root`` whose target is release 1 signed by release key 0 alone."""
    config = box_config(rel)
    flash = config.make_flash()
    r = rel.releases[0]
    Lockbox.provision(flash, config, r.image, r.version, r.manifest.security_counter,
                      root=trust.sign(root, ROOT_KEYS[:2]))
    box = _box(rel, flash)
    signed = manifest.sign_all(rel.releases[1].manifest, [RELEASE_KEYS[0]])
    log = Phone([replace(rel.releases[1], wire=signed, air=())]).session(box, NOW)
    assert log.rejected is None
    if built:
        assert box.idle(NOW) is IdleStep.BUILT
    return flash


def _sweep(start: Flash, rel: Releases, change: Callable[[Lockbox], object]) -> tuple[int, int]:
    """(operations of ``change``, cut runs) after checking every cut ends where no cut does."""
    ref = _box(rel, start.clone())
    before = ref.flash.ops
    change(ref)
    ref.idle(NOW)
    total, want = ref.flash.ops - before, ref.state_bytes()
    runs = 0
    for cut in range(total + 1):
        for torn in (False, True):
            flash = start.clone()
            box = _box(rel, flash)
            flash.arm(flash.ops + cut, torn=torn, seed=cut)
            try:
                change(box)
                box.idle(NOW)
            except PowerCut:
                pass
            flash.power_on()
            box = _box(rel, flash)
            assert box.trust_status()["root_version"] in (1, 2, 3)
            change(box)
            box.idle(NOW)
            assert box.state_bytes() == want, (cut, torn)
            runs += 1
    return total, runs


def test_power_cut_at_every_operation_of_a_two_link_rotation(rel: Releases) -> None:
    """Root 1 trusts one release key alone (threshold 1); roots 2 and 3 drop that key, so the
    target it signed is dropped after the rotation (two ROOT records, then FAIL)."""
    one = trust.Root(1, root_v1().expires, threshold(2, ROOT_KEYS), root_v1().timestamp,
                     (trust.ReleaseRole(threshold(1, RELEASE_KEYS)),))
    v2 = trust.next_root(one, releases=(trust.ReleaseRole(threshold(1, RELEASE_KEYS[1:])),))
    v3 = trust.next_root(v2)
    chain = [trust.sign(v2, ROOT_KEYS[:2]), trust.sign(v3, ROOT_KEYS[1:])]
    start = _with_target(rel, one, built=False)
    total, runs = _sweep(start, rel, lambda box: box.offer_root(chain, NOW))
    final = _box(rel, start.clone())
    final.offer_root(chain, NOW)
    assert (final.trust_status()["root_version"], final.status()["target_version"]) == (3, None)
    assert (total, runs) == (3, 8)


def test_power_cut_at_every_operation_of_a_revoking_timestamp(rel: Releases) -> None:
    """A timestamp revokes the built target: one STAMP record, then FAIL."""
    one = trust.Root(1, root_v1().expires, threshold(2, ROOT_KEYS), root_v1().timestamp,
                     (trust.ReleaseRole(threshold(1, RELEASE_KEYS)),))
    start = _with_target(rel, one, built=True)
    stamp = timestamp(1, T0 + 100, revoked=(("lockbox", rel.releases[1].version),))
    total, runs = _sweep(start, rel, lambda box: box.offer_timestamp(stamp, NOW))
    final = _box(rel, start.clone())
    final.offer_timestamp(stamp, NOW)
    assert final.trust_status()["time"] == T0 + 100 and final.status()["target_version"] is None
    assert (total, runs) == (2, 6)


def test_power_cut_at_every_operation_of_a_timestamp_with_install_windows(
        rel: Releases) -> None:
    """Issue 14: a timestamp whose windows are all closed at its time reaches a built box
    with no clock: one STAMP record (time, windows and all), and the release stays, waiting."""
    one = trust.Root(1, root_v1().expires, threshold(2, ROOT_KEYS), root_v1().timestamp,
                     (trust.ReleaseRole(threshold(1, RELEASE_KEYS)),))
    start = _with_target(rel, one, built=True)
    night = T0 - T0 % 86_400 + 86_400 + 2 * 3600  # 02:00 UTC the day after T0
    stamp = timestamp(1, night - 3600, windows=(("lockbox", ((120, 60),)),))  # signed at 01:00
    total, runs = _sweep(start, rel, lambda box: box.offer_timestamp(stamp, NOW))
    final = _box(rel, start.clone())
    assert final.offer_timestamp(stamp, NOW) is None
    assert final.idle(NOW) is IdleStep.WAIT_WINDOW
    assert (final.trust_status()["windows"], final.status()["state"],
            final.status()["target_version"]) == (["02:00-03:00"], "wait_window",
                                                  rel.releases[1].version)
    assert (total, runs) == (1, 4)
