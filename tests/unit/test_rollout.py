"""Rollouts, sans-I/O: the plan, the phase table cell by cell, cohorts, decisions, the
controller and the phone's offer rule, with exact counts on seeded populations."""

from __future__ import annotations

import hashlib
import hmac
from fractions import Fraction

import pytest

from fwdist import report
from fwdist.errors import RolloutError
from fwdist.protocol import BoxState, Reason
from fwdist.rollout import (
    TRANSITIONS,
    WHOLE,
    AbortPolicy,
    Answer,
    BoxView,
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
    SyncPolicy,
    Verdict,
    Window,
    box_windows,
    decide,
    evidence,
    format_share,
    in_cohort,
    in_window,
    offered_share,
    outcome,
    parse_share,
    point,
    proceed,
    rejection,
    retry_at,
    step,
)

RID = "lockbox@1.1.0#1"
FLEET = [f"box-{i:05d}" for i in range(10_000)]
S, E = State, Event


def plan(*shares: int, **kw: object) -> Plan:
    crit = kw.pop("criteria", Criteria())
    assert isinstance(crit, Criteria)
    return Plan("lockbox", "1.1.0", tuple(Phase(s, crit) for s in shares), **kw)  # type: ignore[arg-type]


# --- the plan -----------------------------------------------------------------------------


def test_shares_parse_exactly_to_basis_points() -> None:
    assert [parse_share(t) for t in ("1", "10", "100", "0.5", "0.01", "12.25%")] == [
        100, 1000, 10000, 50, 1, 1225,
    ]  # fmt: skip
    assert [format_share(b) for b in (100, 50, 10000, 1225)] == ["1 %", "0.5 %", "100 %", "12.25 %"]


@pytest.mark.parametrize("text", ["0", "-1", "100.01", "0.001", "abc", "nan", "inf", ""])
def test_a_share_that_means_nothing_is_refused(text: str) -> None:
    with pytest.raises(RolloutError, match="phase share must"):
        parse_share(text)


def test_a_plan_whose_shares_do_not_grow_is_refused() -> None:
    with pytest.raises(RolloutError, match=r"^phase shares must grow: 10 %, 1 %$"):
        plan(1000, 100)
    with pytest.raises(RolloutError, match="phase shares must grow"):
        plan(100, 100)
    with pytest.raises(RolloutError, match=r"1\.\.16 phases, got 0"):
        plan()
    with pytest.raises(RolloutError, match=r"version must look like X\.Y\.Z"):
        Plan("lockbox", "1.1", (Phase(100),))
    with pytest.raises(RolloutError, match="tag must be 1-64"):
        plan(100, tags=frozenset({"a b"}))
    with pytest.raises(RolloutError, match=r"installed share must be 0..10000, got 10001"):
        Criteria(installed_bp=10_001)


def test_a_plan_round_trips_through_json_and_refuses_extra_fields() -> None:
    p = Plan(
        "lockbox",
        "1.1.0",
        (Phase(100, Criteria(9000, 5, 3600, True)), Phase(10_000)),
        tags=frozenset({"eu", "beta"}),
        rate_per_hour=50,
        windows=(Window.parse("22:00-02:00"),),
        retry=RetryPolicy(2, 600),
        abort=AbortPolicy(1500, 4),
    )
    doc = p.to_json()
    assert doc["tags"] == ["beta", "eu"] and doc["windows"] == ["22:00-02:00"]
    assert Plan.from_json(doc) == p
    with pytest.raises(RolloutError, match="malformed rollout: the fields are product"):
        Plan.from_json({**doc, "surprise": 1})
    with pytest.raises(RolloutError, match="malformed phase"):
        Plan.from_json({**doc, "phases": [{"share_bp": 100}]})


