"""The report's three plots, drawn for a release engineer deciding on a rollout.

- ``accesses.png``: how many showings a box needs until its payload is complete;
- ``fleet.png``: how many days until 50, 90 and 99 % of the fleet runs the new version;
- ``air_per_box.png``: what each strategy puts on the air per box, and how much of it is waste.

Each strategy keeps one look across the plots. fwdist-delta and the oracle often
coincide, so fwdist-delta is a thick line under the oracle's thin dashed one:
where they agree both stay visible. Every share is of the updatable boxes, and
each plot says how many legacy boxes that leaves out. Sizes are KiB
(:mod:`sim.units`), as in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sim.runner import SimResult
from sim.stats import StrategyStats
from sim.units import KIB, kib_text, share

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKS = ((0.5, "o"), (0.9, "s"), (0.99, "^"))  # the shares a rollout is judged by
DPI = 110
_LOG_TICKS = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class Look:
    """How one strategy's line is drawn, the same in every plot."""

    color: str
    linestyle: str | tuple[int, tuple[int, ...]] = "-"
    linewidth: float = 1.6
    zorder: int = 3
    hollow: bool = False  # open markers, so a line drawn over another leaves both visible


LOOKS = {
    "restart": Look("tab:gray"),
    "offset-resume": Look("tab:orange"),
    "object-4k": Look("tab:green"),
    "fwdist-full": Look("tab:blue", linewidth=2.0),
    "fwdist-delta": Look("tab:red", linewidth=3.4, zorder=4),
    "oracle": Look("black", linestyle=(0, (4, 3)), linewidth=1.3, zorder=5, hollow=True),
}
_SPARE = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure outside pyplot (no global registry to leak into), and its one axes."""
    from matplotlib.figure import Figure  # here: importing matplotlib takes a while

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def look(name: str, index: int) -> Look:
    """A strategy's look; a strategy this module does not know gets a spare colour."""
    return LOOKS.get(name, Look(_SPARE[index % len(_SPARE)]))


def _legacy_line(result: SimResult, what: str = "shares") -> str:
    updatable = result.boxes - result.legacy
    return (
        f"{what} of the {updatable} updatable boxes: {result.legacy} legacy boxes "
        f"({share(result.legacy / max(1, result.boxes))}, no Bluetooth) are left out"
    )


def _marks(ax: Axes, right: float) -> None:
    """Dotted 50/90/99 % lines, labelled at the right edge."""
    for q, _ in MARKS:
        ax.axhline(q, color="0.45", linestyle=":", linewidth=0.9, zorder=1)
        ax.annotate(
            f"{q:.0%}",
            (right, q),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color="0.3",
            annotation_clip=False,
        )


def _crossings(ax: Axes, lk: Look, values: Sequence[float | None], labels: Sequence[str]) -> str:
    """Mark where a curve reaches 50/90/99 % and return the legend's summary of it.

    ``labels`` are the legend's words for those crossings, ``values`` where they
    are (None: never reached, no marker).
    """
    for (q, marker), v in zip(MARKS, values, strict=True):
        if v is None:
            continue
        ax.plot(
            [v],
            [q],
            marker=marker,
            markersize=5 if lk.hollow else 8,
            color=lk.color,
            markerfacecolor="none" if lk.hollow else lk.color,
            markeredgecolor=lk.color if lk.hollow else "white",
            linestyle="",
            zorder=lk.zorder + 2,
        )
    return " · ".join(labels)


def _text(v: float | None, fmt: str) -> str:
    return "never" if v is None else f"{v:{fmt}}"


def _left_over(st: StrategyStats, days: float) -> str:
    """Why a curve ends below 100%: the legend's account of the boxes not updated."""
    if not st.unfinished_share and not st.awaiting_battery_share:
        return ""
    return (
        f"; on day {days:g} {share(st.unfinished_share)} unfinished, "
        f"{share(st.awaiting_battery_share)} awaiting battery"
    )


def _finish(fig: Figure, ax: Axes, ncol: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)


