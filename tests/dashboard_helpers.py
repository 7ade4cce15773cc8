"""A fake fleet for the dashboard's tests: a read model and an authenticator over plain data.

The tests change the fleet while a page is open (a report arrives, a phase advances), so the
fake is mutable behind a lock: the app reads it from worker threads.
"""

from __future__ import annotations

import dataclasses
import threading

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
)

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
READ_TOKEN = "fwd_read_" + "r" * 43
RELEASE_TOKEN = "fwd_release_" + "e" * 43
APP_TOKEN = "fwd_app_" + "a" * 43


def history() -> tuple[FleetSample, ...]:
    """100 boxes moving from 1.0.0 to 1.1.0: 50 % at T0+2h, 90 % at T0+4h, 99 % at T0+6h."""
    moved = (0, 20, 50, 70, 90, 95, 99)
    return tuple(
        FleetSample(T0 + 3600 * i, {"1.0.0": 100 - n, "1.1.0": n} if n else {"1.0.0": 100})
        for i, n in enumerate(moved)
    )


def box(i: int, version: str = "1.1.0") -> BoxSummary:
    return BoxSummary(f"box-{i:03d}", "lockbox", "lb-r2", version, "idle", 80 + i % 20,
                      T0 + 60 * i, ("north",) if i % 2 else ())  # fmt: skip


def rollout(installed: int = 3, failed: int = 1, state: str = "active") -> RolloutView:
    heard = installed + failed + 5 + 2  # and 5 in progress, 2 reverted: all offered
    return RolloutView(
        id="r1",
        product="lockbox",
        version="1.1.0",
        state=state,
        phases=(
            PhaseView(1, 1.0, "succeeded", T0, PhaseCounts(10, 10, 0, 9, 1, 0, 0, 10)),
            PhaseView(2, 10.0, state, T0 + 7200,
                      PhaseCounts(100, 90, 5, installed, failed, 2, 90 - heard, heard)),
            PhaseView(3, 100.0, "pending", None, PhaseCounts(0, 0, 0, 0, 0, 0, 0, 0)),
        ),
        failure_reasons={"battery too low": failed, "image hash mismatch": 1},
        decision=None,
    )


class FakeFleet:
    """A ReadModel and Authenticator whose data a test may change at any moment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.products = (
            ProductFleet("lockbox", 100, 99, {"1.0.0": 1, "1.1.0": 98}, 0, 1, history()),
        )
        self.rollout_views: tuple[RolloutView, ...] = (rollout(),)
        self.box_rows = tuple(box(i) for i in range(3))
        self.reports = {
            b.id: tuple(ReportRow(s, T0 + 600 * s, "1.1.0", "idle", None, 90, None)
                        for s in range(3, 0, -1))
            for b in self.box_rows
        }  # fmt: skip
        self.release_rows = (ReleaseView("lockbox", "1.1.0", "published", T0, 2, 21_003),
                             ReleaseView("lockbox", "1.0.0", "published", T0 - 86400, 1, 20_871))
        self.revoked: set[str] = set()

    # -- ReadModel --
    def fleet(self) -> tuple[ProductFleet, ...]:
        with self.lock:
            return self.products

    def rollouts(self) -> tuple[RolloutView, ...]:
        with self.lock:
            return self.rollout_views

    def releases(self) -> tuple[ReleaseView, ...]:
        with self.lock:
            return self.release_rows

    def boxes(self) -> tuple[BoxSummary, ...]:
        with self.lock:
            return self.box_rows

    def box(self, box_id: str, limit: int) -> BoxDetail | None:
        with self.lock:
            summary = next((b for b in self.box_rows if b.id == box_id), None)
            if summary is None:
                return None
            return BoxDetail(summary, self.reports.get(box_id, ())[:limit])

    # -- Authenticator --
    def login(self, secret: str) -> Principal | None:
        known = {READ_TOKEN: Principal("t-read", "ops-read"),
                 RELEASE_TOKEN: Principal("t-rel", "release-eng")}  # fmt: skip
        who = known.get(secret)
        return None if who is None or who.token_id in self.revoked else who

    def active(self, principal: Principal) -> bool:
        return principal.token_id not in self.revoked

    # -- changes a test makes --
    def set_versions(self, versions: dict[str, int], failed: int = 1) -> None:
        with self.lock:
            p = self.products[0]
            self.products = (dataclasses.replace(p, versions=versions, failed=failed),)

    def set_rollout(self, view: RolloutView) -> None:
        with self.lock:
            self.rollout_views = (view,)

    def add_report(self, box_id: str, row: ReportRow) -> None:
        with self.lock:
            self.reports[box_id] = (row, *self.reports.get(box_id, ()))
