"""The report a release engineer reads: exact text for a small seeded run, marks and plots.

The run is the four arithmetic strategies on a hand-made release (no store, no
lockbox), 40 boxes over 20 days with slow links and a high install threshold,
so that every case the report must explain shows up: boxes that never finish,
boxes that hold the payload but wait for batteries, a mean over a minority.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sim import plots
from sim.dists import Dist
from sim.draws import DAY
from sim.engine import StrategyTally
from sim.release import PeerDelta, ReleaseInfo
from sim.report import markdown, text_table, write_report
from sim.runner import SimResult, simulate
from sim.scenario import OwnerSpec, parse
from sim.stats import summarise
from sim.units import kib_text, plural, share

SCENARIO = """\
# report-test: a small seeded fleet for the report's exact text.
# Slow links and a high install threshold: some boxes never finish, some wait for batteries.

name = "report-test"
description = "40 boxes, 20 days, slow links, batteries that run low"

[run]
boxes = 40
runs = 1
days = 20.0
seed = 5

[release]
running = { "1.1.0" = 1.0 }

[fleet]
legacy_share = 0.1

[access]
throughput_Bps = { dist = "lognormal", median = 1500.0, sigma = 0.45, min = 1100.0, max = 13000.0 }

[battery]
min_install = 0.4
replace_below = 0.05
"""

RELEASE = ReleaseInfo(
    Path("/store"),
    "p",
    "1.2.0",
    65536,
    ("1.1.0",),
    {"1.1.0": PeerDelta("test", 6553)},
    fwdist_full_air=20480,
    fwdist_delta_air={"1.1.0": 5120},
)
NAMES = ("restart", "offset-resume", "object-4k", "oracle")


@pytest.fixture(scope="module")
def seeded() -> SimResult:
    r = simulate(parse(SCENARIO, "report-test.toml"), RELEASE, NAMES, workers=1)
    return dataclasses.replace(r, seconds=0.25)  # the one number that is wall-clock time


REPORT_HEAD = """\
# fwdist sim: report-test

40 boxes, 20 days, slow links, batteries that run low

- scenario report-test (report-test.toml): 40 boxes × 1 run pooled = 40 box histories over 20 days, seed 5
- legacy boxes without Bluetooth (never updated passively, left out of every share): 7 (17.5%); updatable: 33
- release p@1.2.0: image 64.0 KiB, store /store
- fwdist full payload on the air (manifest + table + pieces): 20.0 KiB
- from 1.1.0: fwdist delta 5.0 KiB; oracle 6.4 KiB (test)
- 262 box accesses simulated in 0.2 s on 1 process

## Results

Every share and percentile is of the 33 updatable boxes; the 7 legacy boxes are left out (they never update passively). Sizes are in KiB (1 KiB = 1,024 bytes) here and in the plots; `result.json` has exact bytes.

- **acc p50, p90, p99**: accesses (showings and owner sessions) of a box until its payload is complete; nearest-rank over all updatable boxes; *never*: that share of the boxes had not completed when the simulation ended.
- **mean**: over the boxes that completed only; marked † where some did not, – where none did.
- **days 50%, 90%, 99%**: days until that share of the updatable boxes runs the new version; *never*: not within the 20 days simulated.
- **KiB/box sent, wasted**: bytes on the air per updatable box, both directions; wasted = neither protocol overhead nor payload the box kept (lost frames, discarded objects, restarts).
- **unfinished**: boxes whose payload was not complete when the simulation ended.
- **awaiting battery**: boxes holding the whole payload that had not installed it when the simulation ended: installation waits until the battery holds 40.0%, and new batteries take days to arrive. Unfinished plus awaiting battery is the share not on the new version, which is what a days column's *never* counts.

| strategy | acc p50 | p90 | p99 | mean | days 50% | 90% | 99% | KiB/box sent | wasted | unfinished | awaiting battery |
|---|---|---|---|---|---|---|---|---|---|---|---|
| restart | never | never | never | 5.6† | never | never | never | 115.0 | 86.6 | 78.8% | 12.1% |
| offset-resume | 6 | never | never | 5.2† | 15.6 | never | never | 63.1 | 0.8 | 15.2% | 18.2% |
| object-4k | 6 | never | never | 5.4† | 15.6 | never | never | 66.0 | 6.0 | 15.2% | 18.2% |
| oracle | 1 | 3 | 3 | 1.5 | 4.4 | never | never | 6.4 | 0.0 | 0% | 21.2% |

