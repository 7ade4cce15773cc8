"""The pages as HTML: one Jinja2 environment, and each live section rendered by one macro.

A section (the fleet, the rollouts, the box list, one box's history) is rendered by the same
macro for the full page and for the server-sent event that replaces it, so what a reload shows
and what the live update shows cannot drift apart. Autoescape is on for every template: box
ids, tags and reasons come from the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from fwdist.dashboard import _curve as curve
from fwdist.dashboard._model import (
    BoxDetail,
    BoxSummary,
    ProductFleet,
    ReleaseView,
    RolloutView,
)


def _when(at: int | None) -> str:
    return "never" if at is None else curve.when(at) + " UTC"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def _count(n: int) -> str:
    return f"{n:,}"


def _path(segment: str) -> str:
    return quote(segment, safe="")


def _by_version(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Newest version first, numerically (1.10.0 above 1.9.0)."""
    return sorted(counts.items(), key=lambda kv: curve.version_key(kv[0]), reverse=True)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fwdist.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field is an error, not a blank cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Callable[..., Any]] = {
        "when": _when,
        "count": _count,
        "path": _path,
        "by_version": _by_version,
    }
    env.filters |= filters
    env.globals |= {"pct": _pct}
    return env


@dataclass(frozen=True)
class Curve:
    """One product's curve and its marks, for the template."""

    svg: Markup
    newest: str | None
    crossings: tuple[curve.Crossing, ...]


def curves(fleet: Sequence[ProductFleet]) -> dict[str, Curve]:
    out = {}
    for p in fleet:
        top = curve.newest(p.history)
        out[p.product] = Curve(
            Markup(curve.svg(p.history, f"{p.product}: boxes by version over time")),
            top,
            curve.crossings(p.history, top) if top else (),
        )
    return out


class Renderer:
    """Renders pages and sections; ``base`` is where the dashboard is mounted (``/dashboard``)."""

    def __init__(self, base: str) -> None:
        self.env = environment()
        self.base = base
        self._macros: Any = self.env.get_template("sections.html").make_module({"base": base})

    def overview_sections(
        self,
        fleet: Sequence[ProductFleet],
        rollouts: Sequence[RolloutView],
        releases: Sequence[ReleaseView],
        boxes: Sequence[BoxSummary],
    ) -> dict[str, Markup]:
        return {
            "fleet": Markup(self._macros.fleet(fleet, curves(fleet))),
            "rollouts": Markup(self._macros.rollouts(rollouts)),
            "releases": Markup(self._macros.releases(releases)),
            "boxes": Markup(self._macros.boxes(boxes)),
        }

    def box_sections(self, detail: BoxDetail) -> dict[str, Markup]:
        return {"box": Markup(self._macros.box(detail))}

    def page(self, template: str, **context: Any) -> str:
        return str(self.env.get_template(template).render(base=self.base, **context))

    @staticmethod
    def event_data(sections: Mapping[str, str]) -> str:
        return json.dumps(dict(sections), separators=(",", ":"), sort_keys=True)