def test_windows_parse_and_wrap_past_midnight() -> None:
    night = Window.parse("22:00-02:00")
    assert (night.start_minute, night.minutes, str(night)) == (1320, 240, "22:00-02:00")
    assert Window.parse("00:00-00:00").minutes == 24 * 60
    for bad in ("22:00", "24:00-01:00", "1:5-2:00", "aa:bb-cc:dd"):
        with pytest.raises(RolloutError, match="a window is HH:MM-HH:MM"):
            Window.parse(bad)
    day0 = 1_700_006_400  # 2023-11-15T00:00:00Z, a midnight
    assert day0 % 86_400 == 0
    inside = [day0 + 22 * 3600, day0 + 23 * 3600 + 59 * 60, day0 + 86_400 + 3600 + 59 * 60]
    outside = [day0 + 21 * 3600 + 59 * 60, day0 + 2 * 3600, day0 + 12 * 3600]
    assert [in_window((night,), t) for t in inside] == [True, True, True]
    assert [in_window((night,), t) for t in outside] == [False, False, False]
    assert in_window((), day0 + 12 * 3600)


# --- the phase table ------------------------------------------------------------------------

EXPECTED: dict[State, dict[Event, State]] = {
    S.PENDING: {E.START: S.ACTIVE, E.ABORT: S.ABORTED, E.YANK: S.ABORTED},
    S.ACTIVE: {
        E.CRITERIA_MET: S.SUCCEEDED, E.PAUSE: S.PAUSED, E.ABORT: S.ABORTED,
        E.AUTO_ABORT: S.ABORTED, E.YANK: S.ABORTED,
    },
    S.PAUSED: {E.RESUME: S.ACTIVE, E.ABORT: S.ABORTED, E.AUTO_ABORT: S.ABORTED, E.YANK: S.ABORTED},
    S.SUCCEEDED: {
        E.START: S.ACTIVE, E.PAUSE: S.PAUSED, E.FINISH: S.COMPLETED, E.ABORT: S.ABORTED,
        E.AUTO_ABORT: S.ABORTED, E.YANK: S.ABORTED,
    },
    S.ABORTED: {},
    S.COMPLETED: {E.YANK: S.ABORTED},
}  # fmt: skip


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_every_cell_of_the_phase_table(state: State, event: Event) -> None:
    """All 6 x 8 cells: the allowed ones lead where EXPECTED says, the rest are refused."""
    want = EXPECTED[state].get(event)
    assert TRANSITIONS.get((state, event)) is want
    # a two-phase machine in phase 0 (FINISH needs the last phase: phase 1 of 2)
    machine = PhaseMachine(2, state, 1 if event is E.FINISH else 0)
    if want is None:
        with pytest.raises(RolloutError, match=f"is {state.value} cannot {event.value}$"):
            machine.fire(event, 7)
        assert (machine.state, machine.history) == (state, [])
    else:
        assert machine.fire(event, 7) is want and machine.state is want
        assert [(t.event, t.before, t.after, t.at) for t in machine.history] == [
            (event, state, want, 7)
        ]


def test_the_table_has_exactly_the_expected_cells() -> None:
    assert len(TRANSITIONS) == sum(map(len, EXPECTED.values())) == 19


def test_start_after_a_success_moves_to_the_next_phase_and_not_past_the_last() -> None:
    m = PhaseMachine(3)
    for _ in range(2):
        m.fire(E.START, 0)
        m.fire(E.CRITERIA_MET, 0)
    assert (m.state, m.phase) == (S.SUCCEEDED, 1)
    m.fire(E.START, 0)
    m.fire(E.CRITERIA_MET, 0)
    with pytest.raises(RolloutError, match="no next phase to start"):
        m.fire(E.START, 0)
    m.fire(E.FINISH, 9)
    assert (m.state, m.phase, len(m.history)) == (S.COMPLETED, 2, 7)
    with pytest.raises(RolloutError, match="phase 1 of 2 is not the last"):
        PhaseMachine(2, S.SUCCEEDED).fire(E.FINISH, 0)
    with pytest.raises(RolloutError, match="phase 3 of a rollout with 3 phases"):
        PhaseMachine(3, S.ACTIVE, 3)


# --- cohorts ------------------------------------------------------------------------------


def test_a_point_is_the_documented_keyed_hash() -> None:
    key = hashlib.sha256(b"fwdist rollout cohort v1\x00" + RID.encode()).digest()
    mac = hmac.new(key, b"box-00000", hashlib.sha256).digest()
    assert point(RID, "box-00000") == int.from_bytes(mac[:8], "big") == 10711734417757635929


