"""Monte Carlo over processes: split runs into shards of boxes, merge them in order.

A unit of work is (run, first box, box count). Every number a unit produces is a
function of the scenario, the release and (seed, run, box) only, and units are
merged in (run, first box) order, so the result is the same whatever the
number of worker processes or the shard size. Workers are forked before any
progress bar starts (no threads to inherit); each one builds its own
strategies (the fwdist ones hold lockboxes, which are not shared).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sim.engine import ShardResult, StrategyTally, simulate_shard
from sim.fwdist_strategy import FULL, full_only_store
from sim.release import ReleaseInfo
from sim.scenario import Scenario
from sim.stats import StrategyStats, summarise
from sim.strategies import ALL, DESCRIPTIONS, make_strategies

DEFAULT_SHARD = 50


@dataclass
class SimResult:
    scenario: Scenario
    release: ReleaseInfo
    strategies: dict[str, StrategyStats]
    boxes: int
    legacy: int
    box_accesses: int
    seconds: float
    workers: int
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "schema": 1,  # the JSON layout version, fwdist.cli.output.JSON_SCHEMA: sim --json
            "scenario": self.scenario.name,
            "seed": self.scenario.run.seed,
            "runs": self.scenario.run.runs,
            "boxes": self.boxes,
            "legacy_boxes": self.legacy,
            "days": self.scenario.run.days,
            "box_accesses": self.box_accesses,
            "release": {
                "product": self.release.product,
                "target": self.release.target,
                "image_bytes": self.release.image_bytes,
                "fwdist_full_air_bytes": self.release.fwdist_full_air,
                "fwdist_delta_air_bytes": self.release.fwdist_delta_air,
                "oracle": {
                    v: {"bytes": d.size, "tool": d.tool} for v, d in self.release.oracle.items()
                },
            },
            "strategies": {name: s.as_json() for name, s in self.strategies.items()},
            "notes": self.notes,
        }


_Unit = tuple[int, int, int]
_worker_args: tuple[Scenario, ReleaseInfo, tuple[str, ...], bool] | None = None
_worker_strategies: list[object] = []


def _init_worker(
    scenario: Scenario, release: ReleaseInfo, names: tuple[str, ...], fine: bool
) -> None:
    global _worker_args, _worker_strategies
    _worker_args = (scenario, release, names, fine)
    _worker_strategies = list(make_strategies(scenario, release, names))


def _run_unit(unit: _Unit) -> ShardResult:
    assert _worker_args is not None
    scenario, _release, _names, fine = _worker_args
    run, first, n = unit
    return simulate_shard(scenario, _worker_strategies, run, first, n, fine=fine)  # type: ignore[arg-type]


def units(scenario: Scenario, shard: int) -> list[_Unit]:
    out = []
    for run in range(scenario.run.runs):
        for first in range(0, scenario.run.boxes, shard):
            out.append((run, first, min(shard, scenario.run.boxes - first)))
    return out


def simulate(
    scenario: Scenario,
    release: ReleaseInfo,
    names: Sequence[str] = ALL,
    workers: int | None = None,
    shard: int = DEFAULT_SHARD,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    fine: bool = False,
) -> SimResult:
    """Simulate every run of ``scenario`` for each named strategy on the same draws.

    ``fine=True`` runs every session frame by frame on the trio link (one wake-up
    per frame): the same numbers, many times slower; it exists to check that.
    """
    started = time.perf_counter()
    names = tuple(names)
    work = units(scenario, shard)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(work)))
    tallies = {name: StrategyTally() for name in names}
    boxes = legacy = box_accesses = 0

    def absorb(r: ShardResult) -> None:
        nonlocal boxes, legacy, box_accesses
        boxes += r.boxes
        legacy += r.legacy
        box_accesses += r.box_accesses
        for name in names:
            tallies[name].merge(r.strategies[name])
        if progress:
            progress(r.boxes)

    if FULL in names:
        full_only_store(release)  # once, here, before any worker needs it
    if n_workers == 1:
        _init_worker(scenario, release, names, fine)
        if on_start:
            on_start(len(work))
        for unit in work:
            absorb(_run_unit(unit))
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(
            n_workers, initializer=_init_worker, initargs=(scenario, release, names, fine)
        ) as pool:
            if on_start:
                on_start(len(work))
            for r in pool.imap(_run_unit, work):  # imap keeps unit order: deterministic merge
                absorb(r)
    stats = {
        name: summarise(name, DESCRIPTIONS[name], tallies[name], scenario.run.days)
        for name in names
    }
    notes = [
        f"{name}: {st.install_errors} installs failed or reverted on the real lockbox (a bug)"
        for name, st in stats.items()
        if st.install_errors
    ]
    return SimResult(
        scenario,
        release,
        stats,
        boxes,
        legacy,
        box_accesses,
        time.perf_counter() - started,
        n_workers,
        notes,
    )
