"""Distributions a scenario can draw from, written in TOML as small tables.

A scenario value is either a number (fixed) or a table naming a distribution::

    connected_s = 12.0                                              # fixed
    connected_s = { dist = "uniform", min = 5.0, max = 30.0 }
    connected_s = { dist = "lognormal", median = 12.0, sigma = 0.5, min = 3.0, max = 120.0 }
    connected_s = { dist = "choice", values = [2400.0, 5000.0], weights = [3.0, 1.0] }

``min``/``max`` clip a lognormal (published BLE rates are 1.1–13 KB/s; a draw of
40 KB/s would be fiction). Every draw takes exactly one value from the caller's
``random.Random`` stream, whatever the distribution, so changing one distribution
in a scenario does not shift the draws of everything after it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from fwdist.errors import FwdistError


class ScenarioError(FwdistError):
    """A scenario file is missing, malformed, or holds an impossible value."""


@dataclass(frozen=True)
class Dist:
    """A one-dimensional distribution; :meth:`draw` consumes exactly one ``random()``."""

    kind: str
    a: float = 0.0
    b: float = 0.0
    lo: float = -math.inf
    hi: float = math.inf
    values: tuple[float, ...] = ()
    cum_weights: tuple[float, ...] = ()

    @classmethod
    def fixed(cls, value: float) -> Dist:
        return cls("fixed", a=value)

    def draw(self, rng: random.Random) -> float:
        u = rng.random()
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return self.a + (self.b - self.a) * u
        if self.kind == "lognormal":
            # inverse CDF keeps the one-uniform-per-draw rule (common random numbers)
            z = _norm_ppf(min(max(u, 1e-12), 1 - 1e-12))
            return min(self.hi, max(self.lo, self.a * math.exp(self.b * z)))
        # choice
        total = self.cum_weights[-1]
        for v, c in zip(self.values, self.cum_weights, strict=True):
            if u * total < c:
                return v
        return self.values[-1]

    @property
    def mean_hint(self) -> float:
        """A representative value for reports (the fixed value, the midpoint, the median)."""
        if self.kind in ("fixed", "lognormal"):
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return sum(self.values) / len(self.values)

    def describe(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        if self.kind == "fixed":
            return f"{self.a:g}{u}"
        if self.kind == "uniform":
            return f"uniform {self.a:g}–{self.b:g}{u}"
        if self.kind == "lognormal":
            return f"lognormal median {self.a:g}{u}, σ {self.b:g}, clipped {self.lo:g}–{self.hi:g}"
        return f"choice of {', '.join(f'{v:g}' for v in self.values)}{u}"


def parse_dist(raw: Any, what: str, positive: bool = True) -> Dist:
    """Turn a TOML value into a :class:`Dist`; errors name the setting (``what``)."""
    if isinstance(raw, bool):
        raise ScenarioError(f"{what}: expected a number or a distribution table, got a boolean")
    if isinstance(raw, int | float):
        d = Dist.fixed(float(raw))
        _check_range(d.a, what, positive)
        return d
    if not isinstance(raw, dict):
        raise ScenarioError(f"{what}: expected a number or a distribution table")
    kind = raw.get("dist")
    allowed = {
        "uniform": {"dist", "min", "max"},
        "lognormal": {"dist", "median", "sigma", "min", "max"},
        "choice": {"dist", "values", "weights"},
    }
    if kind not in allowed:
        raise ScenarioError(f"{what}: dist must be one of {sorted(allowed)}, got {kind!r}")
    extra = set(raw) - allowed[kind]
    if extra:
        raise ScenarioError(f"{what}: unknown keys {sorted(extra)} for a {kind} distribution")
    try:
        if kind == "uniform":
            lo, hi = float(raw["min"]), float(raw["max"])
            if hi < lo:
                raise ScenarioError(f"{what}: max {hi} is below min {lo}")
            _check_range(lo, what, positive)
            return Dist("uniform", a=lo, b=hi)
        if kind == "lognormal":
            median, sigma = float(raw["median"]), float(raw["sigma"])
            lo = float(raw.get("min", 0.0))
            hi = float(raw.get("max", math.inf))
            if median <= 0 or sigma < 0 or hi < lo:
                raise ScenarioError(f"{what}: lognormal needs median > 0, sigma >= 0, min <= max")
            return Dist("lognormal", a=median, b=sigma, lo=lo, hi=hi)
        values = tuple(float(v) for v in raw["values"])
        weights = tuple(float(w) for w in raw.get("weights", [1.0] * len(values)))
    except KeyError as e:
        raise ScenarioError(f"{what}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError):
        raise ScenarioError(f"{what}: distribution parameters must be numbers") from None
    if (
        not values
        or len(weights) != len(values)
        or any(w < 0 for w in weights)
        or sum(weights) <= 0
    ):
        raise ScenarioError(f"{what}: choice needs values and as many non-negative weights")
    for v in values:
        _check_range(v, what, positive)
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    return Dist("choice", values=values, cum_weights=tuple(cum))


def _check_range(v: float, what: str, positive: bool) -> None:
    if not math.isfinite(v) or (positive and v < 0):
        raise ScenarioError(f"{what}: {v} is out of range (must be a finite, non-negative number)")


def _norm_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if p > 1 - 0.02425:
        q = math.sqrt(-2 * math.log(1 - p))
        return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    q = p - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )
