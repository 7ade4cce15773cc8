"""What a simulation tells a release engineer: a table, a markdown report, JSON and plots.

Sizes are KiB wherever a person reads them (:mod:`sim.units`); ``result.json``
keeps exact bytes. Every share is of the updatable boxes, and the report says
how many legacy boxes that leaves out. A mean over the boxes that finished is
marked wherever some did not: beside "99.8% unfinished" it describes the few
lucky boxes, not the fleet.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from sim.plots import PLOTS, write_plots
from sim.runner import SimResult
from sim.stats import StrategyStats
from sim.units import kib, plural, share

COLUMNS = (
    "strategy",
    "acc p50",
    "p90",
    "p99",
    "mean",
    "days 50%",
    "90%",
    "99%",
    "KiB/box sent",
    "wasted",
    "unfinished",
    "awaiting battery",
)
PARTIAL_MEAN = "†"  # marks a mean over finished boxes when some boxes did not finish


def _num(v: float | None, digits: int) -> str:
    return "never" if v is None else f"{v:.{digits}f}"


def _mean(s: StrategyStats) -> str:
    if s.accesses_mean is None:
        return "–"  # no box finished: there is nothing to average
    mark = PARTIAL_MEAN if s.finished < s.boxes else ""
    return f"{s.accesses_mean:.1f}{mark}"


def table_rows(result: SimResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, s in result.strategies.items():
        per_box = max(1, s.boxes)
        rows.append(
            (
                name,
                _num(s.accesses_p50, 0),
                _num(s.accesses_p90, 0),
                _num(s.accesses_p99, 0),
                _mean(s),
                _num(s.days_to_50, 1),
                _num(s.days_to_90, 1),
                _num(s.days_to_99, 1),
                kib(s.air_bytes / per_box),
                kib(s.wasted_bytes / per_box),
                share(s.unfinished_share),
                share(s.awaiting_battery_share),
            )
        )
    return rows


def mean_warning(result: SimResult) -> str | None:
    """The footnote for every mean marked :data:`PARTIAL_MEAN`, or None if none is."""
    partial = [s for s in result.strategies.values() if 0 < s.finished < s.boxes]
    if not partial:
        return None
    who = "; ".join(
        f"{s.name} {s.finished} of {s.boxes} ({share(s.unfinished_share)} unfinished)"
        for s in partial
    )
    return (
        f"{PARTIAL_MEAN} mean over the boxes that finished only: {who}. The boxes that did "
        "not finish are not in it: do not compare it with a strategy whose boxes all finished."
    )


def text_table(result: SimResult) -> str:
    rows = [COLUMNS, *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    warning = mean_warning(result)
    if warning:
        lines += textwrap.wrap(warning, width=100)
    return "\n".join(lines)


def headline(result: SimResult) -> list[str]:
    s = result.scenario
    upd = result.boxes - result.legacy
    return [
        f"scenario {s.name} ({s.source}): {plural(s.run.boxes, 'box', 'boxes')} × "
        f"{plural(s.run.runs, 'run', 'runs')} pooled = {result.boxes} box histories over "
        f"{plural(s.run.days, 'day', 'days')}, seed {s.run.seed}",
        f"legacy boxes without Bluetooth (never updated passively, left out of every share): "
        f"{result.legacy} ({share(result.legacy / max(1, result.boxes))}); updatable: {upd}",
        *result.release.describe(),
        f"{result.box_accesses} box accesses simulated in {result.seconds:.1f} s on "
        f"{plural(result.workers, 'process', 'processes')}",
    ]


def _legend(result: SimResult) -> list[str]:
    s = result.scenario
    upd = result.boxes - result.legacy
    return [
        f"Every share and percentile is of the {upd} updatable boxes; the {result.legacy} "
        "legacy boxes are left out (they never update passively). Sizes are in KiB "
        "(1 KiB = 1,024 bytes) here and in the plots; `result.json` has exact bytes.",
        "",
        "- **acc p50, p90, p99**: accesses (showings and owner sessions) of a box until its "
        "payload is complete; nearest-rank over all updatable boxes; *never*: that share of "
        "the boxes had not completed when the simulation ended.",
        f"- **mean**: over the boxes that completed only; marked {PARTIAL_MEAN} where some did "
        "not, – where none did.",
        "- **days 50%, 90%, 99%**: days until that share of the updatable boxes runs the new "
        f"version; *never*: not within the {plural(s.run.days, 'day', 'days')} simulated.",
        "- **KiB/box sent, wasted**: bytes on the air per updatable box, both directions; "
        "wasted = neither protocol overhead nor payload the box kept (lost frames, discarded "
        "objects, restarts).",
        "- **unfinished**: boxes whose payload was not complete when the simulation ended.",
        "- **awaiting battery**: boxes holding the whole payload that had not installed it when "
        f"the simulation ended: installation waits until the battery holds "
        f"{share(s.battery.min_install)}, and new batteries take days to arrive. Unfinished "
        "plus awaiting battery is the share not on the new version, which is what a days "
        "column's *never* counts.",
    ]


def markdown(result: SimResult) -> str:
    s = result.scenario
    out = [f"# fwdist sim: {s.name}", "", s.description, ""]
    out += [f"- {line.strip()}" for line in headline(result)]
    out += ["", "## Results", "", *_legend(result), ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(result):
        out.append("| " + " | ".join(row) + " |")
    warning = mean_warning(result)
    if warning:
        out += ["", warning]
    out += ["", "| strategy | what it is |", "|---|---|"]
    out += [f"| {n} | {st.description} |" for n, st in result.strategies.items()]
    if result.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    if s.notes:
        out += [
            "",
            "## The scenario's assumptions and their sources (from its file)",
            "",
            "```",
            s.notes,
            "```",
        ]
    out += ["", "## Plots", ""]
    for plot in PLOTS:
        out += [f"![{plot.file}]({plot.file})", "", plot.caption, ""]
    out += [
        "## Assumptions",
        "",
        "Every value the simulation used (scenario file first, documented defaults otherwise).",
        "",
        "| setting | value | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {v} | {d} |" for k, v, d in s.assumptions()]
    return "\n".join(out) + "\n"


def write_report(result: SimResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(result))
    (out / "result.json").write_text(json.dumps(result.as_json(), indent=2, sort_keys=True) + "\n")
    return [out / "report.md", out / "result.json", *write_plots(result, out)]
