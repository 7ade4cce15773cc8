"""What a release engineer asks of a rollout: phases, criteria, tags, rate, windows, retries.

A :class:`Plan` is data only, checked once when it is built, so everything downstream (the
phase machine, the decision, the phone's offer rule) can trust it. Shares are integers in
basis points (1 % = 100 bp, 100 % = :data:`WHOLE`), never floats: every phone and the server
must compute the same cohort boundary, and a float parsed from ``"0.1"`` is not the same
number on every path. A plan round-trips through plain JSON (:meth:`Plan.to_json`,
:meth:`Plan.from_json`) so the server can store it and send it to phones unchanged.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fwdist.errors import ManifestError, RolloutError
from fwdist.manifest import Version, check_name
from fwdist.trust import format_window

WHOLE = 10_000
"""100 % in basis points: the unit of every share in a plan."""

DAY = 86_400
MAX_PHASES = 16


def parse_share(text: str) -> int:
    """``"1"``, ``"0.5"``, ``"100"`` (percent) to basis points, exactly; anything else refused."""
    try:
        value = Decimal(text.strip().removesuffix("%"))
    except InvalidOperation:
        raise RolloutError(f"a phase share must be a percentage, got {text!r}") from None
    bp = value * 100
    if not value.is_finite() or bp != bp.to_integral_value() or not 0 < bp <= WHOLE:
        raise RolloutError(f"a phase share must be 0.01..100 %, in steps of 0.01, got {text!r}")
    return int(bp)


def format_share(bp: int) -> str:
    """Basis points as a person reads them: 100 -> ``"1 %"``, 50 -> ``"0.5 %"``."""
    text = f"{Decimal(bp) / 100:f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + " %"


def _whole(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RolloutError(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f"{low} or more"
        raise RolloutError(f"{name} must be {bound}, got {value}")
    return value


@dataclass(frozen=True)
class Criteria:
    """When a phase has succeeded: all three hold at once (zero means "no requirement").

    ``installed_bp`` is the share of the phase's cohort that reports running the release;
    ``min_heard`` counts cohort boxes heard from since the phase began (at most as many as
    the cohort holds: 1 % of a small fleet may be no box at all); ``min_seconds`` is the
    phase's minimum age. ``manual`` (hawkBit's "pause after success"): when they hold,
    the rollout waits in *succeeded* for a person's ``resume`` instead of moving on.
    """

    installed_bp: int = 0
    min_heard: int = 0
    min_seconds: int = 0
    manual: bool = False

    def __post_init__(self) -> None:
        _whole(self.installed_bp, "installed share", 0, WHOLE)
        _whole(self.min_heard, "minimum boxes heard from")
        _whole(self.min_seconds, "minimum phase time")
        if not isinstance(self.manual, bool):
            raise RolloutError(f"manual must be true or false, got {self.manual!r}")


@dataclass(frozen=True)
class Phase:
    """One step of the rollout: the share of eligible boxes offered, and when it is done."""

    share_bp: int
    criteria: Criteria = Criteria()

    def __post_init__(self) -> None:
        _whole(self.share_bp, "phase share", 1, WHOLE)


@dataclass(frozen=True)
class AbortPolicy:
    """AWS IoT Jobs' abort rule: failures / finished attempts >= threshold, over enough boxes.

    A *finished attempt* is a cohort box heard from since the phase began that installed the
    release, failed to, reverted it after its test boot, or rejected it for a reason other
    than not being eligible. Below ``min_finished`` such boxes nothing aborts, whatever the
    share: one early failure out of one is not evidence about a fleet.
    """

    threshold_bp: int = 2_000
    min_finished: int = 10

    def __post_init__(self) -> None:
        _whole(self.threshold_bp, "abort threshold", 1, WHOLE)
        _whole(self.min_finished, "minimum finished boxes", 1)


@dataclass(frozen=True)
class RetryPolicy:
    """Whether a box whose install failed is offered the release again: how often, how late.

    Retry ``n`` (1-based) may be offered ``backoff_seconds * 2 ** (n - 1)`` after the
    failure the phone last saw; ``count`` 0 means never again.
    """

    count: int = 0
    backoff_seconds: int = DAY

    def __post_init__(self) -> None:
        _whole(self.count, "retry count", 0, 16)
        _whole(self.backoff_seconds, "retry back-off", 0)


@dataclass(frozen=True)
class Window:
    """A daily maintenance window in UTC: ``start_minute`` after midnight, ``minutes`` long.

    A window may run past midnight (22:00 for 240 minutes ends at 02:00).
    """

    start_minute: int
    minutes: int

    def __post_init__(self) -> None:
        _whole(self.start_minute, "window start", 0, 24 * 60 - 1)
        _whole(self.minutes, "window length", 1, 24 * 60)

    @classmethod
    def parse(cls, text: str) -> Window:
        """``"HH:MM-HH:MM"`` (UTC; the end may be past midnight) to a window."""
        try:
            start, end = (_minute(part) for part in text.split("-"))
        except ValueError:
            raise RolloutError(f"a window is HH:MM-HH:MM (UTC), got {text!r}") from None
        return cls(start, (end - start) % (24 * 60) or 24 * 60)

    def __str__(self) -> str:
        return format_window(self.start_minute, self.minutes)


def _minute(text: str) -> int:
    hh, mm = text.strip().split(":")
    if len(mm) != 2 or not (hh.isdigit() and mm.isdigit()) or int(hh) > 23 or int(mm) > 59:
        raise ValueError(text)
    return int(hh) * 60 + int(mm)


@dataclass(frozen=True)
class Plan:
    """A rollout of one release: phases with strictly growing shares, and the policies.

    ``tags``: a box is eligible only when it carries every one (none: every box of the
    product). ``rate_per_hour``: at most this many more boxes offered per hour as a phase
    widens (None: the whole phase at once); see :func:`fwdist.rollout.offered_share`.
    """

    product: str
    version: str
    phases: tuple[Phase, ...]
    tags: frozenset[str] = frozenset()
    rate_per_hour: int | None = None
    windows: tuple[Window, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    abort: AbortPolicy = AbortPolicy()

    def __post_init__(self) -> None:
        try:
            check_name("product", self.product)
            Version.parse(self.version)
            for tag in self.tags:
                check_name("tag", tag)
        except (ManifestError, TypeError) as e:
            raise RolloutError(str(e)) from None
        if not 1 <= len(self.phases) <= MAX_PHASES:
            raise RolloutError(f"a rollout has 1..{MAX_PHASES} phases, got {len(self.phases)}")
        shares = [p.share_bp for p in self.phases]
        if any(b <= a for a, b in itertools.pairwise(shares)):
            raise RolloutError(f"phase shares must grow: {', '.join(map(format_share, shares))}")
        if self.rate_per_hour is not None:
            _whole(self.rate_per_hour, "rate limit (boxes per hour)", 1)

    @property
    def release(self) -> str:
        return f"{self.product}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON values (what the server stores and phones receive)."""
        return {
            "product": self.product,
            "version": self.version,
            "phases": [
                {
                    "share_bp": p.share_bp,
                    "installed_bp": p.criteria.installed_bp,
                    "min_heard": p.criteria.min_heard,
                    "min_seconds": p.criteria.min_seconds,
                    "manual": p.criteria.manual,
                }
                for p in self.phases
            ],
            "tags": sorted(self.tags),
            "rate_per_hour": self.rate_per_hour,
            "windows": [str(w) for w in self.windows],
            "retry": {"count": self.retry.count, "backoff_seconds": self.retry.backoff_seconds},
            "abort": {
                "threshold_bp": self.abort.threshold_bp,
                "min_finished": self.abort.min_finished,
            },
        }

    @classmethod
    def from_json(cls, doc: Any) -> Plan:
        """The inverse of :meth:`to_json`; anything missing, extra or mistyped is refused."""
        try:
            _keys(doc, PLAN_KEYS, "rollout")
            phases = []
            for p in doc["phases"]:
                _keys(p, PHASE_KEYS, "phase")
                crit = Criteria(p["installed_bp"], p["min_heard"], p["min_seconds"], p["manual"])
                phases.append(Phase(p["share_bp"], crit))
            _keys(doc["retry"], ("count", "backoff_seconds"), "retry")
            _keys(doc["abort"], ("threshold_bp", "min_finished"), "abort")
            if not isinstance(doc["tags"], list) or not isinstance(doc["windows"], list):
                raise RolloutError("rollout tags and windows must be lists")
            return cls(
                product=doc["product"],
                version=doc["version"],
                phases=tuple(phases),
                tags=frozenset(doc["tags"]),
                rate_per_hour=doc["rate_per_hour"],
                windows=tuple(Window.parse(w) for w in doc["windows"]),
                retry=RetryPolicy(**doc["retry"]),
                abort=AbortPolicy(**doc["abort"]),
            )
        except (TypeError, AttributeError) as e:
            raise RolloutError(f"malformed rollout: {e}") from None


PLAN_KEYS = ("product", "version", "phases", "tags", "rate_per_hour", "windows", "retry", "abort")
PHASE_KEYS = ("share_bp", "installed_bp", "min_heard", "min_seconds", "manual")


def _keys(doc: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(doc, dict) or sorted(doc) != sorted(keys):
        raise RolloutError(f"malformed {what}: the fields are {', '.join(keys)}")
