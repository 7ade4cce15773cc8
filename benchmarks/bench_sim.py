"""The simulator's speed, and the default scenario's answer, next to peers measured in the same run.

- ``sim/accesses_per_second``: box accesses (one trio wake-up each, every strategy
  served, the real lockbox, app and protocol inside fwdist's sessions) per
  second of wall time, on rmls-passive, over both cores; peer: a SimPy-style
  discrete-event core (a heap of generator processes, one event per timeout)
  on 10,000 processes, which is what the same number of wake-ups costs without
  trio and without any work inside.
- ``sim/accesses_per_second_field_models``: the same with the arithmetic field
  models only (restart, offset-resume, object-4k, oracle): the engine's own cost.
- ``sim/trio_wakeups_per_second``: trio ``MockClock(autojump_threshold=0)`` wake-ups
  per second for the same 10,000-process load as the SimPy-style peer.
- ``sim/fwdist_sessions_per_second``: real lockbox + app sessions per second inside
  the simulator, next to :func:`fwdist.pump.pump_session` running sessions
  of the same boxes and release with nothing around them.
- ``sim/trio_steps_per_access``: trio task steps (wake-ups) per box access in the
  engine's coarse mode, next to the frame-by-frame link (``--fine``): the design
  point is about one, not one per frame.
- ``sim/rmls-passive/accesses_p50``: fwdist-delta's p50 accesses on rmls-passive
  (deterministic for the seed), next to the oracle's; and next to offset-resume's.
- ``sim/rmls-passive/accesses_mean``: fwdist-delta's mean accesses next to the
  oracle's (the smallest peer delta with zero overhead): issue 11's measure of what
  the wire costs a realistic release. The release is the built-in sample under the
  ``DEVICE_MEDIAN`` model (a delta ~9.4 % of the image, as the median real device
  pair) and the box the MCU of :mod:`sim.box` (32 KiB decoder RAM): while no delta
  decodes in 32 KiB the box takes the full image, and this figure says so.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from sim.box import MCU

PROCESSES = 10_000


def simpy_style_events_per_second(processes: int, timeouts: int) -> float:
    """SimPy's core, reduced: processes are generators yielding delays; a heap orders them."""

    def proc(i: int) -> Generator[float, None, None]:
        for k in range(timeouts):
            yield 1.0 + ((i * 7919 + k * 104729) % 1000) / 1000.0

    started = time.perf_counter()
    heap: list[tuple[float, int, Generator[float, None, None]]] = []
    for i in range(processes):
        heap.append((0.0, i, proc(i)))
    heapq.heapify(heap)
    events = 0
    seq = processes
    while heap:
        now, _, gen = heapq.heappop(heap)
        events += 1
        try:
            delay = next(gen)
        except StopIteration:
            continue
        seq += 1
        heapq.heappush(heap, (now + delay, seq, gen))
    return events / (time.perf_counter() - started)


def trio_wakeups_per_second(processes: int, timeouts: int) -> float:
    import trio
    import trio.testing

    async def proc(i: int) -> None:
        for k in range(timeouts):
            await trio.sleep(1.0 + ((i * 7919 + k * 104729) % 1000) / 1000.0)

    async def main() -> None:
        async with trio.open_nursery() as n:
            for i in range(processes):
                n.start_soon(proc, i)

    started = time.perf_counter()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return processes * (timeouts + 1) / (time.perf_counter() - started)


def _release(size: int) -> Any:
    from sim.release import load_release, sample_store_dir, stage_sample

    d = stage_sample(sample_store_dir(size, 1), "lockbox-sample", size, 1)
    return load_release(
        Path(d) / "store", "lockbox-sample", "1.2.0", ("1.1.0", "1.0.0"), sample=True
    )


def _pump_sessions_per_second(release: Any, seconds: float) -> float:
    """Bare sessions: a fresh box on 1.1.0 and a phone, budget 14 KB, no simulator around them."""
    from fwdist.app import App
    from fwdist.pump import pump_session
    from sim.draws import BoxDraw
    from sim.fwdist_strategy import FwdistStrategy

    st = FwdistStrategy.load(release, delta=False)
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        box = st.new_box(BoxDraw(n, False, "1.1.0", 1.0, 1.0, 1.0, None))
        pump_session(box.lockbox(), App(st.cache, frame_cache=st.frame_cache), 14_000, st.epoch)
        n += 1
    return n / (time.perf_counter() - started)


def trio_steps_per_access(release: Any, boxes: int) -> tuple[float, float]:
    """Task steps per access, coarse and fine, on rmls-passive (30 days, ``boxes`` boxes)."""
    import trio

    from sim.engine import simulate_shard
    from sim.scenario import load
    from sim.strategies import make_strategies

    class Steps(trio.abc.Instrument):
        def __init__(self) -> None:
            self.n = 0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.n += 1

    s = load("rmls-passive").with_run(days=30)
    out = []
    for fine in (False, True):
        steps = Steps()
        r = simulate_shard(
            s, make_strategies(s, release), 0, 0, boxes, fine=fine, instruments=[steps]
        )
        out.append(steps.n / max(1, r.box_accesses))
    return out[0], out[1]