† mean over the boxes that finished only: restart 7 of 33 (78.8% unfinished); offset-resume 28 of 33 (15.2% unfinished); object-4k 28 of 33 (15.2% unfinished). The boxes that did not finish are not in it: do not compare it with a strategy whose boxes all finished.

| strategy | what it is |
|---|---|
| restart | raw image in order; the transfer restarts from zero at each access |
| offset-resume | raw image in order, resumed from the last offset (the field today) |
| object-4k | 4 KiB objects; a partial object is lost on disconnect (Nordic DFU) |
| oracle | smallest peer delta, zero protocol overhead, no byte wasted (the bound) |

## The scenario's assumptions and their sources (from its file)

```
report-test: a small seeded fleet for the report's exact text.
Slow links and a high install threshold: some boxes never finish, some wait for batteries.
```

## Plots

![accesses.png](accesses.png)

Share of updatable boxes holding the whole payload after a number of accesses (log scale). Dotted lines: 50, 90 and 99%; the markers and the legend give each strategy's p50, p90 and p99; a curve that stays below a line never reached it.

![fleet.png](fleet.png)

Share of updatable boxes running the new version, by day. The markers and the legend give the day each strategy reaches 50, 90 and 99%, and the legend what kept the rest from it (payload unfinished, or install awaiting battery). Where two curves coincide (fwdist-delta and the oracle often do) the dashed one is drawn over the thick one.

![air_per_box.png](air_per_box.png)

What each strategy puts on the air per updatable box over the whole simulation: payload the box kept, protocol overhead, and waste, against the raw image size. Air time is battery, and time the agent's phone must stay at the box.

## Assumptions

Every value the simulation used (scenario file first, documented defaults otherwise).

