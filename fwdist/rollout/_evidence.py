"""Decisions from late, batched evidence: what the box reports say about the current phase.

Reports reach the server only when a phone next has coverage, days late and hundreds at a
time, so a decision can never assume it has heard from the fleet. :func:`decide` is a pure
function of its inputs (the plan, the phase and when it began, the time, the eligible box
ids and the evidence) and records all of them in its :class:`Decision`, with the reporting
*coverage*: eligible boxes heard from since the phase began, over the eligible boxes. Each
box counts once, by its latest report (highest ``seq``) seen since the phase began.

The abort rule is AWS IoT Jobs': the share of failures among the cohort's *finished*
attempts, once at least ``min_finished`` boxes have finished. A failure is an install that
failed, a revert after the test boot, or a rejection for any reason but "not eligible"
(:data:`NOT_ELIGIBLE`: another product or hardware, or a box already on this release or a
newer one). Abort is weighed before success: a phase that meets its criteria while its
failures cross the threshold is aborted.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from fwdist.protocol import Reason
from fwdist.rollout._cohort import in_cohort
from fwdist.rollout._plan import WHOLE, Plan


class Outcome(enum.Enum):
    """What one report says about this release on its box."""

    HEARD = "heard"  # the box reported, and has not taken this release up
    IN_PROGRESS = "in_progress"  # the release is the box's target (receiving, built, testing)
    INSTALLED = "installed"  # the box runs the release
    FAILED = "failed"  # the install failed
    REVERTED = "reverted"  # reverted after its test boot
    REJECTED = "rejected"  # refused for a reason other than not being eligible
    NOT_ELIGIBLE = "not_eligible"  # refused as not eligible: no evidence about the release


FAILURES = frozenset({Outcome.FAILED, Outcome.REVERTED, Outcome.REJECTED})
FINISHED = FAILURES | {Outcome.INSTALLED}

NOT_ELIGIBLE = frozenset(
    {Reason.WRONG_PRODUCT, Reason.WRONG_HARDWARE, Reason.NOT_NEWER, Reason.OLDER_THAN_TARGET}
)
"""Rejection reasons that say the box should not have been offered it, not that it is bad."""


def rejection(reason: Reason) -> Outcome:
    """The outcome of a box rejecting the release for ``reason``."""
    return Outcome.NOT_ELIGIBLE if reason in NOT_ELIGIBLE else Outcome.REJECTED


@dataclass(frozen=True)
class Evidence:
    """One box report, reduced to what it says about the release being rolled out.

    ``seen_at`` is the latest time the session can have happened (the server's receipt
    time when nothing better is known); ``reason`` is the protocol's :class:`Reason` code
    for a rejection or a failure, when there is one.
    """

    box_id: str
    seq: int
    seen_at: int
    outcome: Outcome
    reason: int | None = None


class Verdict(enum.Enum):
    WAIT = "wait"  # neither abort nor the criteria hold yet
    CRITERIA_MET = "criteria_met"
    AUTO_ABORT = "auto_abort"


@dataclass(frozen=True)
class Tally:
    """The phase's counts: the fleet it may reach, and what its cohort reported."""

    eligible: int
    offered: int  # eligible boxes inside the cohort at the offered share
    heard: int  # eligible boxes heard from since the phase began
    offered_heard: int  # of them, inside the cohort
    outcomes: tuple[tuple[Outcome, int], ...]  # cohort boxes by latest outcome, enum order
    reasons: tuple[tuple[int, int], ...]  # failure reason code -> cohort boxes, by code

    def count(self, outcome: Outcome) -> int:
        return dict(self.outcomes).get(outcome, 0)

    @property
    def failures(self) -> int:
        return sum(self.count(o) for o in FAILURES)

    @property
    def finished(self) -> int:
        return sum(self.count(o) for o in FINISHED)

    @property
    def not_heard(self) -> int:
        return self.offered - self.offered_heard


