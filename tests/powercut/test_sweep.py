"""Power-cut sweep in the MCUboot style, one step further.

Run a whole update once and count the flash operations; then, for every
operation index (the last one included), cut power right before it — or in the
middle of it (a torn write or erase) — reboot, finish the update, and check
both slots, the journal and the progress the box kept. Seeded runs cut power
several times in a row. Each test prints how many cut points it tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from fwdist.flash import Flash, PowerCut
from fwdist.lockbox import BoxConfig, Lockbox
from fwdist.protocol import PieceComplete
from fwdist.testing import Phone, Releases, box_config, make_releases

NOW = 1_700_000_500


@pytest.fixture(scope="module")
def rel(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("sweep"), count=2, size=24 * 1024, seed=3)


@pytest.fixture(scope="module")
def rel3(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("sweep3"), count=3, size=24 * 1024, seed=4,
                         deltas=False)


@pytest.fixture(scope="module")
def rel_full(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return make_releases(tmp_path_factory.mktemp("sweepfull"), count=2, size=24 * 1024, seed=4,
                         deltas=False)


class Run:
    """One box under test, with a record of its persisted progress before each frame."""

    def __init__(self, rel: Releases, config: BoxConfig, flash: Flash) -> None:
        self.rel, self.config, self.flash = rel, config, flash
        self.floor = 0
        self.box = self._boot()

    def _boot(self) -> Lockbox:
        box = Lockbox(self.flash, self.config, self.rel.trusted)
        box.boot(NOW)
        inner = box.receive_data

        def recording(data: bytes, now: int = 0) -> bytes:
            self.floor = progress(box)
            return inner(data, now)

        box.receive_data = recording  # type: ignore[method-assign]
        return box

    def reboot(self) -> None:
        self.flash.power_on()
        before = self.floor
        self.box = self._boot()
        # a power cut loses at most the frame in flight
        assert progress(self.box) >= before or self.box.s is None or self.box.s.target is None

    def start(self) -> None:
        """Before the newest release shows up: the previous one arrives all but one piece."""
        if len(self.rel.releases) < 3:
            return
        middle = self.rel.releases[-2]
        n = len(middle.payloads[middle.manifest.full.table_sha256].pieces)
        Phone([middle], holds=set(range(n - 1))).session(self.box, NOW)

    def finish(self, budget: int = 500, max_sessions: int = 80) -> None:
        """Sessions of ``budget`` bytes until the box has everything, then idle until installed."""
        newest = self.rel.releases[-1]
        for i in range(max_sessions):
            if self.box.status()["running_version"] == newest.version:
                return
            log = Phone([newest], order_seed=i).session(self.box, NOW, budget)
            assert log.error is None, log.error  # nothing a power cut did looks like a bad phone
            while self.box.idle(NOW) in ("built", "reverted"):
                pass
        raise AssertionError(f"update did not finish: {self.box.status()}")


def progress(box: Lockbox) -> int:
    t = box.s.target if box.s else None
    return 0 if t is None else sum(s.received for s in t.streams.values())


def fresh(rel: Releases, sector_size: int = 4096) -> tuple[BoxConfig, Flash]:
    config = box_config(rel, max_trials=8, sector_size=sector_size)
    flash = config.make_flash()
    first = rel.releases[0]
    Lockbox.provision(flash, config, first.image, first.version, first.manifest.security_counter)
    flash.ops = 0
    return config, flash


def check_final(run: Run) -> None:
    old, new = run.rel.releases[0], run.rel.releases[-1]
    box = run.box
    st = box.status()
    assert st["running_version"] == new.version and st["target_version"] is None
    assert box.running_image() == new.image
    s = box.s
    assert s is not None
    other = box.layout.slots[1 - s.active].read(0, len(old.image))
    assert other == old.image  # the old image stays in the other slot
    again = Lockbox(run.flash, run.config, run.rel.trusted)
    again.boot(NOW)  # the journal replays to the very same state
    assert again.state_bytes() == box.state_bytes()


def count_ops(rel: Releases, sector_size: int = 4096) -> int:
    config, flash = fresh(rel, sector_size)
    run = Run(rel, config, flash)
    run.start()
    run.finish()
    check_final(run)
    return flash.ops


def sweep(rel: Releases, torn: bool, points: Callable[[int], range] | None = None,
          sector_size: int = 4096) -> int:
    total = count_ops(rel, sector_size)
    cuts = range(total) if points is None else points(total)
    for cut in cuts:
        config, flash = fresh(rel, sector_size)
        flash.arm(cut, torn=torn, seed=cut)
        run = Run(rel, config, flash)
        try:
            run.start()
            run.finish()
        except PowerCut:
            run.reboot()
            run.finish()
        else:
            raise AssertionError(f"cut at {cut} of {total} never happened")
        check_final(run)
    return len(cuts)


@pytest.mark.parametrize("sector", [4096, 1024])
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_delta(rel: Releases, torn: bool, sector: int) -> None:
    n = sweep(rel, torn, sector_size=sector)
    print(f"\npower-cut sweep (delta update, {sector} B sectors, "
          f"{'torn' if torn else 'clean'}): {n} cut points")
    assert n == count_ops(rel, sector) > 30


@pytest.mark.parametrize("sector", [4096, 1024])
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_full(rel_full: Releases, torn: bool, sector: int) -> None:
    """1 KiB sectors make pieces span sectors and the journal switch halves mid-update."""
    n = sweep(rel_full, torn, sector_size=sector)
    print(f"\npower-cut sweep (full-image update, {sector} B sectors, "
          f"{'torn' if torn else 'clean'}): {n} cut points")
    assert n == count_ops(rel_full, sector) > 30


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_target_change(rel3: Releases, torn: bool) -> None:
    """A newer release replaces a nearly complete target; the shared piece is adopted."""
    config, flash = fresh(rel3)
    run = Run(rel3, config, flash)
    run.start()
    log = Phone([rel3.releases[-1]]).session(run.box, NOW, 1000)
    adopted = [e for e in log.events if isinstance(e, PieceComplete) and e.piece >= 0]
    assert len(adopted) == 1  # one piece of 1.1 is also a piece of 1.2
    n = sweep(rel3, torn)
    print(f"\npower-cut sweep (target change, {'torn' if torn else 'clean'}): {n} cut points")
    assert n == count_ops(rel3) > 30


@pytest.mark.slow
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_bigger_image(tmp_path: Path, torn: bool) -> None:
    rel = make_releases(tmp_path, count=2, size=96 * 1024, seed=9)
    n = sweep(rel, torn)
    print(f"\npower-cut sweep (96 KiB delta update, {'torn' if torn else 'clean'}): {n} cut points")
    assert n == count_ops(rel)


@pytest.mark.parametrize("seed", range(12))
def test_seeded_multiple_cuts(rel: Releases, seed: int) -> None:
    rng = random.Random(seed)
    total = count_ops(rel)
    config, flash = fresh(rel)
    run = Run(rel, config, flash)
    cuts = 0
    for _ in range(rng.randint(2, 5)):
        flash.arm(flash.ops + rng.randrange(total // 2), torn=rng.random() < 0.5,
                  seed=rng.randrange(1 << 30))
        try:
            run.finish(budget=rng.randint(600, 2000))
        except PowerCut:
            cuts += 1
            run.reboot()
        else:
            break
    flash.arm(None)
    run.finish()
    check_final(run)
    print(f"\nseed {seed}: {cuts} cuts in a row")
