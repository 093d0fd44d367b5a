"""Small server-rendered SVG charts: a line chart and a (grouped or stacked) bar chart.

No JavaScript and nothing fetched from elsewhere: the page embeds the markup. Every label
is escaped here, so the result is safe to mark as such. Each chart carries a <title> and
an aria-label; the pages show the same figures in a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

from incidents.models import BackendKind
from postmortems.selectors import OUTCOMES, PHASE_LABELS, RecoveryOverview
from rollbacks.models import StepState

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 34, 50
PALETTE = ("#2f5bd3", "#d9822b", "#137a3d", "#8e44ad", "#b42318", "#0f8b8d")
OUTCOME_COLOURS: dict[str, str] = {
    StepState.SUCCEEDED: "#137a3d",
    StepState.FAILED: "#b42318",
    StepState.SKIPPED: "#98a2b3",
    StepState.CANCELLED: "#d9822b",
}


def axis_scale(value: float, *, whole: bool = False) -> tuple[float, int]:
    """The axis top and its number of steps: the first step of 1, 2, 2.5 or 5 × 10ⁿ (whole
    numbers only with `whole`) that covers `value` in at most six steps."""
    if value <= 0:
        return (4.0, 4) if whole else (1.0, 4)
    power = 10 ** (math.floor(math.log10(value / 6)) if value >= 6 else -1)
    while True:
        for factor in (1, 2, 2.5, 5):
            step = factor * power
            if whole and (step < 1 or step != int(step)):
                continue
            steps = math.ceil(value / step - 1e-9)
            if steps <= 6:
                return float(step * max(steps, 1)), max(steps, 1)
        power *= 10


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _frame(title: str, body: list[str], description: str) -> SafeString:
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="chart" role="img" aria-label="{escape(description)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )
    return mark_safe(svg)  # noqa: S308  (every label above went through escape())


def _empty(title: str, message: str) -> SafeString:
    body = [
        f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{HEIGHT - 1}" fill="none" '
        'stroke="#dde1e8"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="14" '
        f'fill="#667085">{escape(message)}</text>',
    ]
    return _frame(title, body, f"{title}: {message}")


def _axes(top_value: float, steps: int, unit: str) -> list[str]:
    """The y axis with a gridline per step from 0 to `top_value`."""
    plot_height = HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(steps + 1):
        value = top_value * i / steps
        y = HEIGHT - BOTTOM - plot_height * i / steps
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#98a2b3" if i == 0 else "#eaecf0"}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#667085">{_number(value)}</text>'
        )
    parts.append(
        f'<text x="12" y="{TOP + plot_height / 2:.1f}" font-size="11" fill="#667085" '
        f'text-anchor="middle" transform="rotate(-90 12 {TOP + plot_height / 2:.1f})">'
        f"{escape(unit)}</text>"
    )
    return parts


def _legend(names: Sequence[str], colours: Sequence[str]) -> list[str]:
    parts, x = [], LEFT
    for name, colour in zip(names, colours, strict=True):
        parts.append(
            f'<rect x="{x}" y="10" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="19" font-size="11" fill="#1d2330">{escape(name)}</text>'
        )
        x += 22 + 7 * len(name)
    return parts


def line_chart(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str,
    target: float | None = None,
    target_label: str = "target",
    empty: str = "No figures yet.",
) -> SafeString:
    """Points in order (label, value) joined by a line, with an optional dashed target."""
    if not points:
        return _empty(title, empty)
    top_value, steps = axis_scale(max([value for _, value in points] + [target or 0]))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_at(index: int) -> float:
        return LEFT + (
            plot_width / 2 if len(points) == 1 else plot_width * index / (len(points) - 1)
        )

    def y_at(value: float) -> float:
        return HEIGHT - BOTTOM - plot_height * value / top_value

    body = _axes(top_value, steps, unit)
    if target is not None:
        y = y_at(target)
        body.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b42318" '
            f'stroke-dasharray="5 4"/><text x="{WIDTH - RIGHT}" y="{y - 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#b42318">{escape(target_label)}</text>'
        )
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x_at(i):.1f},{y_at(value):.1f}"
        for i, (_, value) in enumerate(points)
    )
    body.append(f'<path d="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    every = max(1, math.ceil(len(points) / 8))
    for i, (label, value) in enumerate(points):
        colour = "#b42318" if target is not None and value > target else PALETTE[0]
        body.append(
            f'<circle cx="{x_at(i):.1f}" cy="{y_at(value):.1f}" r="3.5" fill="{colour}">'
            f"<title>{escape(label)}: {_number(value)} {escape(unit)}</title></circle>"
        )
        if i % every == 0:
            body.append(
                f'<text x="{x_at(i):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="10.5" '
                f'text-anchor="middle" fill="#667085">{escape(_short(label, 14))}</text>'
            )
    return _frame(title, body, f"{title}, {len(points)} points, in {unit}")


def bar_chart(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    unit: str,
    stacked: bool = False,
    counts: bool = False,
    colours: Sequence[str] = PALETTE,
    empty: str = "No figures yet.",
) -> SafeString:
    """Bars per category, one per series side by side (or stacked). None draws nothing.
    With `counts`, the axis steps in whole numbers."""
    values = [v or 0.0 for _, vs in series for v in vs]
    if not categories or not series or not any(values):
        return _empty(title, empty)
    if stacked:
        highest = max(sum(vs[i] or 0 for _, vs in series) for i in range(len(categories)))
    else:
        highest = max(values)
    top_value, steps = axis_scale(highest, whole=counts)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / len(categories)
    label_limit = max(6, int(slot / 6.5))
    bars = 1 if stacked else len(series)
    bar_width = min(28.0, slot * 0.8 / bars)
    body = _axes(top_value, steps, unit)
    body += _legend([name for name, _ in series], colours[: len(series)])
    for c, category in enumerate(categories):
        left = LEFT + slot * c + (slot - bar_width * bars) / 2
        base = float(HEIGHT - BOTTOM)
        for s, (name, vs) in enumerate(series):
            value = vs[c]
            if not value:
                continue
            height = plot_height * value / top_value
            x = left if stacked else left + s * bar_width
            y = base - height
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{height:.1f}" '
                f'fill="{colours[s % len(colours)]}"><title>{escape(category)}, {escape(name)}: '
                f"{_number(value)} {escape(unit)}</title></rect>"
            )
            if stacked:
                base = y
        body.append(
            f'<text x="{LEFT + slot * c + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'font-size="10.5" text-anchor="middle" fill="#667085">'
            f"{escape(_short(category, label_limit))}<title>{escape(category)}</title></text>"
        )
    return _frame(title, body, f"{title}, {len(categories)} groups, in {unit}")


def _minutes(value: object) -> float | None:
    seconds = getattr(value, "total_seconds", None)
    return None if seconds is None else round(seconds() / 60, 1)


def overview_charts(overview: RecoveryOverview) -> dict[str, SafeString]:
    """The metrics page's four charts."""
    phases = [p for p in PHASE_LABELS if p != "total_recovery"]
    trend = line_chart(
        [
            (f"#{p.incident_id} {p.detected_at:%m-%d}", _minutes(p.total_recovery) or 0.0)
            for p in overview.trend
        ],
        title="Total recovery per incident",
        unit="minutes",
        target=15.0,
        target_label="15 min target",
        empty="No incident has a verified recovery in this range.",
    )
    severity_groups = [a for a in overview.by_severity if a.incidents]
    by_severity = bar_chart(
        [a.group for a in severity_groups],
        [(PHASE_LABELS[p], [_minutes(a.means[p]) for a in severity_groups]) for p in phases],
        title="Mean time per phase by severity",
        unit="minutes",
        empty="No incidents in this range.",
    )
    by_service = bar_chart(
        [a.group for a in overview.by_service],
        [(PHASE_LABELS[p], [_minutes(a.means[p]) for a in overview.by_service]) for p in phases],
        title="Mean time per phase by service",
        unit="minutes",
        empty="No incident in this range names a service.",
    )
    backends = list(overview.rollbacks)
    rollbacks = bar_chart(
        [BackendKind(b).label.split(" (")[0] for b in backends],
        [
            (StepState(outcome).label, [float(overview.rollbacks[b][outcome]) for b in backends])
            for outcome in OUTCOMES
        ],
        title="Rollback steps by backend and outcome",
        unit="steps",
        stacked=True,
        counts=True,
        colours=[OUTCOME_COLOURS[o] for o in OUTCOMES],
        empty="No rollback finished in this range.",
    )
    return {
        "trend": trend,
        "by_severity": by_severity,
        "by_service": by_service,
        "rollbacks": rollbacks,
    }