| setting | value | meaning |
|---|---|---|
"""  # noqa: E501

TEXT_TABLE = """\
strategy       acc p50    p90    p99  mean  days 50%    90%    99%  KiB/box sent  wasted  unfinished  awaiting battery
-------------  -------  -----  -----  ----  --------  -----  -----  ------------  ------  ----------  ----------------
restart          never  never  never  5.6†     never  never  never         115.0    86.6       78.8%             12.1%
offset-resume        6  never  never  5.2†      15.6  never  never          63.1     0.8       15.2%             18.2%
object-4k            6  never  never  5.4†      15.6  never  never          66.0     6.0       15.2%             18.2%
oracle               1      3      3   1.5       4.4  never  never           6.4     0.0          0%             21.2%
† mean over the boxes that finished only: restart 7 of 33 (78.8% unfinished); offset-resume 28 of 33
(15.2% unfinished); object-4k 28 of 33 (15.2% unfinished). The boxes that did not finish are not in
it: do not compare it with a strategy whose boxes all finished."""  # noqa: E501


def test_report_md_is_exact_for_a_small_seeded_run(seeded: SimResult) -> None:
    md = markdown(seeded)
    assert md.startswith(REPORT_HEAD), md
    rows = md[len(REPORT_HEAD) :].splitlines()
    assert len(rows) == len(seeded.scenario.assumptions())
    # settings as a person writes them: no Python dict, no "1 runs"
    assert (
        "| `run.runs` | 1 run | Monte Carlo runs (independent fleets); results are pooled |" in rows
    )
    assert "| `run.boxes` | 40 boxes | boxes in the fleet (legacy ones included) |" in rows
    assert (
        "| `release.running` | 1.1.0 = 1 | versions the fleet runs before the rollout, "
        "with their shares (normalised) |"
    ) in rows
    assert not any(c in md for c in ("{", "['", "}")), "a Python repr leaked into the report"
    assert " KB" not in md and "kB" not in md  # one size unit: KiB


def test_text_table_is_exact_and_warns_under_a_partial_mean(seeded: SimResult) -> None:
    assert text_table(seeded) == TEXT_TABLE
    # the footnote wraps for a terminal
    assert all(len(line) <= 100 for line in TEXT_TABLE.splitlines()[6:])


def test_installs_waiting_for_batteries_have_their_own_share(seeded: SimResult) -> None:
    oracle = seeded.strategies["oracle"]
    # every payload complete, yet "never" at 90%: 7 of 33 boxes wait for batteries
    assert (oracle.finished, oracle.installed, oracle.boxes) == (33, 26, 33)
    assert oracle.days_to_90 is None and oracle.unfinished_share == 0.0
    assert oracle.awaiting_battery_share == 7 / 33
    assert oracle.as_json()["awaiting_battery_share"] == 0.212121


def test_an_install_after_the_horizon_is_not_counted() -> None:
    """The simulation ends at day 30; new batteries arriving on day 40 are not an install."""
    t = StrategyTally(accesses=[1, 2, None, 3], installed_at=[1 * DAY, None, None, 40 * DAY])
    st = summarise("x", "", t, 30.0)
    assert (st.finished, st.installed) == (3, 1)
    assert (st.unfinished_share, st.awaiting_battery_share) == (0.25, 0.5)
    assert st.days_to_50 is None  # was 40.0: a day the simulation never reached
    assert st.curve[-1] == (30.0, 0.25)


def test_partial_mean_without_any_finished_box_is_a_dash() -> None:
    st = summarise("x", "", StrategyTally(accesses=[None, None], installed_at=[None, None]), 5.0)
    r = SimResult(parse(SCENARIO), RELEASE, {"x": st}, 2, 0, 0, 0.0, 1)
    row = ["x", "never", "never", "never", "–", "never", "never", "never", "0.0", "0.0"]
    assert text_table(r).splitlines()[2].split() == [*row, "100%", "0%"]
    assert "†" not in text_table(r)


@pytest.mark.parametrize(
    "x,text",
    [
        (0.0, "0%"),
        (1 / 10_000, "<0.1%"),
        (0.0005, "0.1%"),
        (0.5, "50.0%"),
        (0.9999, ">99.9%"),
        (1.0, "100%"),
    ],
)
def test_a_share_is_zero_or_whole_only_when_exactly_so(x: float, text: str) -> None:
    assert share(x) == text


def test_units_and_counts() -> None:
    assert kib_text(262144) == "256.0 KiB" and kib_text(10276) == "10.0 KiB"
    assert [plural(n, "run", "runs") for n in (1, 2)] == ["1 run", "2 runs"]
    assert plural(1.0, "day", "days") == "1 day" and plural(90.0, "day", "days") == "90 days"


def test_assumptions_read_as_settings() -> None:
    s = parse('[access]\nthroughput_Bps = { dist = "choice", values = [2400.0, 5000.0] }\n')
    s = dataclasses.replace(s, owner=OwnerSpec(manual_after_days=Dist.fixed(1.0)))
    values = dict((k, v) for k, v, _ in s.assumptions())
    assert values["access.throughput_Bps"] == "choice of 2400, 5000 bytes/s"
    assert values["owner.manual_after_days"] == "1 day"
    assert values["release.running"] == "1.1.0 = 0.8, 1.0.0 = 0.2"


def _legend(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_fleet_plot_marks_50_90_99_and_says_what_it_leaves_out(seeded: SimResult) -> None:
    fig = plots.fleet_plot(seeded)
    ax = fig.axes[0]
    assert ax.get_title() == (
        "report-test: fleet on the new version\n"
        "shares of the 33 updatable boxes: 7 legacy boxes (17.5%, no Bluetooth) are left out"
    )
    assert [t.get_text() for t in ax.texts] == ["50%", "90%", "99%"]
    levels = sorted(
        float(line.get_xydata()[0][1]) for line in ax.lines if line.get_linestyle() == ":"
    )
    assert levels == [0.5, 0.9, 0.99]
    marks = {
        (line.get_marker(), *(float(v) for v in line.get_xydata()[0]))
        for line in ax.lines
        if line.get_marker() not in ("None", None, "")
    }
    # where a strategy reaches 50 %: offset-resume and object-4k on the same day, the oracle
    assert marks == {("o", 15.621, 0.5), ("o", 4.448, 0.5)}
    assert _legend(fig) == [
        "restart: 50% never · 90% never · 99% never; on day 20 78.8% unfinished, "
        "12.1% awaiting battery",
        "offset-resume: 50% on day 15.6 · 90% never · 99% never; on day 20 15.2% unfinished, "
        "18.2% awaiting battery",
        "object-4k: 50% on day 15.6 · 90% never · 99% never; on day 20 15.2% unfinished, "
        "18.2% awaiting battery",
        "oracle: 50% on day 4.4 · 90% never · 99% never; on day 20 0% unfinished, "
        "21.2% awaiting battery",
    ]


def test_accesses_plot_gives_percentiles_and_unfinished(seeded: SimResult) -> None:
    fig = plots.accesses_plot(seeded)
    assert _legend(fig) == [
        "restart: p50 never · p90 never · p99 never; unfinished 78.8%",
        "offset-resume: p50 6 · p90 never · p99 never; unfinished 15.2%",
        "object-4k: p50 6 · p90 never · p99 never; unfinished 15.2%",
        "oracle: p50 1 · p90 3 · p99 3; unfinished 0%",
    ]
    assert "7 legacy boxes (17.5%, no Bluetooth) are left out" in fig.axes[0].get_title()


def test_air_plot_splits_what_was_sent(seeded: SimResult) -> None:
    fig = plots.air_plot(seeded)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [
        "115.0 KiB, 75.3% wasted",
        "63.1 KiB, 1.3% wasted",
        "66.0 KiB, 9.1% wasted",
        "6.4 KiB, 0% wasted",
    ]
    # three stacked segments per strategy, summing to what it sent per box
    widths = [p.get_width() for p in ax.patches if isinstance(p, Rectangle)]
    assert len(widths) == 3 * len(NAMES)
    for i, st in enumerate(seeded.strategies.values()):
        total = widths[i] + widths[i + len(NAMES)] + widths[i + 2 * len(NAMES)]
        assert total == pytest.approx(st.air_bytes / st.boxes / 1024)
    assert _legend(fig)[0] == "the full image, raw: 64.0 KiB"


def _pixels_of(fig: Figure, rgb: tuple[int, int, int]) -> int:
    """Pixels of colour ``rgb`` (±8) inside the plot's axes, legend excluded."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[:, :, :3].astype(int)
    box = fig.axes[0].get_window_extent()
    h = img.shape[0]
    area = img[int(h - box.y1) : int(h - box.y0), int(box.x0) : int(box.x1)]
    return int((np.abs(area - np.array(rgb)).max(axis=2) <= 8).sum())


