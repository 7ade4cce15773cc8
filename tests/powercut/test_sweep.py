"""Power-cut sweep in the MCUboot style, one step further.

Run a whole update once and count the flash operations; then, for every
operation index (the last one included), cut power right before it — or in the
middle of it (a torn write or erase) — reboot, finish the update, and check
both slots, the journal and the progress the box kept. Seeded runs cut power
several times in a row. Each test prints how many cut points it tried; the
operation counts are pinned (a change in them is a change in the box's flash work).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from fwdist.flash import Flash, PowerCut
from fwdist.lockbox import BoxConfig, IdleStep, Lockbox
from fwdist.protocol import PieceComplete
from fwdist.testing import Phone, Releases, box_config, make_releases

NOW = 1_700_000_500


@pytest.fixture(scope="module")
def rel(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 3)


@pytest.fixture(scope="module")
def rel3(release_history: Callable[..., Releases]) -> Releases:
    return release_history(3, 24 * 1024, 4, deltas=False)


@pytest.fixture(scope="module")
def rel_full(release_history: Callable[..., Releases]) -> Releases:
    return release_history(2, 24 * 1024, 4, deltas=False)


class Run:
    """One box under test, with a record of its persisted progress before each frame."""

    def __init__(self, rel: Releases, config: BoxConfig, flash: Flash, protocol: int = 1,
                 air: bool = False) -> None:
        self.rel, self.config, self.flash = rel, config, flash
        self.protocol = protocol
        self.air = air  # (protocol 2) the phones offer format 2 manifests
        self.floor = 0
        self.floor_tag: bytes | None = None
        self.box = self._boot()

    def _boot(self) -> Lockbox:
        box = Lockbox(self.flash, self.config, self.rel.trusted)
        box.boot(NOW)
        inner = box.receive_data

        def recording(data: bytes, now: int = 0) -> bytes:
            self.floor, self.floor_tag = progress(box), target_tag(box)
            return inner(data, now)

        box.receive_data = recording  # type: ignore[method-assign]
        return box

    def reboot(self) -> None:
        self.flash.power_on()
        before = self.floor
        self.box = self._boot()
        # a power cut loses at most the frame in flight (of the target it was for: a frame that
        # replaced the target leaves the new one's progress, adopted pieces and all)
        same = target_tag(self.box) == self.floor_tag
        assert progress(self.box) >= before or not same or self.box.s is None or (
            self.box.s.target is None)

    def start(self) -> None:
        """Before the newest release shows up: the previous one arrives all but one piece."""
        if len(self.rel.releases) < 3:
            return
        middle = self.rel.releases[-2]
        n = len(middle.payloads[middle.manifest.full.table_sha256].pieces)
        Phone([middle], holds=set(range(n - 1)), protocol=self.protocol,
              air=self.air).session(self.box, NOW)

    def finish(self, budget: int = 500, max_sessions: int = 80) -> None:
        """Sessions of ``budget`` bytes until the box has everything, then idle until installed."""
        newest = self.rel.releases[-1]
        for i in range(max_sessions):
            if self.box.status()["running_version"] == newest.version:
                return
            phone = Phone([newest], order_seed=i, protocol=self.protocol, air=self.air)
            log = phone.session(self.box, NOW, budget)
            assert log.error is None, log.error  # nothing a power cut did looks like a bad phone
            while self.box.idle(NOW) in (IdleStep.BUILT, IdleStep.REVERTED):
                pass
        raise AssertionError(f"update did not finish: {self.box.status()}")


def target_tag(box: Lockbox) -> bytes | None:
    t = box.s.target if box.s else None
    return None if t is None else t.tag


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


def count_ops(rel: Releases, sector_size: int = 4096, protocol: int = 1,
              air: bool = False) -> int:
    config, flash = fresh(rel, sector_size)
    run = Run(rel, config, flash, protocol, air)
    run.start()
    run.finish()
    check_final(run)
    return flash.ops


def sweep(rel: Releases, torn: bool, sector_size: int = 4096,
          protocol: int = 1, air: bool = False) -> tuple[int, int]:
    """Cut power at every operation of the update in turn: (operations, cuts that happened)."""
    total = count_ops(rel, sector_size, protocol, air)
    cuts = 0
    for cut in range(total):
        config, flash = fresh(rel, sector_size)
        flash.arm(cut, torn=torn, seed=cut)
        run = Run(rel, config, flash, protocol, air)
        try:
            run.start()
            run.finish()
        except PowerCut as e:
            assert (e.op, e.torn) == (cut, torn)
            cuts += 1
            run.reboot()
            run.finish()
        check_final(run)
    return total, cuts


@pytest.mark.parametrize(("sector", "ops"), [(4096, 35), (1024, 71)])
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_delta(rel: Releases, torn: bool, sector: int, ops: int) -> None:
    total, cuts = sweep(rel, torn, sector_size=sector)
    print(f"\npower-cut sweep (delta update, {sector} B sectors, "
          f"{'torn' if torn else 'clean'}): {cuts} cut points")
    assert (total, cuts) == (ops, ops)


@pytest.fixture(scope="module", params=["bsdiff3-lzma", "bsdiff3-heatshrink"])
def rel_small_ram(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """A delta update through each small-RAM decoder (their 256-byte pieces, own streams)."""
    root = tmp_path_factory.mktemp(f"releases-{request.param}")
    rel = make_releases(root, count=2, size=24 * 1024, seed=3, encoders=(request.param,))
    assert [d.encoder for d in rel.releases[1].manifest.deltas] == [request.param]
    return rel


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_small_ram_decoders(rel_small_ram: Releases, torn: bool) -> None:
    total, cuts = sweep(rel_small_ram, torn)
    encoder = rel_small_ram.releases[1].manifest.deltas[0].encoder
    print(f"\npower-cut sweep ({encoder} delta update, {'torn' if torn else 'clean'}): "
          f"{cuts} cut points")
    assert (total, cuts) == (37, 37)  # the flash work is the same as for any delta of this image


@pytest.mark.parametrize(("sector", "ops"), [(4096, 104), (1024, 150)])
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_full(rel_full: Releases, torn: bool, sector: int,
                                     ops: int) -> None:
    """1 KiB sectors make pieces span sectors and the journal switch halves mid-update."""
    total, cuts = sweep(rel_full, torn, sector_size=sector)
    print(f"\npower-cut sweep (full-image update, {sector} B sectors, "
          f"{'torn' if torn else 'clean'}): {cuts} cut points")
    assert (total, cuts) == (ops, ops)


@pytest.mark.parametrize(("which", "ops"), [("delta", 35), ("full", 102)])  # v1: 37, 104
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_protocol_2(rel: Releases, rel_full: Releases, which: str,
                                           torn: bool, ops: int) -> None:
    """The same sweeps with the phone speaking version 2 (Seek, implied offsets, chunks)."""
    total, cuts = sweep(rel if which == "delta" else rel_full, torn, protocol=2)
    print(f"\npower-cut sweep ({which} update, protocol 2, {'torn' if torn else 'clean'}): "
          f"{cuts} cut points")
    assert (total, cuts) == (ops, ops)


@pytest.mark.parametrize(("which", "ops"), [("delta", 29), ("full", 96)])  # format 1: 35, 102
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_format_2(rel: Releases, rel_full: Releases, which: str,
                                         torn: bool, ops: int) -> None:
    """Protocol 2 carrying format 2 manifests: a cut at every flash operation of accepting
    the manifest (its slot, the target record), of the inline rows' pieces and the build."""
    total, cuts = sweep(rel if which == "delta" else rel_full, torn, protocol=2, air=True)
    print(f"\npower-cut sweep ({which} update, format 2, {'torn' if torn else 'clean'}): "
          f"{cuts} cut points")
    assert (total, cuts) == (ops, ops)


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_format_2_target_change(rel3: Releases, torn: bool) -> None:
    """A newer format 2 release replaces a nearly complete format 2 target: the shared piece
    is adopted from the rows of the old manifest (still in the other manifest slot)."""
    config, flash = fresh(rel3)
    run = Run(rel3, config, flash, protocol=2, air=True)
    run.start()
    log = Phone([rel3.releases[-1]], protocol=2, air=True).session(run.box, NOW, 1000)
    adopted = [e for e in log.events if isinstance(e, PieceComplete) and e.piece >= 0]
    assert len(adopted) == 1  # one piece of 1.1 is also a piece of 1.2
    total, cuts = sweep(rel3, torn, protocol=2, air=True)
    print(f"\npower-cut sweep (format 2 target change, {'torn' if torn else 'clean'}): "
          f"{cuts} cut points")
    assert (total, cuts) == (173, 173)  # format 1 over protocol 1: 187


