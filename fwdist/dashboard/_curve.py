"""The fleet-by-version curve, drawn on the server as inline SVG, with its 50/90/99 % marks.

Drawn server-side so the page needs no chart library, no build step and no JavaScript: the
browser renders the SVG as it renders text. Each version's share of the product's reporting
boxes is a step curve (a share holds until the next sample says otherwise, since that is all
the reports tell us); the newest version gets a vertical mark where its share first reached
50, 90 and 99 %, and the same crossings are returned as data so the page can say them in words.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fwdist.dashboard._model import FleetSample
from fwdist.errors import ManifestError
from fwdist.manifest import Version

MARKS = (50, 90, 99)
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 120, 12, 28  # margins: axis labels left, legend right
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass(frozen=True)
class Crossing:
    mark: int  # percent
    at: int | None  # first sample time with share >= mark, None if never reached


def version_key(version: str) -> tuple[int, tuple[int, int, int], str]:
    """Order versions numerically; a label that is not X.Y.Z sorts before every real one."""
    try:
        v = Version.parse(version)
    except ManifestError:
        return (0, (0, 0, 0), version)
    return (1, (v.major, v.minor, v.patch), version)


def newest(history: Sequence[FleetSample]) -> str | None:
    seen = {v for s in history for v in s.versions}
    return max(seen, key=version_key) if seen else None


def share(sample: FleetSample, version: str) -> float:
    """The version's share of the sample's boxes, in percent (0 for an empty sample)."""
    total = sample.total
    return 100.0 * sample.versions.get(version, 0) / total if total else 0.0


def crossings(history: Sequence[FleetSample], version: str) -> tuple[Crossing, ...]:
    """When ``version`` first ran on 50, 90 and 99 % of the boxes, sample by sample.

    Compared as integers (count * 100 >= mark * total) so 99 of 100 boxes is exactly 99 %.
    """
    out = []
    for mark in MARKS:
        at = next(
            (
                s.at
                for s in history
                if s.total and s.versions.get(version, 0) * 100 >= mark * s.total
            ),
            None,
        )
        out.append(Crossing(mark, at))
    return tuple(out)


def when(at: int) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def svg(history: Sequence[FleetSample], title: str) -> str:
    """The curve as an ``<svg>`` element (a string of markup, every text escaped)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">',
        f"<title>{esc(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    if not history:
        parts.append(f'<text x="{LEFT + 8}" y="{TOP + 20}">no reports yet</text></svg>')
        return "".join(parts)
    t0, t1 = history[0].at, history[-1].at
    span = max(t1 - t0, 1)

    def x(at: int) -> float:
        return LEFT + plot_w * (at - t0) / span

    def y(pct: float) -> float:
        return TOP + plot_h * (1 - pct / 100)

    for mark in MARKS:
        parts.append(
            f'<line class="guide" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(mark):.1f}" '
            f'y2="{y(mark):.1f}" stroke="#ccc" stroke-dasharray="3 3"/>'
            f'<text x="{LEFT - 4}" y="{y(mark) + 4:.1f}" text-anchor="end" '
            f'font-size="10">{mark} %</text>'
        )
    versions = sorted({v for s in history for v in s.versions}, key=version_key)
    for i, version in enumerate(versions):
        colour = PALETTE[i % len(PALETTE)]
        points: list[str] = []
        level: float | None = None
        for sample in history:
            if level is not None:  # the step: the old share holds until this sample
                points.append(f"{x(sample.at):.1f},{level:.1f}")
            level = y(share(sample, version))
            points.append(f"{x(sample.at):.1f},{level:.1f}")
        if len(history) == 1:
            points.append(f"{LEFT + plot_w:.1f},{level:.1f}")
        parts.append(
            f'<polyline class="version" data-version="{esc(version)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>'
            f'<text x="{LEFT + plot_w + 8}" y="{TOP + 14 + 14 * i}" fill="{colour}" '
            f'font-size="12">{esc(version)}</text>'
        )
    top = versions[-1]
    for c in crossings(history, top):
        if c.at is not None:
            parts.append(
                f'<line class="mark" data-mark="{c.mark}" x1="{x(c.at):.1f}" x2="{x(c.at):.1f}" '
                f'y1="{TOP}" y2="{TOP + plot_h}" stroke="#555" stroke-dasharray="1 2"/>'
                f'<text x="{x(c.at) + 2:.1f}" y="{y(c.mark) - 2:.1f}" font-size="10">'
                f"{esc(top)} {c.mark} %</text>"
            )
    parts.append(
        f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10">{when(t0)}</text>'
        f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
        f"{when(t1)} UTC</text></svg>"
    )
    return "".join(parts)