def test_cohort_counts_on_a_seeded_fleet_of_ten_thousand() -> None:
    counts = [sum(in_cohort(RID, b, s) for b in FLEET) for s in (1, 100, 1000, 5000, WHOLE)]
    assert counts == [3, 87, 1003, 5041, 10_000]
    one = {b for b in FLEET if in_cohort(RID, b, 100)}
    assert one <= {b for b in FLEET if in_cohort(RID, b, 1000)}
    other = {b for b in FLEET if in_cohort("lockbox@1.1.0#2", b, 100)}
    assert (len(other), len(one & other)) == (112, 1)  # another rollout, another 1 %


# --- decisions ------------------------------------------------------------------------------

BEGAN = 1_000_000


def ev(
    box: str, outcome: Outcome, seq: int = 1, at: int = BEGAN + 10, reason: int | None = None
) -> Evidence:
    return Evidence(box, seq, at, outcome, reason)


def test_a_decision_counts_each_box_once_by_its_latest_report_since_the_phase_began() -> None:
    p = plan(1000, WHOLE, abort=AbortPolicy(5000, 3))
    cohort = [b for b in FLEET if in_cohort(RID, b, 1000)]
    outside = next(b for b in FLEET if not in_cohort(RID, b, 1000))
    evidence = [
        ev(cohort[0], Outcome.FAILED, seq=1, reason=int(Reason.BAD_SIGNATURE)),
        ev(cohort[0], Outcome.INSTALLED, seq=2),  # a later report: the box installed
        ev(cohort[1], Outcome.INSTALLED, seq=5),
        ev(cohort[2], Outcome.REVERTED, seq=3, reason=None),
        ev(cohort[3], Outcome.FAILED, seq=9, at=BEGAN - 1),  # before the phase: not counted
        ev(cohort[4], rejection(Reason.NOT_NEWER)),
        ev(cohort[5], rejection(Reason.EXPIRED), reason=int(Reason.EXPIRED)),
        ev(outside, Outcome.HEARD),
        ev("not-a-box-of-ours", Outcome.FAILED),
    ]
    d = decide(RID, p, 0, BEGAN, BEGAN + 100, FLEET, evidence)
    t = d.tally
    counts = (t.eligible, t.offered, t.heard, t.offered_heard, t.not_heard)
    assert counts == (10_000, 1003, 6, 5, 998)
    assert dict(t.outcomes) == {
        Outcome.INSTALLED: 2, Outcome.REVERTED: 1, Outcome.REJECTED: 1, Outcome.NOT_ELIGIBLE: 1,
    }  # fmt: skip
    assert (t.finished, t.failures, t.reasons) == (4, 2, ((int(Reason.EXPIRED), 1),))
    assert d.coverage == Fraction(6, 10_000) and d.failure_share == Fraction(1, 2)
    assert d.verdict is Verdict.AUTO_ABORT
    assert d.why == "2 of 4 finished boxes failed (threshold 50 %, minimum 3)"
    doc = d.to_json()
    assert doc["coverage"] == [3, 5000] and doc["not_heard"] == 998 and doc["share_bp"] == 1000


def test_abort_waits_for_the_minimum_and_fires_at_the_threshold() -> None:
    p = plan(WHOLE, criteria=Criteria(installed_bp=5000), abort=AbortPolicy(2500, 4))
    boxes = FLEET[:8]
    three_failed = [ev(b, Outcome.FAILED) for b in boxes[:3]]
    d = decide(RID, p, 0, BEGAN, BEGAN, boxes, three_failed)
    assert d.verdict is Verdict.WAIT and d.failure_share == 1  # 3 of 3, below the minimum 4
    one_of_four = [*three_failed[:1], *(ev(b, Outcome.INSTALLED) for b in boxes[3:6])]
    assert decide(RID, p, 0, BEGAN, BEGAN, boxes, one_of_four).verdict is Verdict.AUTO_ABORT
    one_of_five = [*one_of_four, ev(boxes[6], Outcome.INSTALLED)]
    assert decide(RID, p, 0, BEGAN, BEGAN, boxes, one_of_five).verdict is Verdict.CRITERIA_MET


