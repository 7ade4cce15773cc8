"""Rollouts stored and decided by the server (``fwdist.server.rollouts``) on a migrated
database: a 1 % -> 10 % -> 100 % rollout over 200 boxes driven by signed reports, the
automatic abort at its threshold, pause/resume/abort, yank, and what phones are told."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from fwdist import report
from fwdist.protocol import Reason
from fwdist.rollout import AbortPolicy, Criteria, Phase, Plan, State, in_cohort
from fwdist.server import db, rollouts
from tests.rollout_helpers import Fleet, fleet

BOXES = [f"box-{i:03d}" for i in range(200)]
T0 = 1_800_000_000
R = report.Outcome


@pytest.fixture
def f(tmp_path: Path) -> Fleet:
    out = fleet(tmp_path)
    out.release("1.1.0")
    out.release("1.2.0")
    out.boxes(BOXES)
    return out


def plan(version: str = "1.1.0", *shares: int, **kw: object) -> Plan:
    crit = Criteria(installed_bp=9000, min_heard=1)
    return Plan("lockbox", version, tuple(Phase(s, crit) for s in shares or (100, 1000, 10_000)),
                **kw)  # type: ignore[arg-type]


def cohort(rid: str, share: int) -> list[str]:
    return [b for b in BOXES if in_cohort(rid, b, share)]


def test_a_rollout_moves_one_percent_ten_percent_everyone_on_installs(f: Fleet) -> None:
    doc = rollouts.start(f.engine, plan(), T0)
    rid = doc["id"]
    assert rid == "lockbox@1.1.0-1"
    assert (doc["state"], doc["phase"], doc["share_bp"]) == ("active", 0, 100)
    d = doc["decision"]
    assert (d["eligible"], d["offered"], d["heard"], d["verdict"]) == (200, 4, 0, "wait")
    assert d["why"] == "0 of 4 installed; heard from 0 of the 1 boxes required"
    # three of the four install, one is still receiving: 75 % < 90 %
    first = cohort(rid, 100)
    for b in first[:3]:
        f.report(b, T0 + 10, running="1.1.0")
    f.report(first[3], T0 + 10, target="1.1.0")
    doc = rollouts.status(f.engine, rid, T0 + 20)
    assert (doc["state"], doc["phase"], doc["decision"]["why"]) == ("active", 0, "3 of 4 installed")
    f.report(first[3], T0 + 30, running="1.1.0")
    doc = rollouts.status(f.engine, rid, T0 + 40)
    assert (doc["state"], doc["phase"], doc["share_bp"], doc["phase_began"]) == (
        "active", 1, 1000, T0 + 40)
    assert doc["decision"]["offered"] == 18 and doc["decision"]["heard"] == 0
    # reports from before the phase began do not count for it
    ten = cohort(rid, 1000)
    for b in ten:
        f.report(b, T0 + 50, running="1.1.0")
    doc = rollouts.status(f.engine, rid, T0 + 60)
    assert (doc["phase"], doc["share_bp"]) == (2, 10_000)
    for b in BOXES[:180]:
        f.report(b, T0 + 70, running="1.1.0")
    doc = rollouts.status(f.engine, rid, T0 + 80)
    assert (doc["state"], doc["share_bp"]) == ("completed", 10_000)
    assert doc["decision"]["outcomes"] == {"installed": 180}
    events = [(e["event"], e["before"], e["after"], e["phase"], e["at"]) for e in doc["events"]]
    assert events == [
        ("start", "pending", "active", 0, T0),
        ("criteria_met", "active", "succeeded", 0, T0 + 40),
        ("start", "succeeded", "active", 0, T0 + 40),
        ("criteria_met", "active", "succeeded", 1, T0 + 60),
        ("start", "succeeded", "active", 1, T0 + 60),
        ("criteria_met", "active", "succeeded", 2, T0 + 80),
        ("finish", "succeeded", "completed", 2, T0 + 80),
    ]
    assert doc["events"][1]["decision"]["outcomes"] == {"installed": 4}
    offers = rollouts.offers(f.engine, T0 + 90)
    assert [(o.rollout_id, o.state, o.share_bp) for o in offers] == [
        (rid, State.COMPLETED, 10_000)]


def test_failures_trip_the_automatic_abort_at_the_threshold_and_not_before(f: Fleet) -> None:
    p = plan("1.2.0", 2500, 10_000, abort=AbortPolicy(threshold_bp=2000, min_finished=10))
    rid = rollouts.start(f.engine, p, T0)["id"]
    boxes = cohort(rid, 2500)
    assert len(boxes) == 46
    failed = report.LastResult("1.2.0", R.SELF_TEST_FAILED)
    refused = report.LastResult("1.2.0", R.REFUSED, int(Reason.NOT_NEWER))
    # 9 finished, 9 failed: below the minimum of 10 finished, nothing aborts
    for b in boxes[:9]:
        f.report(b, T0 + 1, last=failed)
    f.report(boxes[9], T0 + 1, last=refused)  # not eligible: no evidence either way
    doc = rollouts.status(f.engine, rid, T0 + 2)
    assert (doc["state"], doc["decision"]["verdict"]) == ("active", "wait")
    # 2 of 10 finished failed = 20 %: the threshold
    for b in boxes[:7]:
        f.report(b, T0 + 3, running="1.2.0")
    f.report(boxes[10], T0 + 3, running="1.2.0")
    doc = rollouts.status(f.engine, rid, T0 + 4)
    d = doc["decision"]
    assert doc["state"] == "aborted"
    assert d["outcomes"] == {"installed": 8, "reverted": 2, "not_eligible": 1}
    assert (d["verdict"], d["heard"], d["offered"], d["not_heard"]) == ("auto_abort", 11, 46, 35)
    assert d["coverage"] == [11, 200] and d["failure_share"] == [1, 5]
    assert d["why"] == "2 of 10 finished boxes failed (threshold 20 %, minimum 10)"
    assert doc["events"][-1]["event"] == "auto_abort"
    assert rollouts.offers(f.engine, T0 + 5) == []
    assert rollouts.withheld(f.engine) == {("lockbox", "1.2.0")}


def test_people_pause_resume_and_abort_and_wrong_commands_are_refused(f: Fleet) -> None:
    rid = rollouts.start(f.engine, plan(), T0)["id"]
    assert rollouts.command(f.engine, rid, "pause", T0 + 1)["state"] == "paused"
    [o] = rollouts.offers(f.engine, T0 + 2)
    assert (o.state, o.share_bp) == (State.PAUSED, 100)
    with pytest.raises(rollouts.Conflict, match=f"^{rid}: a rollout that is paused cannot pause$"):
        rollouts.command(f.engine, rid, "pause", T0 + 3)
    assert rollouts.command(f.engine, rid, "resume", T0 + 4)["state"] == "active"
    with pytest.raises(rollouts.Conflict, match="already has a rollout in progress"):
        rollouts.start(f.engine, plan(), T0 + 5)
    assert rollouts.command(f.engine, rid, "abort", T0 + 6)["state"] == "aborted"
    with pytest.raises(rollouts.Conflict, match="aborted cannot resume"):
        rollouts.command(f.engine, rid, "resume", T0 + 7)
    with pytest.raises(rollouts.NotFound, match=re.escape("no rollout lockbox@9.9.9-1")):
        rollouts.status(f.engine, "lockbox@9.9.9-1", T0)
    with pytest.raises(rollouts.NotFound, match=re.escape("no release lockbox@9.9.9")):
        rollouts.start(f.engine, plan("9.9.9"), T0)
    # a new rollout of the same release after an abort gets the next id (another cohort)
    assert rollouts.start(f.engine, plan(), T0 + 8)["id"] == "lockbox@1.1.0-2"


def test_a_manual_phase_waits_for_resume(f: Fleet) -> None:
    crit = Criteria(installed_bp=0, min_heard=0, manual=True)
    p = Plan("lockbox", "1.1.0", (Phase(100, crit), Phase(10_000, crit)))
    doc = rollouts.start(f.engine, p, T0)
    assert (doc["state"], doc["phase"]) == ("succeeded", 0)
    doc = rollouts.command(f.engine, doc["id"], "resume", T0 + 5)
    # the last phase's success finishes the rollout even when it is manual
    assert (doc["state"], doc["phase"], doc["phase_began"]) == ("completed", 1, T0 + 5)


def test_yank_stops_the_rollout_and_withholds_the_release(f: Fleet) -> None:
    rid = rollouts.start(f.engine, plan(), T0)["id"]
    assert rollouts.yank(f.engine, "lockbox", "1.1.0", T0 + 1) == [rid]
    doc = rollouts.status(f.engine, rid, T0 + 2)
    assert (doc["state"], doc["events"][-1]["event"]) == ("aborted", "yank")
    assert rollouts.yank(f.engine, "lockbox", "1.1.0", T0 + 3) == []
    with pytest.raises(rollouts.Conflict, match=re.escape("lockbox@1.1.0 is yanked")):
        rollouts.start(f.engine, plan(), T0 + 4)
    with pytest.raises(rollouts.NotFound, match=re.escape("no release lockbox@3.0.0")):
        rollouts.yank(f.engine, "lockbox", "3.0.0", T0)


def test_tags_and_newer_boxes_shape_the_eligible_fleet(f: Fleet) -> None:
    f.boxes(["eu-1", "eu-2", "eu-3"], tags=("eu",))
    f.report("eu-3", T0 - 100, running="2.0.0")  # already newer: not eligible
    doc = rollouts.start(f.engine, plan("1.1.0", 10_000, tags=frozenset({"eu"})), T0)
    assert (doc["decision"]["eligible"], doc["decision"]["offered"]) == (2, 2)


def test_reading_a_rollout_writes_only_when_the_evidence_changed(f: Fleet) -> None:
    rid = rollouts.start(f.engine, plan(), T0)["id"]

    def stored_at() -> int:
        with f.engine.connect() as conn:
            row = conn.execute(sa.select(db.rollouts.c.decision)).scalar_one()
        return int(json.loads(row)["at"])

    assert stored_at() == T0
    assert rollouts.status(f.engine, rid, T0 + 50)["decision"]["at"] == T0 + 50
    assert stored_at() == T0  # nothing new was heard: nothing written
    f.report(cohort(rid, 100)[0], T0 + 60, target="1.1.0")
    assert rollouts.status(f.engine, rid, T0 + 70)["decision"]["outcomes"] == {"in_progress": 1}
    assert stored_at() == T0 + 70


def test_the_servers_timestamp_carries_the_live_rollouts_windows_and_drops_them_after(
    f: Fleet, tmp_path: Path
) -> None:
    """``fwdist server --timestamp-key``: what each issue says of install windows, per
    product, as rollouts with and without windows start and stop."""
    from fwdist import trust
    from fwdist.rollout import Window
    from fwdist.server import stamping
    from fwdist.store import Store
    from tests.trust_helpers import ROOT_KEYS, TIMESTAMP_KEY, root_v1

    f.release("3.0.0", product="keysafe")
    store = Store.open(tmp_path / "stamped", create=True)
    with store.locked():
        store.put_root(trust.sign(root_v1(), ROOT_KEYS[:2]))
    stamper = stamping.Stamper(TIMESTAMP_KEY)  # type: ignore[arg-type]

    def windows(at: int) -> tuple[tuple[str, tuple[tuple[int, int], ...]], ...]:
        stamper.issue(store, at, engine=f.engine)
        return trust.decode_timestamp(store.get_timestamp() or b"").timestamp.windows

    assert windows(T0) == ()
    night = (Window.parse("01:00-04:00"), Window.parse("22:30-23:30"))
    first = rollouts.start(f.engine, plan("1.1.0", windows=night), T0)["id"]
    assert windows(T0 + 1) == (("lockbox", ((60, 180), (1350, 60))),)
    rollouts.command(f.engine, first, rollouts.Command.PAUSE, T0 + 2)
    assert windows(T0 + 2) == (("lockbox", ((60, 180), (1350, 60))),)  # paused still binds
    rollouts.command(f.engine, first, rollouts.Command.ABORT, T0 + 3)
    assert windows(T0 + 3) == ()  # aborted: any time again
    rollouts.start(f.engine, plan("1.2.0", windows=night[:1]), T0 + 4)
    rollouts.start(f.engine, Plan("keysafe", "3.0.0", (Phase(10_000, Criteria()),)), T0 + 4)
    assert windows(T0 + 5) == (("lockbox", ((60, 180),)),)  # keysafe's rollout has none
    assert stamping.rollout_windows(f.engine, T0 + 5) == {"keysafe": (), "lockbox": ((60, 180),)}
