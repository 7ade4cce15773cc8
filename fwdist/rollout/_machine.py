"""The rollout's state machine, as a table (h11-style): ``(state, event) -> state``.

One machine per rollout; the current phase is its data (:attr:`PhaseMachine.phase`), the
state says what that phase is doing. Anything not in :data:`TRANSITIONS` is refused with a
:class:`~fwdist.errors.RolloutError` naming the state and the event, so a ``pause`` of an
aborted rollout is one clear line, never a silent no-op. A person fires ``pause``,
``resume``, ``abort`` and ``yank``; the controller (:func:`fwdist.rollout.step`) fires
``start``, ``criteria_met``, ``auto_abort`` and ``finish`` from a :class:`Decision`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from fwdist.errors import RolloutError


class State(enum.Enum):
    """What the rollout's current phase is doing."""

    PENDING = "pending"  # created, nothing offered yet
    ACTIVE = "active"  # the phase's cohort is offered; evidence is weighed
    PAUSED = "paused"  # a person stopped new offers; evidence is still weighed for abort
    SUCCEEDED = "succeeded"  # the phase met its criteria and waits for a person (manual)
    ABORTED = "aborted"  # stopped for good (by hand, by the evidence, or the release yanked)
    COMPLETED = "completed"  # the last phase succeeded: every eligible box is offered

    __hash__ = object.__hash__  # (as the lockbox's Session: looked up per event)


class Event(enum.Enum):
    START = "start"  # the first phase, or the next one after a success
    CRITERIA_MET = "criteria_met"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    AUTO_ABORT = "auto_abort"
    YANK = "yank"
    FINISH = "finish"  # the last phase's success closes the rollout (never fired by hand)

    __hash__ = object.__hash__


S, E = State, Event
_STOPPABLE = (S.PENDING, S.ACTIVE, S.PAUSED, S.SUCCEEDED)

TRANSITIONS: MappingProxyType[tuple[State, Event], State] = MappingProxyType(
    {
        (S.PENDING, E.START): S.ACTIVE,
        (S.ACTIVE, E.CRITERIA_MET): S.SUCCEEDED,
        (S.ACTIVE, E.PAUSE): S.PAUSED,
        (S.PAUSED, E.RESUME): S.ACTIVE,
        (S.SUCCEEDED, E.START): S.ACTIVE,
        (S.SUCCEEDED, E.PAUSE): S.PAUSED,
        (S.SUCCEEDED, E.FINISH): S.COMPLETED,
        **{(st, E.ABORT): S.ABORTED for st in _STOPPABLE},
        **{(st, E.YANK): S.ABORTED for st in (*_STOPPABLE, S.COMPLETED)},
        # evidence keeps arriving while paused, and failures seen then still count
        **{(st, E.AUTO_ABORT): S.ABORTED for st in (S.ACTIVE, S.PAUSED, S.SUCCEEDED)},
    }
)
"""Every allowed transition; each other (state, event) pair is an error."""

OFFERING = frozenset({S.ACTIVE, S.SUCCEEDED, S.COMPLETED})
"""States in which phones offer the release to the current cohort (paused: only to boxes
that already hold it as their target, so they finish what they started)."""


@dataclass(frozen=True)
class Transition:
    """One recorded step: what fired, from where to where, in which phase, when."""

    event: Event
    before: State
    after: State
    phase: int
    at: int


class PhaseMachine:
    """The table applied to one rollout: its state, its phase index, and its history.

    ``start`` from *succeeded* moves to the next phase; a start past the last phase is
    refused (the controller fires ``finish`` there instead).
    """

    def __init__(self, phases: int, state: State = S.PENDING, phase: int = 0) -> None:
        if not 0 <= phase < phases:
            raise RolloutError(f"phase {phase} of a rollout with {phases} phases")
        self.phases = phases
        self.state = state
        self.phase = phase
        self.history: list[Transition] = []

    @property
    def last_phase(self) -> bool:
        return self.phase == self.phases - 1

    def fire(self, event: Event, at: int) -> State:
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise RolloutError(f"a rollout that is {self.state.value} cannot {event.value}")
        advancing = self.state is S.SUCCEEDED and event is E.START
        if advancing and self.last_phase:
            raise RolloutError("the last phase succeeded: there is no next phase to start")
        if event is E.FINISH and not self.last_phase:
            raise RolloutError(f"phase {self.phase + 1} of {self.phases} is not the last")
        self.history.append(Transition(event, self.state, after, self.phase, at))
        self.state = after
        self.phase += advancing
        return after