def test_success_needs_every_criterion_and_says_what_is_missing() -> None:
    p = plan(WHOLE, criteria=Criteria(installed_bp=5000, min_heard=3, min_seconds=600))
    boxes = FLEET[:4]
    two = [ev(b, Outcome.INSTALLED) for b in boxes[:2]]
    early = decide(RID, p, 0, BEGAN, BEGAN + 599, boxes, two)
    assert early.verdict is Verdict.WAIT
    assert early.why == "heard from 2 of the 3 boxes required; 599 s of the 600 s required"
    three = [*two, ev(boxes[2], Outcome.IN_PROGRESS)]
    done = decide(RID, p, 0, BEGAN, BEGAN + 600, boxes, three)
    assert (done.verdict, done.why) == (Verdict.CRITERIA_MET, "2 of 4 installed, criteria met")
    one_in = [two[0], three[2], ev(boxes[3], Outcome.HEARD)]
    one = decide(RID, p, 0, BEGAN, BEGAN + 600, boxes, one_in)
    assert one.why == "1 of 4 installed"


def test_a_phase_asks_to_hear_from_no_more_boxes_than_it_offers() -> None:
    p = plan(100, WHOLE, criteria=Criteria(min_heard=5))
    small = FLEET[:20]
    assert sum(in_cohort(RID, b, 100) for b in small) == 0
    d = decide(RID, p, 0, BEGAN, BEGAN, small, [])
    assert (d.verdict, d.tally.offered) == (Verdict.CRITERIA_MET, 0)
    assert d.why == "0 of 0 installed, criteria met"
    empty = decide(RID, p, 0, BEGAN, BEGAN, [], [])
    assert (empty.verdict, empty.why) == (Verdict.WAIT, "no eligible box yet")


def test_a_rate_limit_widens_the_phase_box_by_box_per_started_hour() -> None:
    p = plan(100, 1000, rate_per_hour=20)
    shares = [offered_share(p, 1, BEGAN, BEGAN + h * 3600, 10_000) for h in (0, 1, 44, 45, 99)]
    assert shares == [120, 140, 1000, 1000, 1000]  # 1 % + 20 boxes an hour, capped at 10 %
    assert offered_share(p, 0, BEGAN, BEGAN, 10_000) == 20
    assert offered_share(plan(100), 0, BEGAN, BEGAN, 10_000) == 100
    d = decide(RID, p, 1, BEGAN, BEGAN, FLEET, [])
    assert d.share_bp == 120 and d.why.startswith("the rate limit is still widening the phase")


# --- the controller -------------------------------------------------------------------------


def test_the_controller_moves_on_holds_at_a_manual_gate_and_finishes() -> None:
    boxes = FLEET[:200]
    gate = Plan("lockbox", "1.1.0", (Phase(100), Phase(1000, Criteria(manual=True)), Phase(WHOLE)))
    m = PhaseMachine(3)
    m.fire(E.START, BEGAN)
    met = decide(RID, gate, 0, BEGAN, BEGAN, boxes, [])
    assert step(m, gate, met) == [E.CRITERIA_MET, E.START] and (m.state, m.phase) == (S.ACTIVE, 1)
    assert step(m, gate, met) == []  # a late decision about phase 0 changes nothing
    met1 = decide(RID, gate, 1, BEGAN, BEGAN, boxes, [])
    assert step(m, gate, met1) == [E.CRITERIA_MET] and m.state is S.SUCCEEDED
    assert proceed(m, BEGAN + 1) is E.START and (m.state, m.phase) == (S.ACTIVE, 2)
    met2 = decide(RID, gate, 2, BEGAN, BEGAN, boxes, [])
    assert step(m, gate, met2) == [E.CRITERIA_MET, E.FINISH] and m.state is S.COMPLETED


def test_the_controller_aborts_even_while_paused() -> None:
    p = plan(WHOLE, abort=AbortPolicy(1, 1))
    m = PhaseMachine(1, S.ACTIVE)
    m.fire(E.PAUSE, 0)
    bad = decide(RID, p, 0, BEGAN, BEGAN, FLEET[:3], [ev(FLEET[0], Outcome.FAILED)])
    assert step(m, p, bad) == [E.AUTO_ABORT] and m.state is S.ABORTED
    assert step(m, p, bad) == []  # already stopped


# --- the phone's offer rule -----------------------------------------------------------------


def offer(state: State = S.ACTIVE, share: int = 1000, **kw: object) -> RolloutOffer:
    return RolloutOffer(RID, "lockbox", "1.1.0", state, share, **kw)  # type: ignore[arg-type]


