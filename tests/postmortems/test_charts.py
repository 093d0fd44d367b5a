"""The SVG charts draw what they are given, say so when given nothing, escape labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from postmortems.charts import axis_scale, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_line_chart_draws_a_point_per_value_and_the_target_line():
    svg = line_chart([("#1", 12.0), ("#2", 18.0), ("#3", 9.5)], title="T", unit="min", target=15)
    root = _parse(svg)
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == 3
    assert [c.get("fill") for c in circles] == ["#2f5bd3", "#b42318", "#2f5bd3"]
    assert any(line.get("stroke-dasharray") for line in root.findall(f"{SVG}line"))


def test_grouped_bars_draw_one_bar_per_value_and_skip_missing_ones():
    svg = bar_chart(
        ["P0", "P1"], [("Detect", [3.0, None]), ("Decide", [1.0, 2.0])], title="T", unit="min"
    )
    assert len(_parse(svg).findall(f"{SVG}rect")) == 3 + 2  # bars + legend swatches


def test_stacked_bars_sit_on_top_of_each_other():
    svg = bar_chart(
        ["k8s"], [("ok", [4.0]), ("failed", [1.0])], title="T", unit="steps", stacked=True
    )
    bars = [r for r in _parse(svg).findall(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    ok, failed = bars
    assert ok.get("x") == failed.get("x")
    assert float(failed.get("y")) + float(failed.get("height")) == float(ok.get("y"))


def test_charts_without_figures_say_so():
    for svg in (
        line_chart([], title="Trend", unit="min", empty="Nothing yet."),
        bar_chart([], [], title="Bars", unit="min", empty="Nothing yet."),
        bar_chart(["a"], [("s", [None])], title="Bars", unit="min", empty="Nothing yet."),
    ):
        root = _parse(svg)
        assert root.find(f"{SVG}text").text == "Nothing yet."
        assert root.get("role") == "img"


def test_labels_are_escaped():
    svg = bar_chart(['<script>"x"</script>'], [("s&p", [1.0])], title="<T>", unit="min")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    _parse(svg)


@pytest.mark.parametrize(
    ("highest", "whole", "top", "steps"),
    [
        (21, False, 25, 5),
        (15, False, 15, 6),
        (3.7, False, 4, 4),
        (0, True, 4, 4),
        (130, True, 150, 6),
    ],
)
def test_the_axis_ends_on_a_round_value_in_at_most_six_steps(highest, whole, top, steps):
    assert axis_scale(highest, whole=whole) == (top, steps)


def test_a_count_axis_never_steps_by_fractions():
    for highest in (1, 2, 3, 7, 11, 13, 29):
        top, steps = axis_scale(highest, whole=True)
        assert top >= highest and (top / steps) == int(top / steps)
