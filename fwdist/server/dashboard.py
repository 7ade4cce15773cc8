"""The dashboard on the fleet server: its read model and logins over the fleet database.

:mod:`fwdist.dashboard` draws pages from plain data; this module is where that data comes
from: each box's latest report (as the fleet summary counts them), the report history, the
rollouts as :mod:`fwdist.server.rollouts` weighs them, and the API tokens. The curve's time
axis is when the server *received* each report: the fleet as the server came to know it,
since a box's own clock is only a lower bound and phones deliver late.

Mounted at ``/dashboard`` through :func:`routes` like every other route module; the mount
builds the dashboard on the first request, when the server's engine is known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from fwdist.dashboard import (
    BoxDetail,
    BoxSummary,
    FleetSample,
    PhaseCounts,
    PhaseView,
    Principal,
    ProductFleet,
    ReleaseView,
    ReportRow,
    RolloutView,
    create_app,
)
from fwdist.protocol import Reason
from fwdist.rollout import format_share
from fwdist.server import auth, catalog, db, fleet, registry, rollouts, server_keys
from fwdist.server.context import Server, blocking

MOUNT = "/dashboard"
SAMPLES = 48  # points on the curve: enough to see a phase's step, few enough to draw fast
MAX_BOXES = 200  # rows of the box list; the fleet section counts them all
LOGIN_SCOPES = frozenset({auth.Scope.READ, auth.Scope.RELEASE})
CACHE_SECONDS = 1.0  # every open page polls: one computation per second serves them all


def history(rows: Sequence[Any], samples: int = SAMPLES) -> tuple[FleetSample, ...]:
    """The versions the boxes ran over time, from their reports in order of arrival.

    ``rows``: (box_id, seq, received_at, running_version), sorted by received_at. A box
    counts with the version of its highest seq received so far (a late old report does not
    move it back), from its first report on; ``samples`` evenly spaced moments from the
    first report to the last, each counting every report received by then.
    """
    if not rows:
        return ()
    t0, t1 = rows[0][2], rows[-1][2]
    moments = sorted({t0 + (t1 - t0) * i // max(samples - 1, 1) for i in range(samples)})
    latest: dict[str, tuple[int, str]] = {}
    out, i = [], 0
    for at in moments:
        while i < len(rows) and rows[i][2] <= at:
            box_id, seq, _, version = rows[i]
            if box_id not in latest or latest[box_id][0] < seq:
                latest[box_id] = (seq, version)
            i += 1
        counts: dict[str, int] = {}
        for _, version in latest.values():
            counts[version] = counts.get(version, 0) + 1
        out.append(FleetSample(at, dict(sorted(counts.items()))))
    return tuple(out)


def _reason_label(code: int) -> str:
    try:
        return Reason(code).name.lower().replace("_", " ")
    except ValueError:
        return f"reason {code}"


def _counts(decision: dict[str, Any] | None) -> PhaseCounts:
    d = decision or {}
    got = d.get("outcomes", {})
    return PhaseCounts(
        eligible=d.get("eligible", 0),
        offered=d.get("offered", 0),
        in_progress=got.get("in_progress", 0),
        installed=got.get("installed", 0),
        failed=got.get("failed", 0) + got.get("rejected", 0),
        reverted=got.get("reverted", 0),
        not_heard_from=d.get("not_heard", 0),
        heard_from=d.get("heard", 0),
    )


def rollout_view(status: dict[str, Any]) -> RolloutView:
    """One rollout's status (``rollouts.status_json``) as the dashboard shows it.

    A finished phase shows the decision its last transition was made on; the current one
    its latest decision; a phase not begun, zeros.
    """
    current, state = status["phase"], status["state"]
    last_decision: dict[int, dict[str, Any]] = {}
    began: dict[int, int] = {}
    for ev in status["events"]:
        if ev["decision"] is not None:
            last_decision[ev["phase"]] = ev["decision"]
        if ev["event"] == "start":  # recorded in the phase it left: from succeeded, the next
            began.setdefault(ev["phase"] + (ev["before"] == "succeeded"), ev["at"])
    if state != "pending":
        began[current] = status["phase_began"]
    phases = []
    for i, phase in enumerate(status["plan"]["phases"]):
        if i < current or (i == current and state == "completed"):
            label, decision = "succeeded", last_decision.get(i, status["decision"])
        elif i == current:
            label, decision = state, status["decision"]
        else:
            label, decision = "pending", None
        started = began.get(i) if i <= current else None
        phases.append(PhaseView(i + 1, phase["share_bp"] / 100, label, started,
                                _counts(decision)))  # fmt: skip
    now = status["decision"] or {}
    reasons = {"install failed": now.get("outcomes", {}).get("failed", 0),
               "reverted after the test boot": now.get("outcomes", {}).get("reverted", 0)}
    for code, n in now.get("reasons", {}).items():
        reasons[f"rejected: {_reason_label(int(code))}"] = n
    return RolloutView(
        id=status["id"],
        product=status["product"],
        version=status["version"],
        state=f"{state}, offered to {format_share(status['share_bp'])}",
        phases=tuple(phases),
        failure_reasons={k: n for k, n in reasons.items() if n},
        decision=now.get("why"),
    )


def release_view(r: dict[str, Any]) -> ReleaseView:
    """One release as ``catalog.list_releases`` lists it; payload 0 is the full image."""
    full = next((p["bytes"] for p in r["payloads"] if p["index"] == 0), 0)
    return ReleaseView(r["product"], r["version"], r["state"], r["published_at"],
                       len(r["payloads"]), full)  # fmt: skip


def _when_target(r: dict[str, Any]) -> str | None:
    if r["target_version"] is None:
        return None
    return f"{r['target_version']} ({r['held']:,} of {r['total']:,} B)"


def _result(r: dict[str, Any]) -> str | None:
    if r["last_outcome"] is None:
        return None
    text = f"{r['last_version']}: {r['last_outcome'].replace('_', ' ')}"
    return text + (f" ({_reason_label(r['last_reason'])})" if r["last_reason"] else "")


def report_row(r: dict[str, Any]) -> ReportRow:
    return ReportRow(r["seq"], r["received_at"], r["running_version"],
                     r["state"].replace("_", " "), _when_target(r), r["battery"],
                     _result(r))  # fmt: skip


def box_summary(b: dict[str, Any]) -> BoxSummary:
    last = b["last_report"]
    return BoxSummary(
        b["id"], b["product"], b["hardware"],
        last["running_version"] if last else None,
        last["state"].replace("_", " ") if last else None,
        last["battery"] if last else None,
        last["received_at"] if last else None,
        tuple(b["tags"]),
    )  # fmt: skip


class FleetReadModel:
    """The dashboard's :class:`~fwdist.dashboard.ReadModel` over the fleet database.

    The fleet and the rollouts are computed at most once per ``CACHE_SECONDS`` whatever the
    number of open pages (each polls for its live update); a box page is read when asked.
    """

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine, self.clock = engine, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            if hit is None or now - hit[0] >= CACHE_SECONDS:
                hit = (now, compute())
                self._cache[key] = hit
            return hit[1]

    def _fleet(self) -> tuple[ProductFleet, ...]:
        r = db.reports
        out = []
        for product, p in fleet.summary(self.engine)["products"].items():
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(r.c.box_id, r.c.seq, r.c.received_at, r.c.running_version)
                    .join(db.boxes, db.boxes.c.id == r.c.box_id)
                    .where(db.boxes.c.product == product)
                    .order_by(r.c.received_at, r.c.box_id, r.c.seq)
                ).all()
            out.append(ProductFleet(product, p["boxes"], p["heard_from"], p["versions"],
                                    p["in_progress"], p["failed"], history(rows)))  # fmt: skip
        return tuple(out)

    def fleet(self) -> tuple[ProductFleet, ...]:
        result: tuple[ProductFleet, ...] = self._cached("fleet", self._fleet)
        return result

    def rollouts(self) -> tuple[RolloutView, ...]:
        def compute() -> tuple[RolloutView, ...]:
            listed = rollouts.list_rollouts(self.engine, int(self.clock()))
            return tuple(rollout_view(s) for s in reversed(listed))  # newest first

        result: tuple[RolloutView, ...] = self._cached("rollouts", compute)
        return result

    def releases(self) -> tuple[ReleaseView, ...]:
        def compute() -> tuple[ReleaseView, ...]:
            return tuple(release_view(r) for r in reversed(catalog.list_releases(self.engine)))

        result: tuple[ReleaseView, ...] = self._cached("releases", compute)
        return result

    def boxes(self) -> tuple[BoxSummary, ...]:
        def compute() -> tuple[BoxSummary, ...]:
            listed = registry.list_boxes(self.engine, None, None)[:MAX_BOXES]
            return tuple(box_summary(b) for b in listed)

        result: tuple[BoxSummary, ...] = self._cached("boxes", compute)
        return result

    def box(self, box_id: str, limit: int) -> BoxDetail | None:
        got = registry.get_box(self.engine, box_id, limit)
        if got is None:
            return None
        return BoxDetail(box_summary(got), tuple(report_row(r) for r in got["history"]))


class TokenLogins:
    """The dashboard's :class:`~fwdist.dashboard.Authenticator`: API tokens of scope read or
    release. The session names the token by its SHA-256 (never the secret), so a revoked
    token is found and refused at the session's next request."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _row(self, digest: bytes) -> Any:
        t = db.tokens
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t).where(t.c.secret_sha256 == digest)).first()

    def _allowed(self, row: Any) -> bool:
        return row is not None and row.revoked_at is None and (
            auth.Scope(row.scope) in LOGIN_SCOPES)

    def login(self, secret: str) -> Principal | None:
        digest = auth.secret_sha256(secret)
        row = self._row(digest)
        return Principal(digest.hex(), row.name) if self._allowed(row) else None

    def active(self, principal: Principal) -> bool:
        try:
            digest = bytes.fromhex(principal.token_id)
        except ValueError:
            return False
        return self._allowed(self._row(digest))


class LazyDashboard:
    """An ASGI app that builds the dashboard on its first request, from the server that the
    enclosing application carries (``routes()`` runs before the engine exists).

    Its session key comes from the database (:mod:`fwdist.server.server_keys`), so a restart
    or a second server process on the same database keeps everyone logged in.
    """

    def __init__(self) -> None:
        self._app: ASGIApp | None = None

    async def build(self, server: Server) -> ASGIApp:
        if self._app is None:
            key = await blocking(server_keys.get_or_create, server.engine,
                                 server_keys.KeyName.DASHBOARD_SESSIONS, server.now())
            if self._app is None:  # (two first requests: both read the same stored key)
                self._app = create_app(FleetReadModel(server.engine, server.clock),
                                       TokenLogins(server.engine), key=key, base=MOUNT,
                                       clock=server.clock)  # fmt: skip
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope["app"].state.server
        assert isinstance(server, Server)
        await (await self.build(server))(scope, receive, send)


def routes() -> list[BaseRoute]:
    return [Mount(MOUNT, app=LazyDashboard())]