def test_the_phone_offers_only_to_the_cohort_in_an_offering_state() -> None:
    inside = next(b for b in FLEET if in_cohort(RID, b, 1000))
    outside = next(b for b in FLEET if not in_cohort(RID, b, 1000))
    now = 1_700_006_400
    assert offer().answer(BoxView(inside), now) is Answer.OFFER
    assert offer().answer(BoxView(outside), now) is Answer.NOT_IN_COHORT
    answers = {st: offer(st).answer(BoxView(inside), now) for st in State}
    assert answers == {
        S.PENDING: Answer.STOPPED, S.ACTIVE: Answer.OFFER, S.PAUSED: Answer.PAUSED,
        S.SUCCEEDED: Answer.OFFER, S.ABORTED: Answer.STOPPED, S.COMPLETED: Answer.OFFER,
    }  # fmt: skip
    assert offer(S.PAUSED).answer(BoxView(inside, targets_release=True), now) is Answer.OFFER
    night = offer(windows=(Window.parse("22:00-02:00"),))
    assert night.answer(BoxView(inside), now + 12 * 3600) is Answer.OUTSIDE_WINDOW
    assert night.answer(BoxView(inside), now + 23 * 3600) is Answer.OFFER


def test_a_box_that_did_not_say_who_it_is_is_offered_only_the_whole_fleets_phase() -> None:
    """``box=None`` (no signed report, so no id: fwdist.app.App's rule): in no cohort but
    100 %'s; the state still decides first, and the window after."""
    now = 1_700_006_400
    answers = {(st, share): offer(st, share).answer(None, now)
               for st in (S.ACTIVE, S.PAUSED, S.ABORTED) for share in (100, 10_000)}
    assert answers == {
        (S.ACTIVE, 100): Answer.NOT_IN_COHORT, (S.ACTIVE, 10_000): Answer.OFFER,
        (S.PAUSED, 100): Answer.PAUSED, (S.PAUSED, 10_000): Answer.PAUSED,
        (S.ABORTED, 100): Answer.STOPPED, (S.ABORTED, 10_000): Answer.STOPPED,
    }  # fmt: skip
    night = offer(share=10_000, windows=(Window.parse("22:00-02:00"),))
    assert night.answer(None, now + 12 * 3600) is Answer.OUTSIDE_WINDOW
    policy = SyncPolicy(frozenset({("lockbox", "1.1.0"), ("lockbox", "1.2.0")}), (offer(),))
    assert [policy.answer("lockbox", v, None, now) for v in ("1.1.0", "1.2.0", "9.9.9")] == [
        Answer.NOT_IN_COHORT, Answer.OFFER, Answer.STOPPED]


def test_the_timestamps_windows_are_the_live_rollouts_per_product() -> None:
    night, noon = Window.parse("22:00-02:00"), Window.parse("12:00-12:30")

    def of(product: str, state: State, *windows: Window) -> RolloutOffer:
        return RolloutOffer(f"{product}@1.1.0-{len(windows)}", product, "1.1.0", state, 100,
                            windows)

    assert box_windows([
        of("lockbox", S.ACTIVE, night), of("lockbox", S.PAUSED, noon, night),
        of("gate", S.ACTIVE, noon), of("gate", S.ACTIVE),  # one without: any time
        of("door", S.ABORTED, noon), of("safe", S.SUCCEEDED, night),
    ]) == (("lockbox", ((720, 30), (1320, 240))), ("safe", ((1320, 240),)))
    assert box_windows([]) == ()


def test_retries_back_off_doubling_and_stop_after_the_count() -> None:
    policy = RetryPolicy(count=2, backoff_seconds=600)
    assert [retry_at(policy, n, 1000) for n in (1, 2, 3)] == [1600, 2200, None]
    assert retry_at(RetryPolicy(), 1, 1000) is None
    inside = next(b for b in FLEET if in_cohort(RID, b, 1000))
    o = offer(retry=policy)
    assert o.answer(BoxView(inside, failures=1, last_failure_at=1000), 1599) is Answer.BACKING_OFF
    assert o.answer(BoxView(inside, failures=1, last_failure_at=1000), 1600) is Answer.OFFER
    assert o.answer(BoxView(inside, failures=3, last_failure_at=0), 10**9) is Answer.NO_MORE_RETRIES