def run(quick: bool) -> list[dict[str, Any]]:
    from sim.runner import simulate
    from sim.scenario import load

    records: list[dict[str, Any]] = []
    timeouts = 5 if quick else 20
    simpy = simpy_style_events_per_second(PROCESSES, timeouts)
    trio_rate = trio_wakeups_per_second(PROCESSES, timeouts)
    records.append(
        {
            "name": "sim/trio_wakeups_per_second",
            "value": round(trio_rate),
            "unit": "events/s",
            "peer": "SimPy-style generator heap",
            "peer_value": round(simpy),
            "better": "higher",
            "note": f"{PROCESSES} processes x {timeouts} timeouts",
        }
    )

    scenario = load("rmls-passive")
    if quick:
        scenario = scenario.with_run(boxes=300, runs=1)
    release = _release(scenario.release.sample_image_bytes)
    field = simulate(
        scenario, release, ("restart", "offset-resume", "object-4k", "oracle"), workers=2
    )
    records.append(
        {
            "name": "sim/accesses_per_second_field_models",
            "value": round(field.box_accesses / field.seconds),
            "unit": "accesses/s",
            "peer": "SimPy-style generator heap",
            "peer_value": round(simpy),
            "better": "higher",
            "note": f"rmls-passive, {field.box_accesses} box accesses, 2 processes",
        }
    )
    full = simulate(scenario, release, workers=2)
    records.append(
        {
            "name": "sim/accesses_per_second",
            "value": round(full.box_accesses / full.seconds),
            "unit": "accesses/s",
            "peer": "SimPy-style generator heap",
            "peer_value": round(simpy),
            "better": "higher",
            "note": (
                f"rmls-passive, all six strategies, real lockbox in fwdist's "
                f"sessions, {full.box_accesses} box accesses in "
                f"{full.seconds:.1f} s, 2 processes; target 10,000/s"
            ),
        }
    )
    sessions = sum(
        full.strategies[n].sessions for n in ("fwdist-full", "fwdist-delta") if n in full.strategies
    )
    records.append(
        {
            "name": "sim/fwdist_sessions_per_second",
            "value": round(sessions / full.seconds),
            "unit": "sessions/s",
            "peer": "pump.pump_session, bare (1 process)",
            "peer_value": round(_pump_sessions_per_second(release, 2.0 if quick else 5.0)),
            "better": "higher",
            "note": "simulator: 2 processes, all strategies' work included",
        }
    )
    coarse, fine = trio_steps_per_access(release, 10 if quick else 30)
    records.append(
        {
            "name": "sim/trio_steps_per_access",
            "value": round(coarse, 3),
            "unit": "steps/access",
            "peer": "frame-by-frame trio link (--fine)",
            "peer_value": round(fine, 1),
            "better": "lower",
            "note": "rmls-passive, 30 days, all six strategies",
        }
    )
    delta = full.strategies["fwdist-delta"].accesses_p50
    oracle = full.strategies["oracle"].accesses_p50
    offset = full.strategies["offset-resume"].accesses_p50
    records.append(
        {
            "name": "sim/rmls-passive/accesses_p50",
            "value": delta,
            "unit": "accesses",
            "peer": "oracle",
            "peer_value": oracle,
            "better": "lower",
            "checked": True,
            "note": f"fwdist-delta, {scenario.run.boxes} boxes x {scenario.run.runs} run(s)",
        }
    )
    d_mean = full.strategies["fwdist-delta"].accesses_mean
    o_mean = full.strategies["oracle"].accesses_mean
    unfinished = full.strategies["fwdist-delta"].unfinished_share
    records.append(
        {
            "name": "sim/rmls-passive/accesses_mean",
            "value": None if d_mean is None else round(d_mean, 2),
            "unit": "accesses",
            "peer": "oracle (smallest peer delta, zero overhead)",
            "peer_value": None if o_mean is None else round(o_mean, 2),
            "better": "lower",
            "checked": True,
            "note": (
                f"fwdist-delta, mean over finished boxes ({unfinished:.1%} unfinished); "
                f"{release.describe()[2].strip()}; box: {MCU}"
            ),
        }
    )
    records.append(
        {
            "name": "sim/rmls-passive/accesses_p50_vs_offset_resume",
            "value": delta,
            "unit": "accesses",
            "peer": "offset-resume",
            "peer_value": offset,
            "better": "lower",
            "checked": True,
        }
    )
    return records


if __name__ == "__main__":
    import json
    import sys

    for r in run("--quick" in sys.argv):
        print(json.dumps(r))
