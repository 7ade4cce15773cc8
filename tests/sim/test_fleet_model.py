"""Owners' manual sessions, legacy boxes and the battery gate, on exact virtual times."""

from __future__ import annotations

import dataclasses

from sim.baselines import OffsetResume
from sim.dists import Dist
from sim.draws import DAY, MANUAL, BoxDice
from sim.engine import simulate_shard
from sim.runner import simulate
from sim.scenario import BatterySpec, FleetSpec, OwnerSpec, ShowingSpec

from .conftest import fake_release
from .test_closed_forms import RATE, ZERO, S, fixed_scenario


def test_owner_session_is_a_cancel_scope_at_the_owners_patience() -> None:
    base = fixed_scenario(1000, boxes=4, days=30)
    no_showings = ShowingSpec(weekday_per_day=0.0, weekend_per_day=0.0, popularity=Dist.fixed(1.0))
    for patience_bytes, done in ((S, True), (S - 1, False)):
        s = dataclasses.replace(
            base,
            showings=no_showings,
            owner=OwnerSpec(
                manual_share=1.0,
                manual_after_days=Dist.fixed(2.0),
                patience_s=Dist.fixed(patience_bytes / RATE + 1.5),
            ),
        )
        spec = dataclasses.replace(ZERO, smp_frame_payload=1)
        r = simulate_shard(s, [OffsetResume(S, spec)], 0, 0, 4)
        t = r.strategies["offset-resume"]
        assert r.box_accesses == 4  # one manual session per box, nothing else
        if done:
            assert t.accesses == [1] * 4
            # no opening: set-up, then S bytes at RATE, two days in
            assert t.installed_at == [2 * DAY + 1.5 + S / RATE] * 4
        else:
            assert t.accesses == [None] * 4 and t.kept == 4 * (S - 1)
    dice = BoxDice(s, 0, 0)
    (only,) = list(dice.accesses(dice.box()))
    assert only.kind == MANUAL and only.open_s == 0.0 and only.t == 2 * DAY


def test_legacy_boxes_are_counted_apart() -> None:
    s = fixed_scenario(S, boxes=50, days=5)
    s = dataclasses.replace(s, fleet=FleetSpec(legacy_share=0.3)).with_run(runs=1)
    r = simulate(s, fake_release(S), ("offset-resume",), workers=1)
    st = r.strategies["offset-resume"]
    assert 0 < r.legacy < 50 and st.boxes == 50 - r.legacy
    assert st.finished == st.boxes  # every updatable box got its one long access
    everyone = dataclasses.replace(s, fleet=FleetSpec(legacy_share=1.0))
    r = simulate(everyone, fake_release(S), ("offset-resume",), workers=1)
    assert r.legacy == 50 and r.strategies["offset-resume"].boxes == 0
    assert r.strategies["offset-resume"].accesses_p50 is None


def test_low_battery_waits_for_new_batteries() -> None:
    s = fixed_scenario(S, boxes=3, days=40)
    s = dataclasses.replace(
        s,
        battery=BatterySpec(
            start=Dist.fixed(0.1),
            per_open=0.0,
            radio_per_s=0.0,
            install_cost=0.0,
            min_install=0.2,
            replace_below=0.2,
            replace_after_days=Dist.fixed(6.0),
        ),
    )
    r = simulate_shard(s, [OffsetResume(S, ZERO)], 0, 0, 3)
    t = r.strategies["offset-resume"]
    for i, installed in enumerate(t.installed_at):
        dice = BoxDice(s, 0, i)
        first = next(dice.accesses(dice.box()))
        assert t.accesses[i] == 1  # the transfer finished at the first showing...
        assert installed == first.t + 6 * DAY  # ...the install waited for the batteries
