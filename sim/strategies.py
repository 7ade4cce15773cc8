"""The strategies a simulation compares, by name, built for one scenario and release.

The four field models (:mod:`sim.baselines`) are arithmetic; ``fwdist-full``
and ``fwdist-delta`` (:mod:`sim.fwdist_strategy`) run the real lockbox, app and
protocol in every session. If those modules cannot be imported (the lockbox or
the app is missing from this tree), :func:`available` leaves them out and says
why; nothing stands in for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fwdist.errors import FwdistError
from sim.baselines import Object4k, OffsetResume, Oracle, Restart
from sim.release import ReleaseInfo
from sim.scenario import Scenario
from sim.strategy import Strategy

ALL = ("restart", "offset-resume", "object-4k", "fwdist-full", "fwdist-delta", "oracle")
FWDIST = ("fwdist-full", "fwdist-delta")

DESCRIPTIONS = {
    "restart": "raw image in order; the transfer restarts from zero at each access",
    "offset-resume": "raw image in order, resumed from the last offset (the field today)",
    "object-4k": "4 KiB objects; a partial object is lost on disconnect (Nordic DFU)",
    "fwdist-full": "fwdist: compressed full-image pieces, real lockbox + app + protocol",
    "fwdist-delta": "fwdist: delta pieces for the box's running version, real lockbox + app",
    "oracle": "smallest peer delta, zero protocol overhead, no byte wasted (the bound)",
}


def fwdist_unavailable() -> str | None:
    """Why the fwdist strategies cannot run here, or None if they can."""
    try:
        import sim.fwdist_strategy  # noqa: F401
    except ImportError as e:
        return f"the fwdist strategies need the lockbox and the app ({e})"
    return None


def available(names: Sequence[str] = ALL) -> tuple[tuple[str, ...], list[str]]:
    """The runnable subset of ``names`` and a note for each one left out."""
    why = fwdist_unavailable()
    if why is None:
        return tuple(names), []
    kept = tuple(n for n in names if n not in FWDIST)
    return kept, [f"{n} not run: {why}" for n in names if n in FWDIST]


def make_strategies(
    scenario: Scenario, release: ReleaseInfo, names: Sequence[str] = ALL
) -> list[Strategy]:
    out: list[Strategy] = []
    for name in names:
        if name == "restart":
            out.append(Restart(release.image_bytes, scenario.baselines))
        elif name == "offset-resume":
            out.append(OffsetResume(release.image_bytes, scenario.baselines))
        elif name == "object-4k":
            out.append(Object4k(release.image_bytes, scenario.baselines))
        elif name == "oracle":
            out.append(Oracle(release.oracle_bytes))
        elif name in FWDIST:
            from sim.fwdist_strategy import FwdistStrategy

            out.append(
                FwdistStrategy.load(
                    release, delta=name == "fwdist-delta", max_frame=scenario.access.max_frame
                )
            )
        else:
            raise FwdistError(f"unknown strategy {name!r}; known: {', '.join(ALL)}")
    return out
