"""Deterministic scenarios (fixed rate, fixed connected time): exact accesses, exact bytes.

Every box sees the same budget B at every access, so the field strategies have
closed forms: offset-resume needs ceil(S / B) accesses, restart finishes at the
first access if B >= S and never otherwise, object-4k keeps floor(B / 4096)
objects per access.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from sim.baselines import Object4k, OffsetResume, Oracle, Restart
from sim.dists import Dist
from sim.draws import DAY
from sim.engine import simulate_shard
from sim.scenario import AccessSpec, BaselineSpec, BatterySpec, PhoneSpec, Scenario, ShowingSpec

S = 256 * 1024
ZERO = BaselineSpec(
    smp_frame_payload=480,
    smp_frame_overhead=0,
    smp_session_bytes=0,
    dfu_object_bytes=4096,
    dfu_packet_payload=244,
    dfu_packet_overhead=0,
    dfu_object_overhead=0,
    dfu_session_bytes=0,
)


RATE = 1024.0  # bytes/s; budgets / RATE are exact binary fractions, so budgets are exact


def fixed_scenario(
    budget: int, boxes: int = 5, days: float = 400.0, baselines: BaselineSpec = ZERO
) -> Scenario:
    """Every access: 4 s opening, 1.5 s set-up, then exactly ``budget`` bytes at RATE."""
    s = Scenario(
        name="fixed",
        access=AccessSpec(
            connected_s=Dist.fixed(budget / RATE + 5.5),
            open_s=Dist.fixed(4.0),
            setup_s=Dist.fixed(1.5),
            throughput_Bps=Dist.fixed(RATE),
        ),
        phone=PhoneSpec(holds_release=1.0),
        showings=ShowingSpec(weekday_per_day=1.0, weekend_per_day=1.0, popularity=Dist.fixed(1.0)),
        battery=BatterySpec(start=Dist.fixed(1.0), per_open=0.0, radio_per_s=0.0, install_cost=0.0),
        baselines=baselines,
    )
    return s.with_run(boxes=boxes, days=days, runs=1)


def run(s: Scenario, strategies: list[object]) -> dict[str, list[int | None]]:
    r = simulate_shard(s, strategies, 0, 0, s.run.boxes)  # type: ignore[arg-type]
    return {name: t.accesses for name, t in r.strategies.items()}


@pytest.mark.parametrize("budget", [4096, 10_000, 16_384, 17_000, 65_536, S, S + 1])
def test_offset_resume_is_ceil_of_bytes_over_budget(budget: int) -> None:
    # byte-granular requests: every byte of the budget is kept
    spec = dataclasses.replace(ZERO, smp_frame_payload=1)
    acc = run(fixed_scenario(budget, baselines=spec), [OffsetResume(S, spec)])["offset-resume"]
    assert acc == [math.ceil(S / budget)] * 5
    # 480-byte requests: the request in flight at the walk-away is lost, so an access keeps
    # B // 480 * 480 bytes, except the last one, whose final request is short
    per_access = budget // 480 * 480
    acc = run(fixed_scenario(budget), [OffsetResume(S, ZERO)])["offset-resume"]
    assert acc == [1 + math.ceil(max(0, S - budget) / per_access)] * 5


def test_offset_resume_with_protocol_overhead() -> None:
    spec = dataclasses.replace(ZERO, smp_frame_overhead=20, smp_session_bytes=100)
    budget = 15_000
    per_access = (budget - 100) // 500 * 480  # whole requests only; the one in flight is lost
    s = fixed_scenario(budget, baselines=spec)
    r = simulate_shard(s, [OffsetResume(S, spec)], 0, 0, 5)
    t = r.strategies["offset-resume"]
    expect = math.ceil(S / per_access)
    assert t.accesses == [expect] * 5
    frames = math.ceil(S / 480)
    assert t.overhead == 5 * (expect * 100 + frames * 20)
    assert t.kept == 5 * S
    last = S - (expect - 1) * per_access
    assert t.air == 5 * ((expect - 1) * budget + 100 + last + math.ceil(last / 480) * 20)


@pytest.mark.parametrize("budget,expect", [(S - 1, None), (S, 1), (10 * S, 1)])
def test_restart_finishes_only_in_one_access(budget: int, expect: int | None) -> None:
    s = fixed_scenario(budget, days=30)
    r = simulate_shard(s, [Restart(S, ZERO)], 0, 0, 5)
    t = r.strategies["restart"]
    assert t.accesses == [expect] * 5
    if expect is None:
        # every access sends the whole budget; all but what the last access left is wasted
        assert t.air % budget == 0
        assert t.kept == 5 * (budget // 480 * 480)
        assert t.wasted == t.air - t.kept


def test_restart_geometric_with_two_budgets() -> None:
    """Budgets alternating at random between S and S/2: restart needs a first 'long' access."""
    s = fixed_scenario(S, boxes=200, days=60)
    s = dataclasses.replace(
        s,
        access=dataclasses.replace(
            s.access,
            connected_s=Dist(
                "choice", values=(S / 2 / RATE + 5.5, S / RATE + 5.5), cum_weights=(3.0, 4.0)
            ),
        ),
    )
    spec = dataclasses.replace(ZERO, smp_frame_payload=1)
    acc = run(s, [Restart(S, spec), OffsetResume(S, spec)])
    # restart: geometric with p = 1/4; offset-resume: two short or one long access
    r, o = acc["restart"], acc["offset-resume"]
    assert all(x is not None and y is not None for x, y in zip(r, o, strict=True))
    assert all(y <= x for x, y in zip(r, o, strict=True))  # type: ignore[operator]
    assert all(y in (1, 2) for y in o)
    mean = sum(r) / len(r)  # type: ignore[arg-type]
    assert 3.0 < mean < 5.0  # E = 1/p = 4


@pytest.mark.parametrize("budget", [4095, 4096, 8191, 12_288, 20_000, S])
def test_object_4k_keeps_whole_objects_only(budget: int) -> None:
    s = fixed_scenario(budget, days=400)
    acc = run(s, [Object4k(S, ZERO)])["object-4k"]
    per = budget // 4096
    expect = None if per == 0 else math.ceil(S // 4096 / per)
    assert acc == [expect] * 5


def test_object_4k_with_overheads() -> None:
    spec = dataclasses.replace(
        ZERO, dfu_packet_overhead=3, dfu_object_overhead=40, dfu_session_bytes=160
    )
    obj_cost = 4096 + math.ceil(4096 / 244) * 3 + 40
    budget = 160 + 3 * obj_cost + 100
    s = fixed_scenario(budget, days=400, baselines=spec)
    r = simulate_shard(s, [Object4k(S, spec)], 0, 0, 5)
    t = r.strategies["object-4k"]
    assert t.accesses == [math.ceil(64 / 3)] * 5
    assert (
        t.wasted == 5 * (math.ceil(64 / 3) - 1) * 100
    )  # the cut object, every access but the last


def test_oracle_needs_only_its_bytes() -> None:
    s = fixed_scenario(3000)
    r = simulate_shard(s, [Oracle({"1.1.0": 10_000, "1.0.0": 10_000})], 0, 0, 5)
    t = r.strategies["oracle"]
    assert t.accesses == [4] * 5 and t.wasted == 0 and t.air == t.kept == 50_000


def test_install_time_is_exact_virtual_time() -> None:
    """One access carries it all: installed at access time + open + setup + bytes / rate."""
    s = fixed_scenario(S, boxes=3, days=3)
    r = simulate_shard(s, [OffsetResume(S, ZERO)], 0, 0, 3)
    from sim.draws import BoxDice

    for i, t_inst in enumerate(r.strategies["offset-resume"].installed_at):
        dice = BoxDice(s, 0, i)
        first = next(dice.accesses(dice.box()))
        assert t_inst == first.t + 4.0 + 1.5 + S / RATE
        assert first.t < 3 * DAY
