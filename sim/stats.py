"""From per-box outcomes to the numbers a release engineer reads.

Percentiles are nearest-rank over every updatable box, with boxes that never
finished counted as infinitely slow: a percentile that lands among them is
``None`` ("more than the horizon"), never the percentile of the lucky boxes
that did finish. Means are over finished boxes only, and say so.

A box is *installed* when it runs the new version by the end of the simulated
horizon. An install scheduled later (new batteries arrive after the horizon)
does not count: the simulation did not see it happen. A box whose payload is
complete but that is not installed is *awaiting battery*; together with the
unfinished boxes it explains every "never" in the days columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sim.draws import DAY
from sim.engine import StrategyTally


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of values where ``inf`` means 'never'."""
    if not values:
        return None
    ordered = sorted(values)
    v = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    return None if math.isinf(v) else float(v)


@dataclass
class StrategyStats:
    name: str
    description: str
    boxes: int
    finished: int
    installed: int
    accesses_p50: float | None
    accesses_p90: float | None
    accesses_p99: float | None
    accesses_mean: float | None
    days_to_50: float | None
    days_to_90: float | None
    days_to_99: float | None
    air_bytes: int
    overhead_bytes: int
    wasted_bytes: int
    payload_bytes: int
    bytes_per_session: float
    install_errors: int
    sessions: int
    curve: list[tuple[float, float]] = field(repr=False)
    access_counts: dict[int, int] = field(repr=False)

    @property
    def unfinished_share(self) -> float:
        """Boxes whose payload was not complete when the simulation ended."""
        return 1.0 - self.finished / self.boxes if self.boxes else 0.0

    @property
    def awaiting_battery_share(self) -> float:
        """Boxes holding the whole payload that did not install (battery too low) by the end."""
        return (self.finished - self.installed) / self.boxes if self.boxes else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "accesses_p50": self.accesses_p50,
            "accesses_p90": self.accesses_p90,
            "accesses_p99": self.accesses_p99,
            "accesses_mean": self.accesses_mean,
            "days_to_50": self.days_to_50,
            "days_to_90": self.days_to_90,
            "days_to_99": self.days_to_99,
            "air_bytes": self.air_bytes,
            "overhead_bytes": self.overhead_bytes,
            "wasted_bytes": self.wasted_bytes,
            "payload_bytes": self.payload_bytes,
            "bytes_per_session": round(self.bytes_per_session, 1),
            "unfinished_share": round(self.unfinished_share, 6),
            "uninstalled_share": round(1.0 - self.installed / self.boxes, 6) if self.boxes else 0.0,
            "awaiting_battery_share": round(self.awaiting_battery_share, 6),
            "boxes": self.boxes,
            "install_errors": self.install_errors,
            "sessions": self.sessions,
            "description": self.description,
        }


def summarise(name: str, description: str, t: StrategyTally, days: float) -> StrategyStats:
    acc = [math.inf if a is None else float(a) for a in t.accesses]
    done = [a for a in t.accesses if a is not None]
    inst = [math.inf if x is None or x / DAY > days else x / DAY for x in t.installed_at]
    counts: dict[int, int] = {}
    for a in done:
        counts[a] = counts.get(a, 0) + 1
    n = len(acc)
    times = sorted(x for x in inst if not math.isinf(x))
    steps = max(1, math.ceil(days))
    curve = []
    j = 0
    for d in range(steps + 1):
        while j < len(times) and times[j] <= d:
            j += 1
        curve.append((float(d), j / n if n else 0.0))
    sessions = t.sessions
    return StrategyStats(
        name=name,
        description=description,
        boxes=n,
        finished=len(done),
        installed=len(times),
        accesses_p50=nearest_rank(acc, 0.5),
        accesses_p90=nearest_rank(acc, 0.9),
        accesses_p99=nearest_rank(acc, 0.99),
        accesses_mean=(sum(done) / len(done)) if done else None,
        days_to_50=_round(nearest_rank(inst, 0.5)),
        days_to_90=_round(nearest_rank(inst, 0.9)),
        days_to_99=_round(nearest_rank(inst, 0.99)),
        air_bytes=t.air,
        overhead_bytes=t.overhead,
        wasted_bytes=t.wasted,
        payload_bytes=t.kept,
        bytes_per_session=t.air / sessions if sessions else 0.0,
        install_errors=t.errors,
        sessions=t.sessions,
        curve=curve,
        access_counts=dict(sorted(counts.items())),
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)

