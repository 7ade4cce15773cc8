"""The box's side: time and peak memory to apply a delta and verify; protocol bytes per session.

These figures need the device state machine (``fwdist.lockbox``), the phone's
side (``fwdist.app``) and the frames between them (``fwdist.protocol``). Until
those modules are in the tree, every figure here is a skipped record that says
so; no number is made up in their place.
"""

from __future__ import annotations

import importlib.util

from benchmarks.record import Record, skipped

NEEDS = ("fwdist.lockbox", "fwdist.app", "fwdist.protocol")
FIGURES = (
    ("lockbox/apply_verify_seconds", "s"),
    ("lockbox/apply_peak_memory", "bytes"),
    ("protocol/overhead_bytes_per_session", "bytes"),
)


def missing_modules() -> list[str]:
    out = []
    for name in NEEDS:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ImportError:
            out.append(name)
    return out


def run(quick: bool) -> list[Record]:
    missing = missing_modules()
    if missing:
        reason = f"lockbox not available: {', '.join(missing)} not in this tree yet"
    else:
        reason = (
            "lockbox available, but benchmarks/bench_lockbox.py does not drive it yet "
            "(hook: replace this with a session over fwdist.app/fwdist.lockbox)"
        )
    return [skipped(name, unit, reason) for name, unit in FIGURES]
