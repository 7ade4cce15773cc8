"""Rollouts on the server: the plans and machines in the database, decided when looked at.

The model is :mod:`fwdist.rollout` (sans-I/O); this module is its storage. A rollout's row
holds its plan, its machine's state and phase, when the phase began, and its latest
decision; ``rollout_events`` holds every transition with the decision it was made on.

Decisions are made lazily, whenever a rollout is read (its status, the list, a phone's
sync) and before a person's command: evidence reaches the server in batches, so there is
no moment to wake up for, and reading is when a decision can matter to someone. Each
evaluation runs in one transaction and writes only when the machine moved; two evaluations
at once are kept apart by a conditional update (``state`` and ``phase`` as read), and the
loser re-reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fwdist import report
from fwdist.errors import RolloutError
from fwdist.manifest import Version
from fwdist.rollout import (
    Decision,
    Event,
    Evidence,
    PhaseMachine,
    Plan,
    RolloutOffer,
    State,
    decide,
    evidence,
    offered_share,
    proceed,
    step,
)
from fwdist.server import db

LIVE = (State.PENDING, State.ACTIVE, State.PAUSED, State.SUCCEEDED)
"""States in which a rollout still changes; at most one rollout of a release is in one."""
WEIGHED = (State.ACTIVE, State.PAUSED)
"""States in which evidence is weighed (succeeded waits for a person; abort is still
possible there, but only a person's resume moves it, and resume re-weighs)."""


class NotFound(RolloutError):
    """No such rollout or release (the API answers 404)."""


class Conflict(RolloutError):
    """The command does not fit the rollout's state (the API answers 409)."""


class Lost(Exception):
    """Another evaluation moved the rollout first; read it again."""


@dataclass
class Loaded:
    """One rollout row as the model sees it."""

    rollout_id: str
    plan: Plan
    machine: PhaseMachine
    phase_began: int
    created_at: int
    decision: dict[str, Any] | None


def _load(conn: Connection, rollout_id: str) -> Loaded:
    row = conn.execute(sa.select(db.rollouts).where(db.rollouts.c.id == rollout_id)).first()
    if row is None:
        raise NotFound(f"no rollout {rollout_id}")
    plan = Plan.from_json(json.loads(row.plan))
    machine = PhaseMachine(len(plan.phases), State(row.state), row.phase)
    decision = json.loads(row.decision) if row.decision else None
    return Loaded(row.id, plan, machine, row.phase_began, row.created_at, decision)


def _eligible(conn: Connection, plan: Plan) -> list[str]:
    """Registered boxes of the product with every tag, not known to run a newer version."""
    b, t, r = db.boxes, db.box_tags, db.reports
    query = sa.select(b.c.id).where(b.c.product == plan.product)
    for tag in sorted(plan.tags):
        query = query.where(b.c.id.in_(sa.select(t.c.box_id).where(t.c.tag == tag)))
    ids = list(conn.execute(query).scalars())
    target = Version.parse(plan.version)
    running = conn.execute(
        sa.select(r.c.box_id, r.c.running_version).join(
            b, sa.and_(r.c.box_id == b.c.id, r.c.seq == b.c.last_seq)
        ).where(b.c.product == plan.product)
    ).all()
    newer = {box for box, version in running if Version.parse(version) > target}
    return [box for box in ids if box not in newer]


def _evidence(conn: Connection, plan: Plan, boxes: list[str], since: int) -> list[Evidence]:
    """Every report of those boxes received since ``since``, read for the release."""
    r = db.reports
    rows = conn.execute(
        sa.select(r.c.wire, r.c.received_at).where(
            r.c.box_id.in_(boxes), r.c.received_at >= since
        )
    ).all()
    return [evidence(report.decode(row.wire).report, plan.version, row.received_at) for row in rows]


def _decide(conn: Connection, got: Loaded, now: int) -> Decision:
    boxes = _eligible(conn, got.plan)
    evs = _evidence(conn, got.plan, boxes, got.phase_began)
    return decide(got.rollout_id, got.plan, got.machine.phase, got.phase_began, now, boxes, evs)


def _save(conn: Connection, got: Loaded, state: State, phase: int, decision: Decision | None,
          events_from: int) -> None:
    """Write the machine's new state and the transitions fired since ``events_from``; the
    update holds only if the row still says what was read (else :class:`Lost`)."""
    m = got.machine
    values: dict[str, Any] = {"state": m.state.value, "phase": m.phase}
    if m.phase != phase or (state is State.PENDING and m.state is State.ACTIVE):
        values["phase_began"] = m.history[-1].at
    if decision is not None:
        values["decision"] = json.dumps(decision.to_json(), sort_keys=True)
    ro = db.rollouts
    done = conn.execute(
        ro.update()
        .where(ro.c.id == got.rollout_id, ro.c.state == state.value, ro.c.phase == phase)
        .values(**values)
    )
    if done.rowcount != 1:
        raise Lost(got.rollout_id)
    base = conn.execute(
        sa.select(sa.func.count()).select_from(db.rollout_events)
        .where(db.rollout_events.c.rollout_id == got.rollout_id)
    ).scalar_one()
    doc = json.dumps(decision.to_json(), sort_keys=True) if decision is not None else None
    rows = [
        {"rollout_id": got.rollout_id, "n": base + i, "at": t.at, "event": t.event.value,
         "before": t.before.value, "after": t.after.value, "phase": t.phase,
         "decision": doc if t.event in AUTOMATIC else None}
        for i, t in enumerate(m.history[events_from:])
    ]
    if rows:
        conn.execute(db.rollout_events.insert(), rows)


AUTOMATIC = frozenset({Event.CRITERIA_MET, Event.AUTO_ABORT, Event.START, Event.FINISH})


def _news(stored: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a decision says something the stored one did not (its time aside), so that
    reading a rollout writes only when the evidence changed."""
    if stored is None:
        return True
    return {k: v for k, v in stored.items() if k != "at"} != {
        k: v for k, v in new.items() if k != "at"}


def _evaluate(conn: Connection, rollout_id: str, now: int) -> Loaded:
    """Weigh the evidence until the machine stops moving (a phase whose criteria already
    hold is passed at once); write what changed."""
    got = _load(conn, rollout_id)
    for _ in range(len(got.plan.phases) + 1):
        if got.machine.state not in WEIGHED:
            return got
        state, phase, before = got.machine.state, got.machine.phase, len(got.machine.history)
        decision = _decide(conn, got, now)
        fired = step(got.machine, got.plan, decision)
        stored = got.decision
        got.decision = decision.to_json()
        if not fired:
            if _news(stored, got.decision):  # what was last decided, for status and dashboard
                _save(conn, got, state, phase, decision, before)
            return got
        _save(conn, got, state, phase, decision, before)
        if got.machine.phase != phase:
            got.phase_began = now
    return got


def _retrying(engine: Engine, fn: Any, *args: Any) -> Any:
    """``fn(conn, *args)`` in one transaction, once more if another evaluation won a race."""
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                return fn(conn, *args)
        except (Lost, sa.exc.IntegrityError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- operations


def current_share(got: Loaded, now: int) -> int:
    """The share phones offer now: none before the start or after an abort, the whole last
    phase once completed, else the phase's (widened by the rate limit)."""
    m, plan = got.machine, got.plan
    if m.state in (State.PENDING, State.ABORTED):
        return 0
    if m.state is State.COMPLETED:
        return plan.phases[-1].share_bp
    eligible = (got.decision or {}).get("eligible", 0)
    return offered_share(plan, m.phase, got.phase_began, now, eligible)


def status_json(conn: Connection, got: Loaded, now: int) -> dict[str, Any]:
    """The rollout as the API shows it: plan, state, phase, share, latest decision, history."""
    e = db.rollout_events
    events = conn.execute(
        sa.select(e).where(e.c.rollout_id == got.rollout_id).order_by(e.c.n)
    ).all()
    m, plan = got.machine, got.plan
    return {
        "id": got.rollout_id,
        "product": plan.product,
        "version": plan.version,
        "state": m.state.value,
        "phase": m.phase,
        "phases": len(plan.phases),
        "phase_began": got.phase_began,
        "created_at": got.created_at,
        "share_bp": current_share(got, now),
        "plan": plan.to_json(),
        "decision": got.decision,
        "events": [
            {"at": ev.at, "event": ev.event, "before": ev.before, "after": ev.after,
             "phase": ev.phase, "decision": json.loads(ev.decision) if ev.decision else None}
            for ev in events
        ],
    }


def _next_id(conn: Connection, plan: Plan) -> str:
    ro = db.rollouts
    n = conn.execute(
        sa.select(sa.func.count()).select_from(ro)
        .where(ro.c.product == plan.product, ro.c.version == plan.version)
    ).scalar_one()
    return f"{plan.release}-{n + 1}"


def _start(conn: Connection, plan: Plan, now: int) -> dict[str, Any]:
    rel = conn.execute(
        sa.select(db.releases.c.state).where(
            db.releases.c.product == plan.product, db.releases.c.version == plan.version
        )
    ).first()
    if rel is None:
        raise NotFound(f"no release {plan.release} on this server (publish it first)")
    if rel.state != "published":
        raise Conflict(f"{plan.release} is {rel.state}: it cannot be rolled out")
    ro = db.rollouts
    live = conn.execute(
        sa.select(ro.c.id).where(
            ro.c.product == plan.product, ro.c.version == plan.version,
            ro.c.state.in_([s.value for s in LIVE]),
        )
    ).first()
    if live is not None:
        raise Conflict(f"{plan.release} already has a rollout in progress: {live.id}")
    rollout_id = _next_id(conn, plan)
    conn.execute(ro.insert().values(
        id=rollout_id, product=plan.product, version=plan.version,
        plan=json.dumps(plan.to_json(), sort_keys=True), state=State.PENDING.value, phase=0,
        phase_began=now, created_at=now, decision=None,
    ))
    got = _load(conn, rollout_id)
    got.machine.fire(Event.START, now)
    _save(conn, got, State.PENDING, 0, None, 0)
    return status_json(conn, _evaluate(conn, rollout_id, now), now)


def start(engine: Engine, plan: Plan, now: int) -> dict[str, Any]:
    """Create the release's rollout and start its first phase; its status."""
    result: dict[str, Any] = _retrying(engine, _start, plan, now)
    return result


class Command:
    """What a person may do to a rollout from the command line or the API."""

    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    ALL = ("pause", "resume", "abort")


def _command(conn: Connection, rollout_id: str, command: str, now: int) -> dict[str, Any]:
    got = _evaluate(conn, rollout_id, now)
    m = got.machine
    state, phase, before = m.state, m.phase, len(m.history)
    try:
        if command == Command.RESUME:
            proceed(m, now)
        else:
            m.fire(Event(command), now)
    except RolloutError as e:
        raise Conflict(f"{rollout_id}: {e}") from None
    _save(conn, got, state, phase, None, before)
    if m.phase != phase:
        got.phase_began = now
    return status_json(conn, _evaluate(conn, rollout_id, now), now)


def command(engine: Engine, rollout_id: str, what: str, now: int) -> dict[str, Any]:
    """A person's pause, resume or abort; the rollout's status after it."""
    if what not in Command.ALL:
        raise NotFound(f"no rollout command {what!r} (pause, resume, abort)")
    result: dict[str, Any] = _retrying(engine, _command, rollout_id, what, now)
    return result


def _status(conn: Connection, rollout_id: str, now: int) -> dict[str, Any]:
    return status_json(conn, _evaluate(conn, rollout_id, now), now)


def status(engine: Engine, rollout_id: str, now: int) -> dict[str, Any]:
    """The rollout's status, after weighing what has arrived since it was last read."""
    result: dict[str, Any] = _retrying(engine, _status, rollout_id, now)
    return result


def _ids(conn: Connection, product: str | None, version: str | None) -> list[str]:
    ro = db.rollouts
    query = sa.select(ro.c.id).order_by(ro.c.created_at, ro.c.id)
    if product is not None:
        query = query.where(ro.c.product == product)
    if version is not None:
        query = query.where(ro.c.version == version)
    return list(conn.execute(query).scalars())


def _list(conn: Connection, product: str | None, version: str | None,
          now: int) -> list[dict[str, Any]]:
    return [_status(conn, rid, now) for rid in _ids(conn, product, version)]


def list_rollouts(engine: Engine, now: int, product: str | None = None,
                  version: str | None = None) -> list[dict[str, Any]]:
    """Every rollout (or one product's, or one release's), oldest first, each weighed."""
    result: list[dict[str, Any]] = _retrying(engine, _list, product, version, now)
    return result


def _yank(conn: Connection, product: str, version: str, now: int) -> list[str]:
    r = db.releases
    found = conn.execute(
        r.update().where(r.c.product == product, r.c.version == version).values(state="yanked")
    )
    if found.rowcount != 1:
        raise NotFound(f"no release {product}@{version} on this server")
    stopped = []
    for rid in _ids(conn, product, version):
        got = _load(conn, rid)
        m = got.machine
        if (m.state, Event.YANK) in _YANKABLE:
            state, phase, before = m.state, m.phase, len(m.history)
            m.fire(Event.YANK, now)
            _save(conn, got, state, phase, None, before)
            stopped.append(rid)
    return stopped


_YANKABLE = frozenset((s, Event.YANK) for s in (*LIVE, State.COMPLETED))


def yank(engine: Engine, product: str, version: str, now: int) -> list[str]:
    """Withdraw a release: phones stop offering it at their next sync, and every rollout of
    it stops (``yank``). Returns the rollouts stopped. Yanking twice changes nothing more."""
    result: list[str] = _retrying(engine, _yank, product, version, now)
    return result


def _offers(conn: Connection, now: int) -> list[RolloutOffer]:
    ro = db.rollouts
    live = [s.value for s in (*LIVE, State.COMPLETED)]
    ids = conn.execute(
        sa.select(ro.c.id).where(ro.c.state.in_(live)).order_by(ro.c.created_at, ro.c.id)
    ).scalars()
    out = []
    for rid in list(ids):
        got = _evaluate(conn, rid, now)
        plan = got.plan
        out.append(RolloutOffer(rid, plan.product, plan.version, got.machine.state,
                                current_share(got, now), plan.windows, plan.retry))
    return out


def offers(engine: Engine, now: int) -> list[RolloutOffer]:
    """What ``/v1/sync`` tells phones: every rollout that is not stopped, weighed now."""
    result: list[RolloutOffer] = _retrying(engine, _offers, now)
    return result


def withheld(engine: Engine) -> set[tuple[str, str]]:
    """Releases a phone must not be given at all: those whose every rollout was aborted
    (a release with no rollout is offered to every box, as before rollouts existed)."""
    ro = db.rollouts
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ro.c.product, ro.c.version, ro.c.state)).all()
    states: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        states.setdefault((row.product, row.version), set()).add(row.state)
    return {rel for rel, seen in states.items() if seen == {State.ABORTED.value}}
