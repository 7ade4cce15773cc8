"""The fleet curve: exact 50/90/99 % crossings, and SVG a browser (and an XML parser) reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fwdist.dashboard import FleetSample
from fwdist.dashboard._curve import Crossing, crossings, newest, svg, version_key
from tests.dashboard_helpers import T0, history

SVG = "{http://www.w3.org/2000/svg}"


def test_the_crossings_are_the_first_samples_at_or_above_each_mark() -> None:
    assert crossings(history(), "1.1.0") == (
        Crossing(50, T0 + 2 * 3600),
        Crossing(90, T0 + 4 * 3600),
        Crossing(99, T0 + 6 * 3600),
    )
    assert crossings(history(), "1.0.0") == (Crossing(50, T0), Crossing(90, T0), Crossing(99, T0))


def test_a_mark_is_reached_exactly_at_its_share_and_not_a_box_before() -> None:
    just_below = [FleetSample(T0, {"2.0.0": 98, "1.0.0": 2})]
    exactly = [*just_below, FleetSample(T0 + 60, {"2.0.0": 99, "1.0.0": 1})]
    assert crossings(just_below, "2.0.0")[2] == Crossing(99, None)
    assert crossings(exactly, "2.0.0")[2] == Crossing(99, T0 + 60)
    never = tuple(Crossing(m, None) for m in (50, 90, 99))
    assert crossings([FleetSample(T0, {})], "2.0.0") == never


def test_versions_order_numerically_and_labels_sort_first() -> None:
    assert sorted(["1.10.0", "1.9.0", "unknown", "1.9.10"], key=version_key) == [
        "unknown", "1.9.0", "1.9.10", "1.10.0"
    ]  # fmt: skip
    assert newest([FleetSample(T0, {"1.9.0": 3}), FleetSample(T0 + 1, {"1.10.0": 1})]) == "1.10.0"
    assert newest([]) is None


def test_the_svg_draws_one_step_curve_per_version_and_a_mark_per_crossing() -> None:
    root = ET.fromstring(svg(history(), "lockbox"))
    lines = root.findall(f"{SVG}polyline")
    assert [p.get("data-version") for p in lines] == ["1.0.0", "1.1.0"]
    # 7 samples: a point at each, plus the step's corner before each of the last 6
    assert [len(p.get("points", "").split()) for p in lines] == [13, 13]
    newest_line = lines[1].get("points", "").split()
    assert newest_line[0] == "44.0,212.0" and newest_line[-1] == "520.0,14.0"  # 0 % -> 99 %
    marks = root.findall(f"{SVG}line[@class='mark']")
    assert [(m.get("data-mark"), m.get("x1")) for m in marks] == [
        ("50", "202.7"), ("90", "361.3"), ("99", "520.0")
    ]  # fmt: skip
    assert len(root.findall(f"{SVG}line[@class='guide']")) == 3


def test_labels_from_the_field_are_escaped_and_an_empty_history_says_so() -> None:
    root = ET.fromstring(svg([FleetSample(T0, {"<b>&": 1})], "a <title> & more"))
    assert root.findtext(f"{SVG}title") == "a <title> & more"
    assert [p.get("data-version") for p in root.findall(f"{SVG}polyline")] == ["<b>&"]
    assert "no reports yet" in svg([], "empty")
    ET.fromstring(svg([], "empty"))