def test_an_offer_round_trips_through_json_and_refuses_nonsense() -> None:
    o = offer(S.PAUSED, 50, windows=(Window(60, 30),), retry=RetryPolicy(1, 5))
    doc = o.to_json()
    assert doc == {
        "id": RID, "product": "lockbox", "version": "1.1.0", "state": "paused", "share_bp": 50,
        "windows": ["01:00-01:30"], "retry": {"count": 1, "backoff_seconds": 5},
    }  # fmt: skip
    assert RolloutOffer.from_json(doc) == o
    for bad in ({**doc, "state": "bored"}, {**doc, "share_bp": 10_001}, {**doc, "id": 3}, {}):
        with pytest.raises(RolloutError, match=r"^malformed rollout offer"):
            RolloutOffer.from_json(bad)


# --- box reports as evidence -----------------------------------------------------------------


def box_report(
    running: str = "1.0.0", target: str | None = None, last: object = None
) -> report.Report:
    return report.Report(
        "box-1", 7, "lockbox", "lb-r2", running, bytes(8),
        report.TargetProgress(target, 10, 100) if target else None,
        80, BoxState.IDLE, last, 0,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_report_says_one_outcome_about_the_release() -> None:
    R = report.Outcome
    last = report.LastResult
    cases = [
        (box_report("1.1.0", last=last("1.1.0", R.SELF_TEST_FAILED)), Outcome.INSTALLED, None),
        (box_report(target="1.1.0", last=last("1.1.0", R.BUILD_FAILED)), Outcome.IN_PROGRESS, None),
        (box_report(target="1.2.0"), Outcome.HEARD, None),
        (box_report(last=last("1.0.5", R.BUILD_FAILED)), Outcome.HEARD, None),
        (box_report(last=last("1.1.0", R.BUILD_FAILED)), Outcome.FAILED, None),
        (box_report(last=last("1.1.0", R.UNUSABLE)), Outcome.FAILED, None),
        (box_report(last=last("1.1.0", R.FAILED)), Outcome.FAILED, None),
        (box_report(last=last("1.1.0", R.SELF_TEST_FAILED)), Outcome.REVERTED, None),
        (box_report(last=last("1.1.0", R.TRIALS_EXHAUSTED)), Outcome.REVERTED, None),
        (box_report("1.2.0", last=last("1.1.0", R.INSTALLED)), Outcome.INSTALLED, None),
        (box_report(last=last("1.1.0", R.REFUSED, int(Reason.EXPIRED))), Outcome.REJECTED, 6),
        (box_report(last=last("1.1.0", R.REFUSED, int(Reason.NOT_NEWER))), Outcome.NOT_ELIGIBLE, 8),
        (box_report(last=last("1.1.0", R.REFUSED, 200)), Outcome.REJECTED, 200),
    ]
    for rep, want, reason in cases:
        assert outcome(rep, "1.1.0") == (want, reason), rep
    assert evidence(cases[4][0], "1.1.0", 99) == Evidence("box-1", 7, 99, Outcome.FAILED, None)


def test_a_phone_follows_its_last_sync_listed_releases_and_their_rollouts() -> None:
    inside = next(b for b in FLEET if in_cohort(RID, b, 1000))
    outside = next(b for b in FLEET if not in_cohort(RID, b, 1000))
    doc = {
        "releases": [{"product": "lockbox", "version": v} for v in ("1.1.0", "1.2.0")],
        "rollouts": [offer(S.ABORTED).to_json(), offer().to_json()],
    }
    policy = SyncPolicy.from_sync(doc)
    now = 1_700_006_400
    assert policy.answer("lockbox", "1.1.0", BoxView(inside), now) is Answer.OFFER
    assert policy.answer("lockbox", "1.1.0", BoxView(outside), now) is Answer.NOT_IN_COHORT
    assert policy.answer("lockbox", "1.2.0", BoxView(outside), now) is Answer.OFFER  # no rollout
    assert policy.answer("lockbox", "1.3.0", BoxView(inside), now) is Answer.STOPPED  # not listed
    with pytest.raises(RolloutError, match=r"^malformed sync document"):
        SyncPolicy.from_sync({"releases": []})
