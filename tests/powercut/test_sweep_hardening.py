"""Power-cut sweeps over the flash work the hardening added (issue 9).

* a piece rolled back to the prefix staged before a hostile session (a ROLLBACK record,
  then the junk tail relocated on the next write);
* a boot that finds the journal older than the images and writes the state the flash
  proves as a fresh snapshot;
* a box without a clock recording a signed time (a CLOCK record).

Each sweep cuts power (clean and torn) before every flash operation of the act, reboots,
finishes with honest phones, and checks the image that runs. The operation counts are
pinned.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fwdist import protocol as p
from fwdist.flash import Flash, PowerCut
from fwdist.journal import Journal
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.testing import Phone, Releases, box_config

NOW = 1_700_000_500


@pytest.fixture(scope="module")
def rel_full(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 4, deltas=False)


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 3)


def provisioned(config: BoxConfig, rel: Releases) -> Flash:
    """A flash programmed with the first release."""
    flash = config.make_flash()
    first = rel.releases[0]
    Lockbox.provision(flash, config, first.image, first.version)
    return flash


def boot(flash: Flash, config: BoxConfig, rel: Releases, now: int = NOW) -> Lockbox:
    box = Lockbox(flash, config, rel.trusted)
    box.boot(now)
    return box


def finish(box: Lockbox, rel: Releases, i: int, now: int = NOW) -> None:
    """Honest sessions until release ``i`` runs."""
    target = rel.releases[i]
    for _ in range(10):
        if box.status()["running_version"] == target.version:
            break
        Phone([target]).session(box, now)
        while box.idle(now) in (IdleStep.BUILT, IdleStep.REVERTED, IdleStep.DAMAGED):
            pass
    assert box.running_image() == target.image


def sweep(setup: Callable[[], tuple[Flash, BoxConfig]], act: Callable[[Flash], Lockbox],
          after: Callable[[Lockbox], None], rel: Releases, now: int = NOW) -> int:
    """Cut power before (clean, then torn) every operation of ``act``; return the count."""
    flash, _ = setup()
    flash.ops = 0
    after(act(flash))
    total = flash.ops
    for torn in (False, True):
        for cut in range(total):
            flash, config = setup()
            flash.ops = 0
            flash.arm(cut, torn=torn, seed=cut)
            try:
                box = act(flash)
            except PowerCut as e:
                assert (e.op, e.torn) == (cut, torn)
                flash.power_on()
                box = boot(flash, config, rel, now)
            after(box)
    return total


def hostile_finish(box: Lockbox, tag: bytes, piece: int, data: bytes, start: int) -> None:
    box.open_session(NOW)
    box.receive_data(p.encode(p.Hello(1, 244)), NOW)
    for off in range(start, len(data), 160):
        box.receive_data(p.encode(p.Data(tag, piece, off, data[off : off + 160])), NOW)
    box.end_session(NOW)


def test_cut_at_every_operation_of_a_rollback(rel_full: Releases) -> None:
    target = rel_full.releases[1]
    pieces = target.payloads[target.manifest.full.table_sha256].pieces
    i = max(range(len(pieces)), key=lambda k: len(pieces[k]))
    config = box_config(rel_full, sector_size=1024)  # the piece spans sectors

    def setup() -> tuple[Flash, BoxConfig]:
        flash = provisioned(config, rel_full)
        box = boot(flash, config, rel_full)
        Phone([target], holds=set()).session(box, NOW)
        hostile_finish(box, target.tag, i, pieces[i][:1200], 0)  # an honest prefix
        return flash, config

    def act(flash: Flash) -> Lockbox:
        box = boot(flash, config, rel_full)
        hostile_finish(box, target.tag, i, pieces[i][:1200] + bytes(len(pieces[i]) - 1200), 1200)
        assert box.s is not None and box.s.target is not None
        assert box.s.target.streams[i].received == 1200  # rolled back to the honest prefix
        finish(box, rel_full, 1)
        return box

    total = sweep(setup, act, lambda box: finish(box, rel_full, 1), rel_full)
    assert total == 134


def test_cut_at_every_operation_of_a_boot_that_repairs_the_journal(rel: Releases) -> None:
    config = box_config(rel)

    def setup() -> tuple[Flash, BoxConfig]:
        flash = provisioned(config, rel)
        box = boot(flash, config, rel)
        first = box.state_bytes()
        finish(box, rel, 1)
        finish(box, rel, 2)
        Journal(box.layout.journal).format(first)  # the journal forgot both installs
        return flash, config

    def check(box: Lockbox) -> None:
        assert box.status()["running_version"] == "1.2.0"
        assert box.running_image() == rel.releases[2].image

    total = sweep(setup, lambda flash: boot(flash, config, rel), check, rel)
    assert total == 2  # the fresh snapshot: one erase, one write


def test_cut_at_every_operation_of_an_update_without_a_clock(rel_full: Releases) -> None:
    config = box_config(rel_full)

    def setup() -> tuple[Flash, BoxConfig]:
        flash = provisioned(config, rel_full)
        return flash, config

    def act(flash: Flash) -> Lockbox:
        box = boot(flash, config, rel_full, 0)
        finish(box, rel_full, 1, now=0)
        return box

    def check(box: Lockbox) -> None:
        finish(box, rel_full, 1, now=0)
        assert box.s is not None and box.s.clock == rel_full.releases[1].manifest.created

    assert sweep(setup, act, check, rel_full, now=0) == 105  # (104 with a clock, and CLOCK)