@dataclass(frozen=True)
class Decision:
    """A verdict and everything it was made from, so it can be shown and checked later."""

    verdict: Verdict
    rollout_id: str
    phase: int
    phase_began: int
    at: int
    share_bp: int  # the share offered when decided (below the phase's under a rate limit)
    tally: Tally
    why: str

    @property
    def coverage(self) -> Fraction:
        """Eligible boxes heard from since the phase began, over the eligible boxes."""
        t = self.tally
        return Fraction(t.heard, t.eligible) if t.eligible else Fraction(0)

    @property
    def failure_share(self) -> Fraction:
        t = self.tally
        return Fraction(t.failures, t.finished) if t.finished else Fraction(0)

    def to_json(self) -> dict[str, Any]:
        t = self.tally
        return {
            "verdict": self.verdict.value,
            "rollout": self.rollout_id,
            "phase": self.phase,
            "phase_began": self.phase_began,
            "at": self.at,
            "share_bp": self.share_bp,
            "eligible": t.eligible,
            "offered": t.offered,
            "heard": t.heard,
            "offered_heard": t.offered_heard,
            "not_heard": t.not_heard,
            "outcomes": {o.value: n for o, n in t.outcomes},
            "reasons": {str(code): n for code, n in t.reasons},
            "coverage": [self.coverage.numerator, self.coverage.denominator],
            "failure_share": [self.failure_share.numerator, self.failure_share.denominator],
            "why": self.why,
        }


def offered_share(plan: Plan, phase: int, phase_began: int, now: int, eligible: int) -> int:
    """The share offered at ``now``: the phase's, or less while a rate limit widens it.

    Under ``rate_per_hour`` the phase grows from the previous phase's share by at most
    that many boxes per started hour, so the first hour's boxes are offered at once.
    """
    target = plan.phases[phase].share_bp
    if plan.rate_per_hour is None or eligible == 0:
        return target
    before = plan.phases[phase - 1].share_bp if phase else 0
    hours = max(0, now - phase_began) // 3600 + 1
    return min(target, before + plan.rate_per_hour * hours * WHOLE // eligible)


def tally(
    rollout_id: str,
    share_bp: int,
    since: int,
    eligible: Iterable[str],
    evidence: Iterable[Evidence],
) -> Tally:
    """Each eligible box's latest report since ``since``, counted inside and outside the cohort."""
    boxes = frozenset(eligible)
    latest: dict[str, Evidence] = {}
    for ev in evidence:
        if ev.box_id in boxes and ev.seen_at >= since:
            held = latest.get(ev.box_id)
            if held is None or (ev.seq, ev.seen_at) > (held.seq, held.seen_at):
                latest[ev.box_id] = ev
    cohort = {b for b in boxes if in_cohort(rollout_id, b, share_bp)}
    heard_in = [ev for b, ev in latest.items() if b in cohort]
    outcomes = Counter(ev.outcome for ev in heard_in)
    reasons = Counter(ev.reason for ev in heard_in if ev.outcome in FAILURES and ev.reason)
    return Tally(
        eligible=len(boxes),
        offered=len(cohort),
        heard=len(latest),
        offered_heard=len(heard_in),
        outcomes=tuple((o, outcomes[o]) for o in Outcome if outcomes[o]),
        reasons=tuple(sorted(reasons.items())),
    )


def decide(
    rollout_id: str,
    plan: Plan,
    phase: int,
    phase_began: int,
    now: int,
    eligible: Iterable[str],
    evidence: Iterable[Evidence],
) -> Decision:
    """Abort, success, or wait for the current phase, from what has been heard so far."""
    boxes = frozenset(eligible)
    share = offered_share(plan, phase, phase_began, now, len(boxes))
    t = tally(rollout_id, share, phase_began, boxes, evidence)
    abort, crit = plan.abort, plan.phases[phase].criteria

    def made(verdict: Verdict, why: str) -> Decision:
        return Decision(verdict, rollout_id, phase, phase_began, now, share, t, why)

    if t.finished >= abort.min_finished and t.failures * WHOLE >= abort.threshold_bp * t.finished:
        return made(
            Verdict.AUTO_ABORT,
            f"{t.failures} of {t.finished} finished boxes failed "
            f"(threshold {abort.threshold_bp / 100:g} %, minimum {abort.min_finished})",
        )
    missing = []
    if not t.eligible:  # boxes registered later join it; nothing is rolled out to no one
        missing.append("no eligible box yet")
    if share < plan.phases[phase].share_bp:
        missing.append("the rate limit is still widening the phase")
    installed = t.count(Outcome.INSTALLED)
    if installed * WHOLE < crit.installed_bp * t.offered:
        missing.append(f"{installed} of {t.offered} installed")
    heard_needed = min(crit.min_heard, t.offered)  # not more boxes than the phase offers
    if t.offered_heard < heard_needed:
        missing.append(f"heard from {t.offered_heard} of the {heard_needed} boxes required")
    if now - phase_began < crit.min_seconds:
        missing.append(f"{now - phase_began} s of the {crit.min_seconds} s required")
    if missing:
        return made(Verdict.WAIT, "; ".join(missing))
    return made(Verdict.CRITERIA_MET, f"{installed} of {t.offered} installed, criteria met")
