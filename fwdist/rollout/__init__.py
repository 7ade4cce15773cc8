"""Rollouts a release engineer controls: phases, cohorts, and decisions from late evidence.

Sans-I/O: the plan (:class:`Plan`), the phase machine (:class:`PhaseMachine`, a table),
cohorts every phone computes alike (:func:`in_cohort`), the decision from batched box
reports (:func:`decide`), the controller that applies it (:func:`step`), and the phone's
offer rule (:class:`RolloutOffer`). The server stores and serves them; docs/rollouts.md
explains the model.
"""

from fwdist.rollout._cohort import in_cohort, point, position
from fwdist.rollout._control import proceed, step
from fwdist.rollout._evidence import (
    FAILURES,
    FINISHED,
    NOT_ELIGIBLE,
    Decision,
    Evidence,
    Outcome,
    Tally,
    Verdict,
    decide,
    offered_share,
    rejection,
    tally,
)
from fwdist.rollout._machine import OFFERING, TRANSITIONS, Event, PhaseMachine, State, Transition
from fwdist.rollout._offer import (
    Answer,
    BoxView,
    RolloutOffer,
    SyncPolicy,
    box_windows,
    in_window,
    retry_at,
)
from fwdist.rollout._plan import (
    WHOLE,
    AbortPolicy,
    Criteria,
    Phase,
    Plan,
    RetryPolicy,
    Window,
    format_share,
    parse_share,
)
from fwdist.rollout._reports import evidence, outcome

__all__ = [
    "FAILURES",
    "FINISHED",
    "NOT_ELIGIBLE",
    "OFFERING",
    "TRANSITIONS",
    "WHOLE",
    "AbortPolicy",
    "Answer",
    "BoxView",
    "Criteria",
    "Decision",
    "Event",
    "Evidence",
    "Outcome",
    "Phase",
    "PhaseMachine",
    "Plan",
    "RetryPolicy",
    "RolloutOffer",
    "State",
    "SyncPolicy",
    "Tally",
    "Transition",
    "Verdict",
    "Window",
    "box_windows",
    "decide",
    "evidence",
    "format_share",
    "in_cohort",
    "in_window",
    "offered_share",
    "outcome",
    "parse_share",
    "point",
    "position",
    "proceed",
    "rejection",
    "retry_at",
    "step",
    "tally",
]
