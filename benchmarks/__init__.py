"""fwdist's benchmark suite: every figure next to a peer measured in the same run.

``python -m benchmarks --quick`` is what CI runs after the tests (under five
minutes on a 2-core machine); the full run is for release decisions. One module
per area (``bench_chunking``, ``bench_staging``, ``bench_pairs``,
``bench_lockbox``, and the simulator's ``bench_sim``); :mod:`benchmarks.record`
is the record format, :mod:`benchmarks.limits` the stored limits CI checks, and
:mod:`benchmarks.report` the JSON and markdown outputs.
"""

from benchmarks.limits import CheckResult, Limits, check
from benchmarks.record import Machine, Record

__all__ = ["CheckResult", "Limits", "Machine", "Record", "check"]
