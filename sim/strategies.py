"""The strategies a simulation compares, by name, built for one scenario and release.

The four field models (:mod:`sim.baselines`) are arithmetic; ``fwdist-full``
and ``fwdist-delta`` (:mod:`sim.fwdist_strategy`) run the real lockbox, app and
protocol in every session. Each strategy describes itself; this module only
names them, in report order, and builds the ones asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fwdist.errors import FwdistError
from sim import fwdist_strategy
from sim.baselines import Object4k, OffsetResume, Oracle, Restart
from sim.fwdist_strategy import FwdistStrategy
from sim.release import ReleaseInfo
from sim.scenario import Scenario
from sim.strategy import Strategy

_Build = Callable[[Scenario, ReleaseInfo], Strategy]

_BUILD: dict[str, _Build] = {
    Restart.name: lambda s, r: Restart(r.image_bytes, s.baselines),
    OffsetResume.name: lambda s, r: OffsetResume(r.image_bytes, s.baselines),
    Object4k.name: lambda s, r: Object4k(r.image_bytes, s.baselines),
    fwdist_strategy.FULL: lambda s, r: FwdistStrategy.load(
        r, delta=False, max_frame=s.access.max_frame
    ),
    fwdist_strategy.DELTA: lambda s, r: FwdistStrategy.load(
        r, delta=True, max_frame=s.access.max_frame
    ),
    Oracle.name: lambda s, r: Oracle(r.oracle_bytes),
}

ALL = tuple(_BUILD)  # restart, offset-resume, object-4k, fwdist-full, fwdist-delta, oracle

DESCRIPTIONS = {
    Restart.name: Restart.description,
    OffsetResume.name: OffsetResume.description,
    Object4k.name: Object4k.description,
    **fwdist_strategy.DESCRIPTIONS,
    Oracle.name: Oracle.description,
}


def make_strategies(
    scenario: Scenario, release: ReleaseInfo, names: Sequence[str] = ALL
) -> list[Strategy]:
    out: list[Strategy] = []
    for name in names:
        build = _BUILD.get(name)
        if build is None:
            raise FwdistError(f"unknown strategy {name!r}; known: {', '.join(ALL)}")
        out.append(build(scenario, release))
    return out
