"""The figures CI holds the project to, kept in ``benchmarks/limits.json``.

Only deterministic figures are checked (bytes, counts, accesses for a seed);
timings are reported as ratios. The one exception is a hand-set ceiling on a
timing ratio (``devices/*/stage_vs_bsdiff_*``, :mod:`benchmarks.bench_devices`) and
on the fleet server's CPU per report (``fleet/server_cpu_per_report``):
stored under ``max`` like any limit, never moved by ``--update-limits`` (the
record is not ``checked``), and loose enough for a loaded machine. Two kinds of rule:

- ``max``: a stored value per record name; a run above it is a regression.
  When a change makes a figure smaller, ``python -m benchmarks --update-limits``
  lowers the stored value, and the commit that does it shows the improvement.
  A stored limit only ever moves down on its own: ``--update-limits`` refuses
  to raise one (the run then fails on it as a regression), because a limit
  that follows the figure upwards holds nothing. Raising one on purpose takes
  ``--allow-worse-limits`` as well, and the run prints a trailer
  (:func:`worse_trailer`) to put in the commit message, so the history says
  which figure got worse and by how much.
- ``at_most_best_peer``: name patterns whose fwdist value must not exceed the
  smallest peer value measured in the same run (``air_bytes`` on every pair).
- ``best_peer_margin``: a stored margin per record name; fwdist's value must not
  exceed the smallest peer value of the same run plus that margin (device pairs:
  a signed manifest and piece table ride on top of a bare patch). Like ``max`` it
  only moves down, and ``--update-limits`` lowers it no further than
  :data:`MARGIN_TARGET`, the issue's target, so that a peer's new release
  cannot fail a run that meets the target.

A record that failed (``error``) fails the check too; a skipped peer is
reported, never silently ignored.
"""

from __future__ import annotations

import enum
import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.record import Number, Record

LIMITS_FILE = Path(__file__).resolve().parent / "limits.json"
MARGIN_TARGET = 160
"""Issue 10: on device pairs, ``air_bytes <= best peer + 160 B``."""
MARGIN_NAMES = "devices/*/air_bytes"
"""The figures that get a best-peer margin (and no ``max``) when first stored."""


@dataclass(frozen=True)
class Limits:
    max: Mapping[str, Number] = field(default_factory=dict)
    at_most_best_peer: tuple[str, ...] = ()
    best_peer_margin: Mapping[str, Number] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = LIMITS_FILE) -> Limits:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read limits from {path}: {e}") from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Limits:
        maxes = data.get("max", {})
        rules = data.get("at_most_best_peer", [])
        margins = data.get("best_peer_margin", {})
        for key, table in (("max", maxes), ("best_peer_margin", margins)):
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in table.items()
            ):
                raise ValueError(f"limits: {key!r} must map record names to numbers")
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise ValueError("limits: 'at_most_best_peer' must be a list of name patterns")
        return cls(dict(maxes), tuple(rules), dict(margins))

    def to_json(self) -> dict[str, Any]:
        return {
            "comment": "Checked by `python -m benchmarks`; see benchmarks/limits.py. "
            "Lower a value with --update-limits when a change improves it; "
            "raising one takes --allow-worse-limits and a line in the commit message.",
            "at_most_best_peer": list(self.at_most_best_peer),
            "best_peer_margin": dict(sorted(self.best_peer_margin.items())),
            "max": dict(sorted(self.max.items())),
        }

    def save(self, path: Path = LIMITS_FILE) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


@dataclass
class CheckResult:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _fmt(v: Number) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:,.4g}"


