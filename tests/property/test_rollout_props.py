"""Rollouts' properties: cohorts only grow, codecs round-trip, the decision is a pure
function of its inputs, coverage never exceeds 1, abort never fires below its minimum, and
the phase machine never leaves its table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fwdist.errors import RolloutError
from fwdist.rollout import (
    TRANSITIONS,
    WHOLE,
    AbortPolicy,
    Criteria,
    Event,
    Evidence,
    Outcome,
    Phase,
    PhaseMachine,
    Plan,
    RetryPolicy,
    RolloutOffer,
    State,
    Verdict,
    Window,
    decide,
    in_cohort,
)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True)
ids = st.text(min_size=1, max_size=24)
shares = st.integers(1, WHOLE)
windows = st.builds(Window, st.integers(0, 24 * 60 - 1), st.integers(1, 24 * 60))
retries = st.builds(RetryPolicy, st.integers(0, 16), st.integers(0, 10**7))


@given(ids, ids, shares, shares)
def test_a_box_in_a_phase_is_in_every_wider_one(rollout: str, box: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert not in_cohort(rollout, box, low) or in_cohort(rollout, box, high)
    assert in_cohort(rollout, box, WHOLE)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    cut = sorted(draw(st.sets(shares, min_size=1, max_size=6)))
    crits = st.builds(
        Criteria, st.integers(0, WHOLE), st.integers(0, 500), st.integers(0, 10**6), st.booleans()
    )
    return Plan(
        draw(names),
        ".".join(map(str, draw(st.tuples(*[st.integers(0, 999)] * 3)))),
        tuple(Phase(s, draw(crits)) for s in cut),
        tags=frozenset(draw(st.lists(names, max_size=3))),
        rate_per_hour=draw(st.none() | st.integers(1, 10**4)),
        windows=tuple(draw(st.lists(windows, max_size=3))),
        retry=draw(retries),
        abort=draw(st.builds(AbortPolicy, shares, st.integers(1, 50))),
    )


@given(plans())
def test_a_plan_round_trips_through_json(plan: Plan) -> None:
    assert Plan.from_json(plan.to_json()) == plan


states = st.sampled_from(list(State))


@given(ids, names, states, st.integers(0, WHOLE), st.lists(windows, max_size=3), retries)
def test_an_offer_round_trips_through_json(
    rid: str, product: str, state: State, share: int, ws: list[Window], retry: RetryPolicy
) -> None:
    o = RolloutOffer(rid, product, "1.2.3", state, share, tuple(ws), retry)
    assert RolloutOffer.from_json(o.to_json()) == o


FLEET = [f"b{i}" for i in range(60)]
evidence = st.builds(
    Evidence,
    st.sampled_from([*FLEET, "stranger"]),
    st.integers(0, 50),
    st.integers(900, 1100),
    st.sampled_from(list(Outcome)),
    st.none() | st.integers(1, 16),
)


@given(plans(), st.data(), st.lists(evidence, max_size=80), st.integers(1000, 10**6))
def test_the_decision_is_a_pure_function_of_its_inputs(
    plan: Plan, data: st.DataObject, evs: list[Evidence], now: int
) -> None:
    phase = data.draw(st.integers(0, len(plan.phases) - 1))
    eligible = data.draw(st.sets(st.sampled_from(FLEET)))
    d = decide("r", plan, phase, 1000, now, eligible, evs)
    shuffled = data.draw(st.permutations(evs))
    # the same inputs in another order, and in another container, decide the same
    assert decide("r", plan, phase, 1000, now, list(eligible), shuffled) == d
    assert decide("r", plan, phase, 1000, now, eligible, iter(evs)) == d
    t = d.tally
    assert 0 <= d.coverage <= 1 and t.heard <= t.eligible
    assert t.offered_heard <= t.offered <= t.eligible and t.offered_heard <= t.heard
    assert 0 <= d.failure_share <= 1
    if d.verdict is Verdict.AUTO_ABORT:
        assert t.finished >= plan.abort.min_finished
        assert t.failures * WHOLE >= plan.abort.threshold_bp * t.finished
    elif t.finished >= plan.abort.min_finished:
        assert t.failures * WHOLE < plan.abort.threshold_bp * t.finished


@given(st.integers(1, 5), st.lists(st.sampled_from(list(Event)), max_size=30))
def test_the_machine_stays_in_its_table(phases: int, events: list[Event]) -> None:
    m = PhaseMachine(phases)
    for event in events:
        before, phase = m.state, m.phase
        try:
            m.fire(event, 0)
        except RolloutError:
            assert (m.state, m.phase) == (before, phase)
            continue
        assert m.state is TRANSITIONS[(before, event)]
        assert m.phase == phase + (before is State.SUCCEEDED and event is Event.START)
        assert 0 <= m.phase < phases
    assert all(t.before is not State.ABORTED for t in m.history)
