"""One benchmark figure, next to the peer it is measured against, and the machine it ran on.

Every figure the suite reports is a :class:`Record`: fwdist's value, the peer's
value measured in the same run on the same input, and their ratio. The ratio is
the figure to read: these machines are noisy (±20%), so an absolute MB/s means
little, while "fwdist stages at 0.8× the speed of zstd -3 -T0, on this machine,
just now" does. A figure that could not be measured says why in ``skipped``
(peer tool missing, feature not landed) or ``error`` (something broke); the
suite never drops a figure silently and never invents one. When only the peer
is missing, the record keeps fwdist's value (so its stored limit is still
checked) with no ``peer_value``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

Better = Literal["lower", "higher"]
Number = int | float

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Record:
    """A metric: ``value`` (fwdist) next to ``peer_value`` (``peer``), same run, same input.

    ``checked`` marks a deterministic figure (bytes, counts, accesses for a
    seed) that CI holds to a stored maximum in ``benchmarks/limits.json``.
    Timings are never ``checked``: they are reported as ratios only.
    """

    name: str
    value: Number | None
    unit: str
    peer: str | None = None
    peer_value: Number | None = None
    better: Better = "lower"
    checked: bool = False
    skipped: str | None = None
    error: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.unit:
            raise ValueError(f"a record needs a name and a unit, got {self.name!r}/{self.unit!r}")
        if self.better not in ("lower", "higher"):
            raise ValueError(
                f"{self.name}: better must be 'lower' or 'higher', got {self.better!r}"
            )
        if self.value is None and not (self.skipped or self.error):
            raise ValueError(f"{self.name}: no value, and no reason (skipped or error) given")
        if self.skipped and self.error:
            raise ValueError(f"{self.name}: a record is skipped or failed, not both")

    @property
    def ratio(self) -> float | None:
        """fwdist / peer; read it with ``better`` (for a size, < 1 means fwdist is smaller)."""
        if self.value is None or self.peer_value is None or self.peer_value == 0:
            return None
        return round(self.value / self.peer_value, 4)

    @property
    def measured(self) -> bool:
        """fwdist's value is here (the peer's may not be)."""
        return self.value is not None

    @property
    def compared(self) -> bool:
        """Both fwdist's and the peer's values are here."""
        return self.value is not None and self.peer is not None and self.peer_value is not None

    def to_json(self, machine: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "peer": self.peer,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "better": self.better,
            "checked": self.checked,
            "skipped": self.skipped,
            "error": self.error,
            "note": self.note,
            "machine": dict(machine),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        """Build a record from a plain dict (how ``bench_sim.run`` hands its figures over).

        Unknown keys are refused, so a misspelt field fails loudly instead of
        vanishing; ``ratio`` and ``machine`` are accepted and recomputed/replaced.
        """
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"ratio", "machine"}
        if unknown:
            raise ValueError(f"record {d.get('name')!r}: unknown fields {sorted(unknown)}")
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("value", "peer_value"):
            v = kwargs.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"record {d.get('name')!r}: {key} must be a number, got {v!r}")
        return cls(**kwargs)


def skipped(name: str, unit: str, reason: str, peer: str | None = None, **kw: Any) -> Record:
    return Record(name, None, unit, peer=peer, skipped=reason, **kw)


def failed(name: str, unit: str, error: str, peer: str | None = None, **kw: Any) -> Record:
    return Record(name, None, unit, peer=peer, error=error, **kw)


def without_peer(
    name: str, value: Number | None, unit: str, peer: str, reason: str, **kw: Any
) -> Record:
    """fwdist's figure whose peer did not run: skipped (tool missing) or, if ``reason``
    starts with ``error: ``, failed (the peer ran and broke)."""
    if reason.startswith("error: "):
        return Record(name, value, unit, peer=peer, error=reason.removeprefix("error: "), **kw)
    return Record(name, value, unit, peer=peer, skipped=reason, **kw)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "fwdist")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class Machine:
    """Where the figures were measured; copied into every record."""

    cpu: str = field(default_factory=_cpu_model)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    python: str = field(default_factory=lambda: platform.python_version())
    platform: str = field(default_factory=lambda: f"{sys.platform}-{platform.machine()}")
    fwdist_commit: str = field(default_factory=_git_commit)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
