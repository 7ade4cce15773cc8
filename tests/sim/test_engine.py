"""The engine: coarse budgets equal a real cancel at the byte; results depend on the seed only."""

from __future__ import annotations

import dataclasses
import json

import pytest
import trio

from sim.baselines import Object4k, OffsetResume, Oracle, Restart
from sim.dists import Dist
from sim.engine import ShardResult, simulate_shard
from sim.release import ReleaseInfo
from sim.runner import simulate
from sim.scenario import load
from sim.strategies import make_strategies

from .conftest import fake_release


def _scenario(days: float = 40.0, partial: float = 0.5):  # type: ignore[no-untyped-def]
    s = load("rmls-passive").with_run(days=days, runs=1)
    return dataclasses.replace(
        s,
        phone=dataclasses.replace(
            s.phone, partial_share=partial, partial_fraction=Dist("uniform", a=0.3, b=0.9)
        ),
    )


def _same(a: ShardResult, b: ShardResult) -> None:
    assert a.box_accesses == b.box_accesses
    for name, ta in a.strategies.items():
        tb = b.strategies[name]
        assert (ta.accesses, ta.installed_at) == (tb.accesses, tb.installed_at), name
        assert (ta.air, ta.overhead, ta.kept, ta.wasted) == (
            tb.air,
            tb.overhead,
            tb.kept,
            tb.wasted,
        ), name
        assert ta.hist == tb.hist, name


def test_fine_link_equals_coarse_budget_for_the_field_models() -> None:
    """Frame by frame under move_on_after (one trio sleep per frame) == budget arithmetic."""
    s = _scenario()
    spec = s.baselines
    size = 256 * 1024

    def strategies() -> list[object]:
        return [
            Restart(size, spec),
            OffsetResume(size, spec),
            Object4k(size, spec),
            Oracle({"1.1.0": 10_000, "1.0.0": 12_000}),
        ]

    coarse = simulate_shard(s, strategies(), 0, 0, 12)  # type: ignore[arg-type]
    fine = simulate_shard(s, strategies(), 0, 0, 12, fine=True)  # type: ignore[arg-type]
    _same(coarse, fine)
    assert coarse.strategies["offset-resume"].wasted > 0  # walk-aways did cut frames


def test_fine_link_equals_coarse_budget_for_fwdist(small_release: ReleaseInfo) -> None:
    # 90 days: on the 32 KiB box every box takes the full image (~61 % of it), and half
    # the phones are partial; in 30 days some of the ten boxes would not finish.
    s = _scenario(days=90)
    s = dataclasses.replace(
        s,
        release=dataclasses.replace(
            s.release, running=dict((v, 1.0) for v in small_release.sources)
        ),
    )
    names = ("fwdist-full", "fwdist-delta")
    coarse = simulate_shard(s, make_strategies(s, small_release, names), 0, 0, 10)
    fine = simulate_shard(s, make_strategies(s, small_release, names), 0, 0, 10, fine=True)
    _same(coarse, fine)
    for name in names:
        t = coarse.strategies[name]
        assert t.errors == 0
        assert all(a is not None for a in t.accesses)


def test_common_random_numbers_do_not_depend_on_the_strategy_set() -> None:
    s = _scenario()
    size = 256 * 1024
    alone = simulate_shard(s, [OffsetResume(size, s.baselines)], 0, 0, 20)
    together = simulate_shard(
        s, [Restart(size, s.baselines), OffsetResume(size, s.baselines)], 0, 0, 20
    )
    a, b = alone.strategies["offset-resume"], together.strategies["offset-resume"]
    assert (a.accesses, a.installed_at, a.air) == (b.accesses, b.installed_at, b.air)


@pytest.mark.parametrize("workers,shard", [(2, 7), (2, 50)])
def test_same_result_whatever_the_workers_and_shards(workers: int, shard: int) -> None:
    s = _scenario(days=30).with_run(boxes=60, runs=2)
    rel = fake_release(256 * 1024, {"1.1.0": 20_000, "1.0.0": 30_000})
    names = ("restart", "offset-resume", "object-4k", "oracle")
    ref = simulate(s, rel, names, workers=1, shard=13).as_json()
    got = simulate(s, rel, names, workers=workers, shard=shard).as_json()
    assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True)
    other_seed = simulate(s.with_run(seed=2), rel, names, workers=1).as_json()
    assert other_seed["strategies"] != ref["strategies"]


def test_partial_phones_hold_the_same_blocks_for_every_strategy() -> None:
    """With every phone partial, the in-order strategies stall where the oracle does not."""
    s = _scenario(days=20, partial=1.0)
    size = 256 * 1024
    r = simulate_shard(
        s, [OffsetResume(size, s.baselines), Oracle({"1.1.0": size, "1.0.0": size})], 0, 0, 20
    )
    off, orc = r.strategies["offset-resume"], r.strategies["oracle"]
    assert orc.kept > off.kept
    assert orc.wasted == 0


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


def test_one_trio_wake_up_per_access(small_release: ReleaseInfo) -> None:
    """Coarse mode: task steps = accesses + a start and an end per box, whatever the frames."""
    s = _scenario(days=30)
    s = dataclasses.replace(
        s, release=dataclasses.replace(s.release, running={v: 1.0 for v in small_release.sources})
    )
    steps = _Steps()
    r = simulate_shard(s, make_strategies(s, small_release), 0, 0, 10, instruments=[steps])
    boxes = r.boxes - r.legacy
    assert steps.steps <= r.box_accesses + 2 * boxes + 3  # + the main task's few steps
    fine = _Steps()
    simulate_shard(s, make_strategies(s, small_release), 0, 0, 10, fine=True, instruments=[fine])
    assert fine.steps > 10 * steps.steps  # frame by frame: many wake-ups per access
