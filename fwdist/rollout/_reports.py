"""A signed box report read as evidence about one release (:class:`Evidence`).

The report (:mod:`fwdist.report`) says what the box runs, what it is receiving and how its
last install attempt ended; the rollout needs one :class:`Outcome` for its own release.
The order matters: running the release beats everything (an earlier failure was retried
and succeeded), then receiving it (a retry in progress), then how the last attempt at it
ended; a box that says nothing about the release was merely heard from.
"""

from __future__ import annotations

from fwdist import report
from fwdist.protocol import Reason
from fwdist.rollout._evidence import Evidence, Outcome, rejection

LAST: dict[report.Outcome, Outcome] = {
    report.Outcome.INSTALLED: Outcome.INSTALLED,  # installed, since moved on
    report.Outcome.BUILD_FAILED: Outcome.FAILED,
    report.Outcome.UNUSABLE: Outcome.FAILED,
    report.Outcome.FAILED: Outcome.FAILED,
    report.Outcome.SELF_TEST_FAILED: Outcome.REVERTED,
    report.Outcome.TRIALS_EXHAUSTED: Outcome.REVERTED,
    report.Outcome.REFUSED: Outcome.REJECTED,  # unless its reason says "not eligible"
}


def outcome(rep: report.Report, version: str) -> tuple[Outcome, int | None]:
    """What ``rep`` says about ``version`` of its product, and the reason code if refused."""
    if rep.running_version == version:
        return Outcome.INSTALLED, None
    if rep.target is not None and rep.target.version == version:
        return Outcome.IN_PROGRESS, None
    last = rep.last
    if last is None or last.version != version:
        return Outcome.HEARD, None
    if last.outcome is report.Outcome.REFUSED:
        try:
            return rejection(Reason(last.reason)), last.reason
        except ValueError:  # a reason this side does not know yet: not "not eligible"
            return Outcome.REJECTED, last.reason
    return LAST[last.outcome], None


def evidence(rep: report.Report, version: str, seen_at: int) -> Evidence:
    """The report as evidence; ``seen_at`` is the latest time its session can have happened."""
    found, reason = outcome(rep, version)
    return Evidence(rep.box_id, rep.seq, seen_at, found, reason)