def accesses_plot(result: SimResult) -> Figure:
    stats = list(result.strategies.values())
    fig, ax = _figure(9, 6.2)
    fig.subplots_adjust(left=0.09, right=0.93, top=0.88, bottom=0.3)
    top = max((max(st.access_counts) for st in stats if st.access_counts), default=1)
    right = max(10, top * 1.3)
    for i, st in enumerate(stats):
        lk = look(st.name, i)
        xs, ys, cum = [1.0], [0.0], 0
        for x, n in st.access_counts.items():
            cum += n
            xs.append(float(x))
            ys.append(cum / max(1, st.boxes))
        xs.append(right)
        ys.append(ys[-1])
        values = (st.accesses_p50, st.accesses_p90, st.accesses_p99)
        summary = _crossings(
            ax,
            lk,
            values,
            [f"p{q * 100:g} {_text(v, '.0f')}" for (q, _), v in zip(MARKS, values, strict=True)],
        )
        ax.step(
            xs,
            ys,
            where="post",
            color=lk.color,
            linestyle=lk.linestyle,
            linewidth=lk.linewidth,
            zorder=lk.zorder,
            label=f"{st.name}: {summary}; unfinished {share(st.unfinished_share)}",
        )
    ax.set_xscale("log")
    ax.set_xlim(1, right)
    ax.set_ylim(0, 1.02)
    ticks = [t for t in _LOG_TICKS if t <= right]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("accesses (showings and owner sessions) until the payload is complete")
    ax.set_ylabel("share of updatable boxes with the whole payload")
    ax.set_title(
        f"{result.scenario.name}: accesses per box over {result.scenario.run.days:g} days\n"
        f"{_legacy_line(result)}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    _marks(ax, right)
    _finish(fig, ax, 1)
    return fig


def fleet_plot(result: SimResult) -> Figure:
    stats = list(result.strategies.values())
    fig, ax = _figure(9, 6.2)
    fig.subplots_adjust(left=0.09, right=0.93, top=0.88, bottom=0.3)
    days = result.scenario.run.days
    for i, st in enumerate(stats):
        lk = look(st.name, i)
        values = (st.days_to_50, st.days_to_90, st.days_to_99)
        summary = _crossings(
            ax,
            lk,
            values,
            [
                f"{q:.0%} {'never' if v is None else f'on day {v:.1f}'}"
                for (q, _), v in zip(MARKS, values, strict=True)
            ],
        )
        ax.plot(
            [d for d, _ in st.curve],
            [v for _, v in st.curve],
            color=lk.color,
            linestyle=lk.linestyle,
            linewidth=lk.linewidth,
            zorder=lk.zorder,
            label=f"{st.name}: {summary}{_left_over(st, days)}",
        )
    ax.set_xlim(0, days)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("days after the release")
    ax.set_ylabel("share of updatable boxes running the new version")
    ax.set_title(
        f"{result.scenario.name}: fleet on the new version\n{_legacy_line(result)}", fontsize=10
    )
    ax.grid(alpha=0.3)
    _marks(ax, days)
    _finish(fig, ax, 1)
    return fig


def air_plot(result: SimResult) -> Figure:
    """Stacked bars: payload kept, protocol overhead and waste, per updatable box."""
    stats: list[StrategyStats] = list(result.strategies.values())
    fig, ax = _figure(9, 1.6 + 0.55 * len(stats))
    fig.subplots_adjust(left=0.16, right=0.97, top=0.82, bottom=0.22)
    names = [st.name for st in stats]
    rows = range(len(stats))
    kept, over, waste = (
        [getattr(st, key) / max(1, st.boxes) / KIB for st in stats]
        for key in ("payload_bytes", "overhead_bytes", "wasted_bytes")
    )
    ax.barh(rows, kept, color="0.25", label="payload the box kept")
    ax.barh(rows, over, left=kept, color="0.65", label="protocol overhead")
    ax.barh(
        rows,
        waste,
        left=[a + b for a, b in zip(kept, over, strict=True)],
        color="tab:red",
        label="wasted (lost frames, discarded objects, restarts)",
    )
    widest = max((st.air_bytes / max(1, st.boxes) for st in stats), default=0.0)
    image = result.release.image_bytes
    right = max(widest, image) / KIB * 1.35
    for y, st in zip(rows, stats, strict=True):
        sent = st.air_bytes / max(1, st.boxes)
        wasted = st.wasted_bytes / st.air_bytes if st.air_bytes else 0.0
        ax.annotate(
            f"{kib_text(sent)}, {share(wasted)} wasted",
            (sent / KIB, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.axvline(
        image / KIB,
        color="tab:blue",
        linestyle="--",
        linewidth=1,
        label=f"the full image, raw: {kib_text(image)}",
    )
    ax.set_yticks(list(rows), names)
    ax.invert_yaxis()
    ax.set_xlim(0, right)
    ax.set_xlabel(
        f"KiB on the air per updatable box over {result.scenario.run.days:g} days "
        "(both directions; 1 KiB = 1,024 bytes)"
    )
    ax.set_title(
        f"{result.scenario.name}: what each strategy puts on the air per box\n"
        f"{_legacy_line(result, 'means')}",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="x")
    fig.legend(loc="lower center", ncol=2, fontsize=8, frameon=False)
    return fig


@dataclass(frozen=True)
class Plot:
    """One plot of the report: its file, how to read it (under it in report.md), who draws it."""

    file: str
    caption: str
    draw: Callable[[SimResult], Figure]


PLOTS = (
    Plot(
        "accesses.png",
        "Share of updatable boxes holding the whole payload after a number of accesses (log "
        "scale). Dotted lines: 50, 90 and 99%; the markers and the legend give each "
        "strategy's p50, p90 and p99; a curve that stays below a line never reached it.",
        accesses_plot,
    ),
    Plot(
        "fleet.png",
        "Share of updatable boxes running the new version, by day. The markers and the "
        "legend give the day each strategy reaches 50, 90 and 99%, and the legend what kept "
        "the rest from it (payload unfinished, or install awaiting battery). Where two curves "
        "coincide (fwdist-delta and the oracle often do) the dashed one is drawn over the "
        "thick one.",
        fleet_plot,
    ),
    Plot(
        "air_per_box.png",
        "What each strategy puts on the air per updatable box over the whole simulation: "
        "payload the box kept, protocol overhead, and waste, against the raw image size. "
        "Air time is battery, and time the agent's phone must stay at the box.",
        air_plot,
    ),
)


def write_plots(result: SimResult, out: Path) -> list[Path]:
    """Draw every plot into ``out``; the paths, in :data:`PLOTS` order."""
    for plot in PLOTS:
        plot.draw(result).savefig(out / plot.file, dpi=DPI)
    return [out / plot.file for plot in PLOTS]
