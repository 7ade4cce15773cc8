"""The virtual-time engine: one trio task per box, one wake-up per access.

trio runs under ``MockClock(autojump_threshold=0)``, so ``trio.sleep_until`` is
a discrete event: the clock jumps to the next deadline as soon as every task is
blocked. A box's task sleeps until its next access and then runs that access
for every strategy still updating the box, synchronously, within the access's
byte budget. The budget is the exact number of bytes that fit before the agent
walks away, so the coarse mode is exact to the byte at the cost of one wake-up
per access, not one per frame (a trio wake-up costs tens of µs: the benchmark
``sim/trio_wakeups_per_second`` measures it).

``fine=True`` runs the same accesses frame by frame instead: each strategy's
session is a child task inside ``move_on_after(connected_s)`` that sleeps for
every frame's air time; the cancel cuts the frame in flight. It exists to check,
in tests, that the coarse arithmetic is that cancel.

Boxes do not interact (a phone's cache is drawn per access), so a run splits
into shards of boxes that any process can simulate; the results depend only on
(seed, run, box), never on the shard size or the worker count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
import trio.testing

from sim.draws import Access, BoxDice, BoxDraw
from sim.link import run_session
from sim.scenario import Scenario
from sim.strategy import BoxModel, Progress, Strategy

HIST_BIN = 1024  # bytes per bin of the bytes-per-access histogram
HIST_BINS = 65  # 0..63 KiB, then everything above


@dataclass
class Track:
    """One box under one strategy: its model, its battery and its milestones."""

    model: BoxModel
    battery: float
    accesses: int = 0
    finish_access: int | None = None
    finished_at: float | None = None
    installed_at: float | None = None
    replace_at: float | None = None


@dataclass
class StrategyTally:
    """What one shard learned about one strategy; merged in shard order."""

    accesses: list[int | None] = field(default_factory=list)  # per updatable box
    installed_at: list[float | None] = field(default_factory=list)
    air: int = 0
    overhead: int = 0
    kept: int = 0
    wasted: int = 0
    errors: int = 0
    sessions: int = 0  # accesses that put at least one byte on the air
    hist: list[int] = field(default_factory=lambda: [0] * HIST_BINS)

    def merge(self, other: StrategyTally) -> None:
        self.accesses += other.accesses
        self.installed_at += other.installed_at
        self.air += other.air
        self.overhead += other.overhead
        self.kept += other.kept
        self.wasted += other.wasted
        self.errors += other.errors
        self.sessions += other.sessions
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]


@dataclass
class ShardResult:
    run: int
    first_box: int
    boxes: int = 0
    legacy: int = 0
    box_accesses: int = 0  # wake-ups: accesses of updatable boxes the engine simulated
    strategies: dict[str, StrategyTally] = field(default_factory=dict)


class BoxRun:
    """One box under every strategy; :meth:`serve` is one access (one wake-up)."""

    def __init__(self, scenario: Scenario, draw: BoxDraw, strategies: Sequence[Strategy]) -> None:
        self.s = scenario
        self.draw = draw
        self.tracks = {st.name: Track(st.new_box(draw), draw.battery) for st in strategies}
        self.hist: dict[str, list[int]] = {st.name: [0] * HIST_BINS for st in strategies}
        self.sessions = dict.fromkeys(self.tracks, 0)

    @property
    def live(self) -> bool:
        return any(t.installed_at is None for t in self.tracks.values())

    def before(self, tr: Track, a: Access) -> bool:
        """Battery bookkeeping as the box opens; False if this strategy is already installed."""
        if tr.installed_at is not None:
            return False
        b = self.s.battery
        if tr.replace_at is not None and tr.replace_at <= a.t:
            tr.battery, tr.replace_at = 1.0, None
        if a.open_s > 0:
            tr.battery -= b.per_open
        return True

    def after(self, name: str, tr: Track, a: Access, air: int, ran: bool) -> None:
        """Account one session's air bytes, then finish and install if the payload is complete."""
        b = self.s.battery
        pr = tr.model.progress
        if ran:
            tr.accesses += 1
            self.hist[name][min(air // HIST_BIN, HIST_BINS - 1)] += 1
            if air:
                self.sessions[name] += 1
            if a.holds:
                tr.battery -= b.radio_per_s * (a.setup_s + air / a.rate)
            if pr.done and tr.finish_access is None:
                tr.finish_access = tr.accesses
                tr.finished_at = a.transfer_start + air / a.rate
        if tr.battery < b.replace_below and tr.replace_at is None:
            tr.replace_at = a.t + self.draw.replace_after_s
        if tr.finished_at is not None and tr.installed_at is None:
            if tr.battery >= b.min_install:
                tr.installed_at = max(tr.finished_at, a.t)
                tr.battery -= b.install_cost
            elif tr.replace_at is not None:
                tr.installed_at = max(tr.replace_at, tr.finished_at)  # new batteries, then install

    def serve(self, a: Access) -> None:
        for name, tr in self.tracks.items():
            if not self.before(tr, a):
                continue
            ran = not tr.model.progress.done
            air = tr.model.access(a) if ran else 0
            self.after(name, tr, a, air, ran)

    async def serve_fine(self, a: Access) -> None:
        """The same access, every strategy frame by frame on the trio link, in parallel."""
        async with trio.open_nursery() as nursery:
            for name, tr in self.tracks.items():
                if not self.before(tr, a):
                    continue
                nursery.start_soon(self._fine_one, name, tr, a)

    async def _fine_one(self, name: str, tr: Track, a: Access) -> None:
        ran = not tr.model.progress.done
        air = 0
        if ran:
            session = tr.model.open_session(a)
            if session is None:
                air = tr.model.access(a)  # nothing to send, or no frame-level mode
            else:
                before = tr.model.progress.air
                await run_session(session, a)
                air = tr.model.progress.air - before
        self.after(name, tr, a, air, ran)

    def tally_into(self, out: dict[str, StrategyTally]) -> None:
        for name, tr in self.tracks.items():
            t = out[name]
            pr: Progress = tr.model.progress
            t.accesses.append(tr.finish_access)
            t.installed_at.append(tr.installed_at)
            t.air += pr.air
            t.overhead += pr.overhead
            t.kept += pr.kept
            t.wasted += pr.wasted
            t.errors += pr.errors
            t.sessions += self.sessions[name]
            t.hist = [x + y for x, y in zip(t.hist, self.hist[name], strict=True)]


def simulate_shard(
    scenario: Scenario,
    strategies: Sequence[Strategy],
    run: int,
    first_box: int,
    n_boxes: int,
    fine: bool = False,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> ShardResult:
    """Simulate boxes ``first_box .. first_box + n_boxes - 1`` of run ``run`` in virtual time.

    ``instruments`` go to ``trio.run`` (the tests count task steps with one).
    """
    result = ShardResult(run, first_box)
    result.strategies = {st.name: StrategyTally() for st in strategies}
    boxes: list[BoxRun] = []

    async def box_task(dice: BoxDice, box: BoxRun) -> None:
        for a in dice.accesses(box.draw):
            await trio.sleep_until(a.t)
            result.box_accesses += 1
            if fine:
                await box.serve_fine(a)
            else:
                box.serve(a)
            if not box.live:
                return

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(first_box, first_box + n_boxes):
                dice = BoxDice(scenario, run, index)
                draw = dice.box()
                result.boxes += 1
                if draw.legacy:
                    result.legacy += 1
                    continue
                box = BoxRun(scenario, draw, strategies)
                boxes.append(box)
                nursery.start_soon(box_task, dice, box)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0), instruments=instruments)
    for box in boxes:  # box order, whatever order trio woke them in
        box.tally_into(result.strategies)
    return result
