"""The controller: a :class:`Decision` applied to a rollout's :class:`PhaseMachine`.

The only place automatic events are fired, so what a decision does is in one table-like
function: ``auto_abort`` on an abort verdict; on success ``criteria_met``, then (unless the
phase asks for a person) ``start`` of the next phase, or ``finish`` after the last one. A
decision about another phase than the machine's, or made while the machine is not weighing
evidence, changes nothing: late reports can arrive after the rollout moved on.
"""

from __future__ import annotations

from fwdist.rollout._evidence import Decision, Verdict
from fwdist.rollout._machine import Event, PhaseMachine, State
from fwdist.rollout._plan import Plan


def step(machine: PhaseMachine, plan: Plan, decision: Decision) -> list[Event]:
    """Fire what ``decision`` calls for; return the events fired, in order (maybe none)."""
    if decision.phase != machine.phase:
        return []
    fired: list[Event] = []

    def fire(event: Event) -> None:
        machine.fire(event, decision.at)
        fired.append(event)

    if decision.verdict is Verdict.AUTO_ABORT:
        if machine.state in (State.ACTIVE, State.PAUSED, State.SUCCEEDED):
            fire(Event.AUTO_ABORT)
        return fired
    if decision.verdict is Verdict.CRITERIA_MET and machine.state is State.ACTIVE:
        fire(Event.CRITERIA_MET)
        if machine.last_phase:
            fire(Event.FINISH)
        elif not plan.phases[machine.phase].criteria.manual:
            fire(Event.START)
    return fired


def proceed(machine: PhaseMachine, at: int) -> Event:
    """A person's ``resume``: out of *paused*, or on to the next phase after a manual gate."""
    event = Event.START if machine.state is State.SUCCEEDED else Event.RESUME
    machine.fire(event, at)
    return event