def _by_name(records: Iterable[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.name].append(r)
    return groups


def check(records: Iterable[Record], limits: Limits) -> CheckResult:
    result = CheckResult()
    groups = _by_name(records)
    for name, group in groups.items():
        for r in group:
            if r.error:
                who = f" ({r.peer})" if r.peer else ""
                result.failures.append(f"{name}{who}: failed: {r.error}")
        values = {r.value for r in group if r.value is not None}
        if len(values) > 1:
            result.failures.append(
                f"{name}: fwdist has different values in one run: {sorted(values)}"
            )
        if not values:
            if name in limits.max and not any(r.error for r in group):
                reasons = sorted({r.skipped or "" for r in group})
                result.warnings.append(
                    f"{name}: has a stored limit but was not measured: {'; '.join(reasons)}"
                )
            continue
        value = max(values)
        checked = any(r.checked for r in group)

        if name in limits.max:
            stored = limits.max[name]
            if value > stored:
                result.failures.append(
                    f"{name}: {_fmt(value)} is above the stored limit {_fmt(stored)} (regression)"
                )
            else:
                result.passed.append(f"{name}: {_fmt(value)} <= stored {_fmt(stored)}")
                if value < stored:
                    result.warnings.append(
                        f"{name}: improved to {_fmt(value)} from {_fmt(stored)}; "
                        "run with --update-limits to keep the gain"
                    )
        elif checked and name not in limits.best_peer_margin:
            result.warnings.append(
                f"{name}: no stored limit yet ({_fmt(value)}); "
                "run with --update-limits to record it"
            )

        if any(fnmatch.fnmatchcase(name, pattern) for pattern in limits.at_most_best_peer):
            missing = [r for r in group if r.peer and not r.compared]
            best = best_peer(group)
            if best is None or best.peer_value is None:
                result.warnings.append(
                    f"{name}: no peer measured, 'at most the best peer' unchecked"
                )
            else:
                if value > best.peer_value:
                    result.failures.append(
                        f"{name}: fwdist {_fmt(value)} is larger than the best peer, "
                        f"{best.peer} {_fmt(best.peer_value)} ({value / best.peer_value:.3f}×)"
                    )
                else:
                    result.passed.append(
                        f"{name}: {_fmt(value)} <= best peer {best.peer} {_fmt(best.peer_value)}"
                    )
            for r in missing:
                result.warnings.append(
                    f"{name}: peer {r.peer} not measured ({r.skipped or r.error}); "
                    "the best-peer rule ran without it"
                )
        if name in limits.best_peer_margin:
            _check_margin(name, value, group, limits.best_peer_margin[name], result)
    return result


def best_peer(group: Iterable[Record]) -> Record | None:
    """The record whose peer measured the smallest value, if any peer was measured."""
    peers = [r for r in group if r.compared]
    return min(peers, key=lambda r: r.peer_value or 0) if peers else None


def _check_margin(
    name: str, value: Number, group: list[Record], margin: Number, result: CheckResult
) -> None:
    best = best_peer(group)
    if best is None or best.peer_value is None:
        result.warnings.append(f"{name}: no peer measured, 'best peer + margin' unchecked")
        return
    gap = value - best.peer_value
    rule = f"best peer {best.peer} {_fmt(best.peer_value)} + {_fmt(margin)}"
    if gap > margin:
        result.failures.append(
            f"{name}: fwdist {_fmt(value)} is above {rule} (gap {_fmt(gap)}, regression)"
        )
        return
    result.passed.append(f"{name}: {_fmt(value)} <= {rule}")
    if gap > MARGIN_TARGET:
        result.warnings.append(
            f"{name}: gap to the best peer is {_fmt(gap)} B, target {MARGIN_TARGET} B"
        )
    if gap < margin and margin > MARGIN_TARGET:
        result.warnings.append(
            f"{name}: gap {_fmt(gap)} B is below the stored margin {_fmt(margin)}; "
            "run with --update-limits to keep the gain"
        )


class Move(enum.Enum):
    """How a run's figure stands against its stored limit (``max``: lower is better)."""

    NEW = "new"  # no stored limit yet: the first value is stored as it is
    BETTER = "better"  # below the stored limit: lowering it keeps the gain
    WORSE = "worse"  # above the stored limit: raising it needs --allow-worse-limits


@dataclass(frozen=True)
class Change:
    """One stored limit that this run's figure would move; ``stored`` says whether it did."""

    name: str
    old: Number | None
    new: Number
    move: Move
    stored: bool

    def describe(self) -> str:
        if self.old is None:
            return f"{self.name}: {_fmt(self.new)} (new)"
        return f"{self.name}: {_fmt(self.old)} -> {_fmt(self.new)}"


@dataclass(frozen=True)
class Update:
    """The limits to store after a run, and every change they make or were refused."""

    limits: Limits
    changes: tuple[Change, ...]

    def moved(self, move: Move, *, stored: bool) -> list[Change]:
        return [c for c in self.changes if c.move is move and c.stored is stored]


def _move(old: Number | None, new: Number) -> Move | None:
    if old is None:
        return Move.NEW
    if new < old:
        return Move.BETTER
    if new > old:
        return Move.WORSE
    return None


def updated(records: Iterable[Record], limits: Limits, *, allow_worse: bool = False) -> Update:
    """``limits`` with every checked, measured figure of this run stored as its new maximum,
    where that moves the limit down (or sets a first one); a figure above its stored limit
    replaces it only with ``allow_worse``, and is otherwise reported as refused.

    A figure held to a best-peer margin gets no ``max`` of its own: the margin is
    the rule, and a change that trades bytes for decoder RAM (a 32 KiB budget)
    must not fail twice for one trade."""
    maxes = dict(limits.max)
    changes: list[Change] = []
    for name, group in _by_name(records).items():
        values = [r.value for r in group if r.checked and r.value is not None]
        if not values or _has_margin(name, limits):
            continue
        new, old = max(values), limits.max.get(name)
        move = _move(old, new)
        if move is None:
            continue
        stored = move is not Move.WORSE or allow_worse
        if stored:
            maxes[name] = new
        changes.append(Change(name, old, new, move, stored))
    margins = dict(limits.best_peer_margin)
    for name, group in _by_name(records).items():
        change = _margin_change(name, group, limits.best_peer_margin.get(name), allow_worse)
        if change is not None:
            if change.stored:
                margins[name] = change.new
            changes.append(change)
    return Update(Limits(maxes, limits.at_most_best_peer, margins), tuple(changes))


def _has_margin(name: str, limits: Limits) -> bool:
    return name in limits.best_peer_margin or fnmatch.fnmatchcase(name, MARGIN_NAMES)


def _margin_change(
    name: str, group: list[Record], old: Number | None, allow_worse: bool
) -> Change | None:
    """How this run moves ``name``'s stored best-peer margin (never below the target).

    Only names that already have a margin, or whose records are ``checked`` and
    named ``devices/*/air_bytes``, get one.
    """
    best = best_peer(group)
    values = [r.value for r in group if r.checked and r.value is not None]
    if best is None or best.peer_value is None or not values:
        return None
    if old is None and not fnmatch.fnmatchcase(name, MARGIN_NAMES):
        return None
    new = max(max(values) - best.peer_value, MARGIN_TARGET)
    move = _move(old, new)
    if move is None:
        return None
    stored = move is not Move.WORSE or allow_worse
    return Change(f"{name} (margin over the best peer)", old, new, move, stored)


def worse_trailer(changes: Iterable[Change]) -> str:
    """The commit-message line that records limits raised on purpose (a git trailer)."""
    return "Benchmark-limits-raised: " + "; ".join(c.describe() for c in changes)
