"""The fwdist fleet simulator: how many accesses, and how many days, until a fleet is updated.

Agents are trio tasks in virtual time (``MockClock(autojump_threshold=0)``); a
walk-away is a cancel at an exact byte; fwdist's own strategies run the real
lockbox, app and protocol inside every session, the field's strategies are
modelled byte for byte, and every strategy sees the same random draws.

The surface (the modules behind it are internal to the simulator)::

    scenario = sim.load_scenario("rmls-passive")          # or a TOML path
    release = sim.load_release(store_dir, "lockbox", "1.1.0", ("1.0.0",))
    result = sim.simulate(scenario, release)              # -> SimResult
    result.as_json(); sim.write_report(result, Path("out"))

``fwdist sim`` without ``--store`` first stages a built-in sample release into a
cache (:func:`sim.release.stage_sample`) and loads that.
"""

from sim.draws import Access, BoxDraw
from sim.release import ReleaseInfo, load_release
from sim.report import write_report
from sim.runner import SimResult, simulate
from sim.scenario import Scenario
from sim.scenario import load as load_scenario
from sim.strategies import ALL

__all__ = [
    "ALL",
    "Access",
    "BoxDraw",
    "ReleaseInfo",
    "Scenario",
    "SimResult",
    "load_release",
    "load_scenario",
    "simulate",
    "write_report",
]
