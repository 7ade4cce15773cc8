"""The dashboard's server side: a rollout's status as phases, and logins over real tokens."""

from __future__ import annotations

from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fwdist.dashboard import PhaseCounts, Principal
from fwdist.server import auth, db, server_keys
from fwdist.server.app import make_app
from fwdist.server.auth import Scope
from fwdist.server.context import Server
from fwdist.server.dashboard import TokenLogins, rollout_view
from fwdist.server.process import open_database


def decision(phase: int, **outcomes: int) -> dict[str, object]:
    return {"phase": phase, "eligible": 40, "offered": 10 if phase == 0 else 40, "heard": 12,
            "not_heard": 3, "outcomes": outcomes, "reasons": {"3": 2}, "why": f"p{phase}"}


def status(state: str, phase: int) -> dict[str, object]:
    events = [
        {"at": 100, "event": "start", "before": "pending", "after": "active", "phase": 0,
         "decision": None},
        {"at": 200, "event": "criteria_met", "before": "active", "after": "succeeded",
         "phase": 0, "decision": decision(0, installed=9, failed=1)},
        {"at": 200, "event": "start", "before": "succeeded", "after": "active", "phase": 0,
         "decision": None},
    ]  # fmt: skip
    return {
        "id": "lockbox@1.1.0-1", "product": "lockbox", "version": "1.1.0", "state": state,
        "phase": phase, "phase_began": 200, "share_bp": 1000,
        "plan": {"phases": [{"share_bp": 100}, {"share_bp": 1000}, {"share_bp": 10_000}]},
        "decision": decision(phase, installed=20, in_progress=4, failed=3, rejected=2,
                             reverted=1),
        "events": events,
    }  # fmt: skip


def test_a_status_becomes_phases_with_each_phase_counted_by_its_own_decision() -> None:
    view = rollout_view(status("active", 1))
    assert [(p.index, p.share, p.state, p.started_at) for p in view.phases] == [
        (1, 1.0, "succeeded", 100), (2, 10.0, "active", 200), (3, 100.0, "pending", None)
    ]  # fmt: skip
    assert view.phases[0].counts == PhaseCounts(40, 10, 0, 9, 1, 0, 3, 12)
    assert view.phases[1].counts == PhaseCounts(40, 40, 4, 20, 5, 1, 3, 12)  # failed + rejected
    assert view.phases[2].counts == PhaseCounts(0, 0, 0, 0, 0, 0, 0, 0)
    assert view.state == "active, offered to 10 %"
    assert view.failure_reasons == {"install failed": 3, "reverted after the test boot": 1,
                                    "rejected: bad signature": 2}  # fmt: skip
    assert (view.decision, view.coverage) == ("p1", (12, 40))


def test_a_completed_rollout_shows_its_last_phase_succeeded() -> None:
    view = rollout_view(status("completed", 2))
    assert [p.state for p in view.phases] == ["succeeded", "succeeded", "succeeded"]


def test_read_and_release_tokens_log_in_app_tokens_and_revoked_ones_do_not(
    tmp_path: Path,
) -> None:
    engine = open_database(tmp_path, None)
    try:
        secrets = {s: auth.create(engine, f"t-{s.value}", s, 1000) for s in Scope}
        logins = TokenLogins(engine)
        read = logins.login(secrets[Scope.READ])
        assert read is not None and read.name == "t-read"
        assert read.token_id == auth.secret_sha256(secrets[Scope.READ]).hex()
        assert logins.login(secrets[Scope.RELEASE]) is not None
        assert logins.login(secrets[Scope.APP]) is None
        assert logins.login("fwd_read_" + "x" * 43) is None
        assert logins.active(read)
        assert auth.revoke(engine, "t-read", 2000)
        assert not logins.active(read) and logins.login(secrets[Scope.READ]) is None
        assert not logins.active(Principal("not hex", "t-read"))
    finally:
        engine.dispose()


async def test_a_session_outlives_a_restart_and_holds_on_every_process_of_one_database(
    tmp_path: Path,
) -> None:
    engine = open_database(tmp_path, None)
    secret = auth.create(engine, "watcher", Scope.READ, 100)

    async def client_of(engine: Engine) -> httpx.AsyncClient:
        app = make_app(Server(tmp_path, engine))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://fleet.test")  # fmt: skip

    first = await client_of(engine)
    r = await first.post("/dashboard/login", data={"token": secret})
    assert (r.status_code, r.headers["location"]) == (303, "/dashboard/")
    cookie = first.cookies["fwdist_dashboard"]
    engine.dispose()
    again = open_database(tmp_path, None)  # a restart, or a second process on the same file
    for client in (first, await client_of(again), await client_of(again)):
        client.cookies.set("fwdist_dashboard", cookie)
        assert (await client.get("/dashboard/")).status_code == 200
        await client.aclose()
    with again.connect() as conn:
        keys = conn.execute(sa.select(db.server_keys.c.name)).scalars().all()
    assert keys == ["dashboard-sessions"]
    assert len(server_keys.get_or_create(again, server_keys.KeyName.DASHBOARD_SESSIONS, 5)) == 32
    again.dispose()
