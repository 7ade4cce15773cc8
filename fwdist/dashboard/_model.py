"""The dashboard's read model: the plain data its pages show, and the interface that returns it.

The pages never query a database: they ask a :class:`ReadModel` for frozen dataclasses of
already-counted numbers and display labels. That keeps the templates testable with fake data,
lets the server's SQL change without touching a page, and keeps the dashboard from importing
the rollout engine's or the report codec's enums: whoever owns an enum renders its label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class FleetSample:
    """How many boxes of one product ran each version at one moment (unix seconds)."""

    at: int
    versions: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.versions.values())


@dataclass(frozen=True)
class ProductFleet:
    """One product's fleet now, computed from each box's latest report, and its history."""

    product: str
    boxes: int  # registered
    heard_from: int  # registered boxes with at least one report
    versions: Mapping[str, int]  # running version -> boxes, as the latest reports say
    in_progress: int
    failed: int
    history: tuple[FleetSample, ...] = ()  # oldest first

    @property
    def coverage(self) -> float:
        """The share of the registered boxes the server has heard from at all."""
        return self.heard_from / self.boxes if self.boxes else 0.0


@dataclass(frozen=True)
class PhaseCounts:
    """One rollout phase's boxes by what their latest report since the phase began says."""

    eligible: int
    offered: int  # eligible boxes inside the phase's cohort
    in_progress: int
    installed: int
    failed: int  # install failed, or rejected for a reason other than "not eligible"
    reverted: int  # reverted after the test boot
    not_heard_from: int  # offered boxes with no report since the phase began
    heard_from: int  # eligible boxes with a report since the phase began (the coverage)


@dataclass(frozen=True)
class PhaseView:
    index: int  # 1-based, as a person counts phases
    share: float  # percent of the eligible boxes, e.g. 1.0, 10.0, 100.0
    state: str  # display label of the phase's state
    started_at: int | None
    counts: PhaseCounts


@dataclass(frozen=True)
class RolloutView:
    """A rollout campaign as a person watches it: phases, why boxes failed, whom we heard."""

    id: str
    product: str
    version: str
    state: str  # display label
    phases: tuple[PhaseView, ...]
    failure_reasons: Mapping[str, int] = field(default_factory=dict)  # reason label -> boxes
    decision: str | None = None  # the last automatic decision and its inputs, in words

    @property
    def current(self) -> PhaseView | None:
        """The phase that began last (the one a decision is about), None before the first."""
        started = [p for p in self.phases if p.started_at is not None]
        return started[-1] if started else None

    @property
    def coverage(self) -> tuple[int, int]:
        """(eligible boxes heard from since the current phase began, its eligible boxes).

        The current phase's cohort holds every earlier phase's boxes (cohorts only grow), so
        its counts are the rollout's: adding the phases up would count those boxes twice.
        """
        p = self.current
        return (0, 0) if p is None else (p.counts.heard_from, p.counts.eligible)


@dataclass(frozen=True)
class ReleaseView:
    """A published release: whether phones may still be given it."""

    product: str
    version: str
    state: str  # "published" or "yanked"
    published_at: int
    payloads: int  # the full image and its deltas
    full_bytes: int  # what a box with no usable delta receives


@dataclass(frozen=True)
class BoxSummary:
    id: str
    product: str
    hardware: str
    version: str | None  # None until the box's first report
    state: str | None
    battery: int | None  # percent
    last_report_at: int | None  # when the server received the latest report
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportRow:
    """One signed report of a box as the server stored it."""

    seq: int
    received_at: int
    version: str
    state: str
    target: str | None  # "1.2.0 (4,096 of 65,536 B)" or None
    battery: int
    result: str | None  # last install result and reason, as a label


@dataclass(frozen=True)
class BoxDetail:
    summary: BoxSummary
    history: tuple[ReportRow, ...]  # newest first


@dataclass(frozen=True)
class Principal:
    """Who logged in: the name of the token they presented (never the token itself)."""

    token_id: str
    name: str


class ReadModel(Protocol):
    """What the pages read. Calls block (a database), so the app runs them in a worker thread."""

    def fleet(self) -> tuple[ProductFleet, ...]: ...

    def rollouts(self) -> tuple[RolloutView, ...]: ...

    def releases(self) -> tuple[ReleaseView, ...]: ...

    def boxes(self) -> tuple[BoxSummary, ...]: ...

    def box(self, box_id: str, limit: int) -> BoxDetail | None: ...


class Authenticator(Protocol):
    """Who may log in. Calls block (a database), like the read model's."""

    def login(self, secret: str) -> Principal | None:
        """The principal a presented token stands for, or None if it may not see the fleet."""
        ...

    def active(self, principal: Principal) -> bool:
        """Whether the token behind a session still stands (not revoked since the login)."""
        ...
