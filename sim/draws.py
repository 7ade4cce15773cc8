"""The random draws every strategy shares (common random numbers).

Each box gets its own ``random.Random``, seeded from (scenario seed, run, box
index) through SHA-256, so a box's draws do not depend on how many boxes, runs,
shards or worker processes there are, nor on which strategy is being simulated:
strategies never touch a random stream. Whatever differs between two strategies'
results is the strategies' doing, not the dice's.

Time is in seconds after the release is published, which is a Monday 00:00.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from sim.scenario import Scenario

DAY = 86400.0
SHOWING = 0
MANUAL = 1


def box_seed(seed: int, run: int, box: int) -> int:
    digest = hashlib.sha256(f"fwdist-sim:{seed}:{run}:{box}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def mix64(a: int, b: int) -> int:
    """SplitMix64 of two integers: a cheap, stateless hash for 'does this phone hold piece i'."""
    z = (a * 0x9E3779B97F4A7C15 + b + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


@dataclass(frozen=True, slots=True)
class Access:
    """One access: a showing (an agent opens the box) or an owner's manual update session.

    The box opens first (``open_s``), then the phone sets up the update
    connection (``setup_s``); the transfer gets what is left of ``connected_s``
    at ``rate`` bytes per second. ``budget`` is therefore exactly the number of
    bytes that fit before the agent walks away; the frame in flight at that
    moment is lost.
    """

    t: float
    kind: int
    connected_s: float
    open_s: float
    setup_s: float
    rate: float
    holds: bool
    partial: float  # 1.0: the phone holds every piece; else the fraction it holds
    cache_seed: int

    @property
    def transfer_s(self) -> float:
        return max(0.0, self.connected_s - self.open_s - self.setup_s)

    @property
    def budget(self) -> int:
        return int(self.transfer_s * self.rate) if self.holds else 0

    @property
    def transfer_start(self) -> float:
        return self.t + self.open_s + self.setup_s

    def holds_block(self, index: int) -> bool:
        """Whether the phone holds block/piece ``index`` (the same answer for every strategy)."""
        if not self.holds:
            return False
        if self.partial >= 1.0:
            return True
        return mix64(self.cache_seed, index) < int(self.partial * 2.0**64)


@dataclass(frozen=True, slots=True)
class BoxDraw:
    """What is fixed about one box for the whole rollout."""

    index: int
    legacy: bool
    running: str
    popularity: float
    battery: float
    replace_after_s: float
    manual_at: float | None


class BoxDice:
    """Draws for one box: :meth:`box` once, then :meth:`accesses` in time order."""

    def __init__(self, scenario: Scenario, run: int, index: int) -> None:
        self.s = scenario
        self.rng = random.Random(box_seed(scenario.run.seed, run, index))
        self.index = index

    def box(self) -> BoxDraw:
        s, rng = self.s, self.rng
        legacy = rng.random() < s.fleet.legacy_share
        versions = list(s.release.running.items())
        total = sum(w for _, w in versions)
        u = rng.random() * total
        running = versions[-1][0]
        acc = 0.0
        for v, w in versions:
            acc += w
            if u < acc:
                running = v
                break
        popularity = s.showings.popularity.draw(rng)
        battery = min(1.0, s.battery.start.draw(rng))
        replace_after = s.battery.replace_after_days.draw(rng) * DAY
        manual = rng.random() < s.owner.manual_share
        manual_at_days = s.owner.manual_after_days.draw(rng)
        return BoxDraw(
            self.index,
            legacy,
            running,
            popularity,
            battery,
            replace_after,
            manual_at_days * DAY if manual else None,
        )

    def _access(self, t: float, kind: int) -> Access:
        s, rng = self.s, self.rng
        a = s.access
        if kind == MANUAL:
            connected = s.owner.patience_s.draw(rng)
            opening = 0.0
            holds = True
        else:
            connected = a.connected_s.draw(rng)
            opening = a.open_s.draw(rng)
            holds = rng.random() < s.phone.holds_release
        setup = a.setup_s.draw(rng)
        rate = a.throughput_Bps.draw(rng)
        partial_u = rng.random()
        fraction = s.phone.partial_fraction.draw(rng)
        cache_seed = rng.getrandbits(64)
        partial = fraction if (kind == SHOWING and partial_u < s.phone.partial_share) else 1.0
        return Access(t, kind, connected, opening, setup, rate, holds, partial, cache_seed)

    def accesses(self, draw: BoxDraw) -> Iterator[Access]:
        """Showings (Poisson per day, weekday/weekend rates) and the owner's session, in order."""
        s, rng = self.s, self.rng
        horizon = s.run.days * DAY
        manual_at = draw.manual_at
        lo, hi = s.showings.first_hour * 3600, s.showings.last_hour * 3600
        for day in range(math.ceil(s.run.days)):
            weekend = day % 7 >= 5
            rate = s.showings.weekend_per_day if weekend else s.showings.weekday_per_day
            n = _poisson(rng, rate * draw.popularity)
            times = sorted(day * DAY + lo + (hi - lo) * rng.random() for _ in range(n))
            for t in times:
                if manual_at is not None and manual_at <= t:
                    if manual_at < horizon:
                        yield self._access(manual_at, MANUAL)
                    manual_at = None
                if t < horizon:
                    yield self._access(t, SHOWING)
        if manual_at is not None and manual_at < horizon:
            yield self._access(manual_at, MANUAL)


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; rates here are a few per day."""
    if lam <= 0:
        return 0
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
