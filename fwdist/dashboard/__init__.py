"""The fleet dashboard: server-rendered pages over a read model, live over server-sent events.

Mount :func:`create_app` at ``/dashboard`` in the fleet server, with a :class:`ReadModel`
(plain data out of the database) and an :class:`Authenticator` (API tokens of scope read or
release); tests give it fakes.
"""

from __future__ import annotations

from fwdist.dashboard._app import create_app
from fwdist.dashboard._model import (
    Authenticator,
    BoxDetail,
    BoxSummary,
    FleetSample,
    PhaseCounts,
    PhaseView,
    Principal,
    ProductFleet,
    ReadModel,
    ReleaseView,
    ReportRow,
    RolloutView,
)

__all__ = [
    "Authenticator",
    "BoxDetail",
    "BoxSummary",
    "FleetSample",
    "PhaseCounts",
    "PhaseView",
    "Principal",
    "ProductFleet",
    "ReadModel",
    "ReleaseView",
    "ReportRow",
    "RolloutView",
    "create_app",
]
