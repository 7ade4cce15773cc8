"""fwdist's strategies in the simulator: the real lockbox installs the real image, bytes add up."""

from __future__ import annotations

import dataclasses
import math

from fwdist.app import App
from fwdist.pump import pump_session
from sim.dists import Dist
from sim.draws import Access, BoxDraw
from sim.engine import simulate_shard
from sim.fwdist_strategy import FwdistSession, FwdistStrategy, whole_frames
from sim.release import ReleaseInfo
from sim.strategies import make_strategies

from .test_closed_forms import RATE, fixed_scenario


def _box(version: str) -> BoxDraw:
    return BoxDraw(0, False, version, 1.0, 1.0, 86400.0, None)


def _access(budget: int, partial: float = 1.0, seed: int = 0) -> Access:
    return Access(0.0, 0, budget / RATE + 5.5, 4.0, 1.5, RATE, True, partial, seed)


def test_one_long_access_installs_with_exact_bytes(small_release: ReleaseInfo) -> None:
    for delta in (False, True):
        st = FwdistStrategy.load(small_release, delta=delta)
        for version in small_release.sources:
            box = st.new_box(_box(version))
            air = box.access(_access(10**7))
            pr = box.progress
            assert pr.done and pr.kept == pr.payload == st.payloads[version].size
            assert pr.wasted == 0 and pr.overhead == air - pr.kept
            # the same conversation through pump_session (the demo's turns): same bytes both ways
            other = st.new_box(_box(version))
            report = pump_session(other.lockbox(), App(st.cache), None, st.epoch)
            assert report.sent_bytes + report.received_bytes == air
            assert report.complete


def _frame_by_frame(session: FwdistSession, budget: int) -> tuple[int, int]:
    """Drive one session through its frame surface here: (bytes on the air, bytes of cut frames).

    What a cut frame lost is counted from the bytes themselves: the part of the
    chunk that left, less the whole frames at its start.
    """
    used = 0
    while (size := session.next_frame()) is not None:
        if used + size > budget:
            chunk, sent = session.pump.chunk, budget - used
            session.lost(sent)
            session.finish()
            return budget, sent - whole_frames(chunk, sent)
        session.delivered()
        used += size
    session.finish()
    return used, 0


def test_small_budgets_resume_across_sessions(small_release: ReleaseInfo) -> None:
    st = FwdistStrategy.load(small_release, delta=True)
    version = small_release.sources[0]
    need = st.payloads[version].size
    for budget in (600, 1500, 4000):
        box = st.new_box(_box(version))
        twin = st.new_box(_box(version))  # the same sessions, driven frame by frame here
        sessions = air = lost = cut_sessions = 0
        while not box.progress.done:
            before = box.progress.kept
            box.access(_access(budget))
            sessions += 1
            assert box.progress.kept >= before  # persisted progress never goes backwards
            assert sessions < 200
            session = twin.open_session(_access(budget))
            assert session is not None
            on_air, cut = _frame_by_frame(session, budget)
            air, lost, cut_sessions = air + on_air, lost + cut, cut_sessions + (cut > 0)
        assert sessions >= math.ceil(need / budget)
        pr = box.progress
        assert twin.progress == pr  # the coarse pump and the frame surface agree to the byte
        # the bytes wasted are exactly the cut frames' bytes that left, counted on the wire
        assert (pr.air, pr.wasted) == (air, lost)
        # every session but the last ran out of budget in the middle of a frame (the last
        # may too, in a frame after the payload was complete), and a cut frame (at most
        # max_frame bytes with its header) lost at least one byte, not all
        assert air == (sessions - 1) * budget + on_air
        assert cut_sessions == sessions - 1 + (on_air == budget and cut > 0)
        assert cut_sessions <= lost <= cut_sessions * (st.config.max_frame - 1)
        assert pr.kept == pr.payload == need


def test_a_phone_without_the_piece_sends_nothing_of_it(small_release: ReleaseInfo) -> None:
    st = FwdistStrategy.load(small_release, delta=False)
    version = small_release.sources[0]
    box = st.new_box(_box(version))
    box.access(_access(10**7, partial=1e-9, seed=5))  # holds (almost surely) no piece
    assert box.progress.kept == 0 and not box.progress.done
    box.access(_access(10**7))
    assert box.progress.done


def test_fixed_budget_gives_identical_boxes_identical_counts(small_release: ReleaseInfo) -> None:
    s = fixed_scenario(2000, boxes=12, days=60)
    s = dataclasses.replace(
        s,
        release=dataclasses.replace(s.release, running={v: 1.0 for v in small_release.sources}),
        showings=dataclasses.replace(s.showings, popularity=Dist.fixed(1.0)),
    )
    names = ("fwdist-full", "fwdist-delta", "oracle")
    r = simulate_shard(s, make_strategies(s, small_release, names), 0, 0, 12)
    from sim.draws import BoxDice

    versions = [BoxDice(s, 0, i).box().running for i in range(12)]
    for name in names:
        acc = r.strategies[name].accesses
        by_version: dict[str, set[int | None]] = {}
        for v, a in zip(versions, acc, strict=True):
            by_version.setdefault(v, set()).add(a)
        assert all(len(x) == 1 and None not in x for x in by_version.values()), (name, by_version)
    from fwdist.releases import plan
    from fwdist.store import Store

    store = Store.open(small_release.store)
    for v in small_release.sources:
        oracle = math.ceil(small_release.oracle_bytes[v] / 2000)
        idx = versions.index(v)
        assert r.strategies["oracle"].accesses[idx] == oracle
        # fwdist's own payload is the bound it cannot beat (it may beat the peers' delta)
        payload = plan(store, small_release.product, v, small_release.target).payload_bytes
        bound = math.ceil(payload / 2000)
        assert r.strategies["fwdist-delta"].accesses[idx] >= bound  # type: ignore[operator]


def test_whole_frames() -> None:
    chunk = b"\x00\x03abc" + b"\x00\x02xy"
    assert [whole_frames(chunk, n) for n in (0, 1, 4, 5, 6, 8, 9)] == [0, 0, 0, 5, 5, 5, 9]