@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_target_change(rel3: Releases, torn: bool) -> None:
    """A newer release replaces a nearly complete target; the shared piece is adopted."""
    config, flash = fresh(rel3)
    run = Run(rel3, config, flash)
    run.start()
    log = Phone([rel3.releases[-1]]).session(run.box, NOW, 1000)
    adopted = [e for e in log.events if isinstance(e, PieceComplete) and e.piece >= 0]
    assert len(adopted) == 1  # one piece of 1.1 is also a piece of 1.2
    total, cuts = sweep(rel3, torn)
    print(f"\npower-cut sweep (target change, {'torn' if torn else 'clean'}): {cuts} cut points")
    assert (total, cuts) == (187, 187)


@pytest.mark.slow
@pytest.mark.parametrize("torn", [False, True], ids=["clean", "torn"])
def test_cut_at_every_operation_bigger_image(tmp_path: Path, torn: bool) -> None:
    rel = make_releases(tmp_path, count=2, size=96 * 1024, seed=9)
    total, cuts = sweep(rel, torn)
    print(f"\npower-cut sweep (96 KiB delta update, {'torn' if torn else 'clean'}): "
          f"{cuts} cut points")
    assert (total, cuts) == (110, 110)


SEEDED_CUTS = [5, 3, 2, 3, 3, 4, 2, 4, 3, 5, 2, 4]  # cuts that happened, seed by seed


@pytest.mark.parametrize(("seed", "expected"), list(enumerate(SEEDED_CUTS)))
def test_seeded_multiple_cuts(rel: Releases, seed: int, expected: int) -> None:
    """2 to 5 rounds, each arming a cut somewhere in the first half of the update's operations
    and running sessions until the cut (or the update's end): the cuts per seed are pinned."""
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
    assert cuts == expected