def test_fwdist_delta_stays_visible_under_the_oracle(seeded: SimResult) -> None:
    """Two identical curves, fwdist-delta and the oracle: both colours show in the plot."""
    oracle = seeded.strategies["oracle"]
    twins = {"fwdist-delta": dataclasses.replace(oracle, name="fwdist-delta"), "oracle": oracle}
    r = dataclasses.replace(seeded, strategies=twins)
    fig = plots.fleet_plot(r)
    red, black = _pixels_of(fig, (214, 39, 40)), _pixels_of(fig, (0, 0, 0))
    assert red > 300 and black > 300, (red, black)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_write_report_writes_every_file(seeded: SimResult, tmp_path: Path) -> None:
    written = write_report(seeded, tmp_path / "rep")
    names = [p.name for p in written]
    assert names == ["report.md", "result.json", "accesses.png", "fleet.png", "air_per_box.png"]
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(names)
    assert (tmp_path / "rep" / "report.md").read_text() == markdown(seeded)
    out = json.loads((tmp_path / "rep" / "result.json").read_text())
    assert out["strategies"]["restart"]["awaiting_battery_share"] == 0.121212
    sizes = {p.name: _png_size(p) for p in written if p.suffix == ".png"}
    assert sizes == {
        "accesses.png": (990, 682),
        "fleet.png": (990, 682),
        "air_per_box.png": (990, 418),
    }
    for p in written[2:]:
        assert p.stat().st_size > 30_000, p  # drawn, not an empty canvas
