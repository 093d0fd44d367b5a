"""The public page's uptime history: 90 daily bars per component and an uptime percentage.

A component's history is its `ComponentStatusChange` rows: each state holds from its
`changed_at` until the next change (or now). A day (midnight to midnight in
settings.TIME_ZONE) shows the worst state it held that day; a day wholly before the
component's first recorded state has no data. A group shows its members combined: at every
instant the worst state of those of its members that existed then.

Uptime over the window counts a major outage fully as downtime, a partial outage for
`PARTIAL_OUTAGE_WEIGHT` of its length, and degraded performance and maintenance not at all,
over the time the component existed within the window.

Everything is read in four queries whatever the number of components and days, and kept
with `selectors.cached_public` as plain JSON data.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.utils import timezone

from statuspage.models import Component, ComponentStatus, ComponentStatusChange, PublicIncident
from statuspage.selectors import cached_public, worst_status

WINDOW_DAYS = 90
PARTIAL_OUTAGE_WEIGHT = 0.3
NO_DATA = "no_data"
_DOWNTIME_WEIGHT = {
    ComponentStatus.MAJOR_OUTAGE: 1.0,
    ComponentStatus.PARTIAL_OUTAGE: PARTIAL_OUTAGE_WEIGHT,
}

# A state held over [start, end).
Segment = tuple[datetime, datetime, str]


@dataclass(frozen=True)
class DayIncident:
    """A public incident as a day's bar lists it."""

    id: int
    name: str


@dataclass(frozen=True)
class Day:
    """One bar: the day's worst state (`NO_DATA` before the component existed) and the
    public incidents that touched the component that day, oldest first."""

    date: date
    status: str
    incidents: list[DayIncident] = field(default_factory=list)

    @property
    def notable(self) -> bool:
        """Whether the day had incidents or a state other than operational: the days the
        keyboard stops on (every day is read by screen readers)."""
        return bool(self.incidents) or self.status not in (NO_DATA, ComponentStatus.OPERATIONAL)

    @property
    def status_label(self) -> str:
        if self.status == NO_DATA:
            return "No data"
        return str(ComponentStatus(self.status).label)


@dataclass(frozen=True)
class ComponentUptime:
    """A component's (or a group's) bars, oldest day first, and its uptime in percent
    (None when it did not exist at any time in the window)."""

    days: list[Day]
    percent: float | None

    @property
    def percent_text(self) -> str:
        """Two decimals, rounded down, so any downtime at all never reads as 100.00 %."""
        if self.percent is None:
            return "No data"
        return f"{int(self.percent * 100) / 100:.2f} %"

    @property
    def incident_days(self) -> int:
        return sum(1 for day in self.days if day.incidents)

    @property
    def summary_text(self) -> str:
        """How many days had incidents, in words ("no days with incidents", "1 day ...")."""
        count = self.incident_days
        if count == 0:
            return "no days with incidents"
        return f"{count} day{'s' if count != 1 else ''} with incidents"


@dataclass(frozen=True)
class PageUptime:
    """Every component's and group's uptime, by component id."""

    first_day: date
    last_day: date
    components: dict[int, ComponentUptime]

    def of(self, component: Component) -> ComponentUptime | None:
        return self.components.get(component.pk)


def page_uptime(*, now: datetime | None = None) -> PageUptime:
    """The uptime of every component and group over the last `WINDOW_DAYS` days (today
    included), from the cache when a copy of the last few seconds is there."""
    moment = now or timezone.now()
    today = timezone.localdate(moment)
    name = f"uptime {today.isoformat()}" if now is None else f"uptime at {moment.isoformat()}"
    return from_json(cached_public(name, lambda: to_json(compute_uptime(now=moment))))


def compute_uptime(*, now: datetime) -> PageUptime:
    """`page_uptime` without the cache: four queries whatever the number of components."""
    zone = timezone.get_default_timezone()
    last_day = timezone.localdate(now)
    first_day = last_day - timedelta(days=WINDOW_DAYS - 1)
    # Local midnights, DST included: bounds[i] starts day i, bounds[WINDOW_DAYS] ends today.
    bounds = [
        datetime.combine(first_day + timedelta(days=i), time.min, tzinfo=zone)
        for i in range(WINDOW_DAYS + 1)
    ]
    start = bounds[0]

    components = list(
        Component.objects.values_list("pk", "is_group", "group_id", "status", "created_at")
    )
    recorded = _segments(start, now)
    incidents = _incidents_by_component(start, now)

    timelines: dict[int, list[Segment]] = {}
    for pk, is_group, _group, status, created_at in components:
        if not is_group:
            # A component without any recorded state: as it is now, since it was created.
            timelines[pk] = recorded.get(pk) or _clip([(created_at, now, status)], start, now)

    result: dict[int, ComponentUptime] = {}
    for pk, is_group, _group, _status, _created in components:
        if is_group:
            members = [m for m, _g, group, _s, _c in components if group == pk]
            timeline = _combined([timelines[m] for m in members])
            day_incidents = _merged([incidents.get(m, []) for m in members])
        else:
            timeline = timelines[pk]
            day_incidents = incidents.get(pk, [])
        result[pk] = _uptime(timeline, day_incidents, bounds)
    return PageUptime(first_day=first_day, last_day=last_day, components=result)


def _segments(start: datetime, now: datetime) -> dict[int, list[Segment]]:
    """Each component's recorded states within [start, now): two queries, the state held
    when the window opens and the changes inside it."""
    changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    before = (
        ComponentStatusChange.objects.filter(changed_at__lt=start)
        .order_by("component_id", "-changed_at", "-id")
        .distinct("component_id")
        .values_list("component_id", "status")
    )
    for component_id, status in before:
        changes[component_id].append((start, status))
    inside = (
        ComponentStatusChange.objects.filter(changed_at__gte=start, changed_at__lte=now)
        .order_by("component_id", "changed_at", "id")
        .values_list("component_id", "changed_at", "status")
    )
    for component_id, changed_at, status in inside:
        changes[component_id].append((changed_at, status))
    segments = {}
    for component_id, points in changes.items():
        ends = [at for at, _ in points[1:]] + [now]
        segments[component_id] = [
            (at, end, status) for (at, status), end in zip(points, ends, strict=True) if end > at
        ]
    return segments


def _clip(segments: list[Segment], start: datetime, end: datetime) -> list[Segment]:
    clipped = [(max(a, start), min(b, end), status) for a, b, status in segments]
    return [(a, b, status) for a, b, status in clipped if b > a]


def _combined(timelines: list[list[Segment]]) -> list[Segment]:
    """A group's timeline: between any two changes of its members, the worst state of the
    members that existed then (one sweep over the members' changes)."""
    events: dict[datetime, Counter[str]] = defaultdict(Counter)
    for timeline in timelines:
        for a, b, status in timeline:
            events[a][status] += 1
            events[b][status] -= 1
    held: Counter[str] = Counter()
    combined: list[Segment] = []
    instants = sorted(events)
    for a, b in zip(instants, instants[1:], strict=False):
        held.update(events[a])
        present = [status for status, count in held.items() if count > 0]
        if not present:
            continue
        status = worst_status(present)
        if combined and combined[-1][2] == status and combined[-1][1] == a:
            combined[-1] = (combined[-1][0], b, status)
        else:
            combined.append((a, b, status))
    return combined


def _incidents_by_component(
    start: datetime, now: datetime
) -> dict[int, list[tuple[datetime, datetime, DayIncident]]]:
    """The public incidents whose published span (first update until resolved, or now)
    meets the window, by affected component: one query."""
    rows = (
        PublicIncident.components.through.objects.filter(publicincident__created_at__lte=now)
        .exclude(publicincident__resolved_at__lt=start)
        .order_by("publicincident__created_at", "publicincident_id")
        .values_list(
            "publicincident_id",
            "publicincident__name",
            "publicincident__created_at",
            "publicincident__resolved_at",
            "component_id",
        )
    )
    spans: dict[int, list[tuple[datetime, datetime, DayIncident]]] = defaultdict(list)
    for pk, name, created_at, resolved_at, component_id in rows:
        spans[component_id].append((created_at, resolved_at or now, DayIncident(pk, name)))
    return spans


def _merged(
    spans: list[list[tuple[datetime, datetime, DayIncident]]],
) -> list[tuple[datetime, datetime, DayIncident]]:
    seen: set[int] = set()
    merged = []
    for span in sorted((s for member in spans for s in member), key=lambda s: (s[0], s[2].id)):
        if span[2].id not in seen:
            seen.add(span[2].id)
            merged.append(span)
    return merged


def _day_range(bounds: list[datetime], a: datetime, b: datetime) -> range:
    """The indexes of the days that [a, b) touches (a span ending at midnight stops the
    day before)."""
    first = max(bisect_right(bounds, a) - 1, 0)
    last = min(bisect_left(bounds, b) - 1, len(bounds) - 2)
    return range(first, last + 1)


def _uptime(
    timeline: list[Segment],
    incidents: list[tuple[datetime, datetime, DayIncident]],
    bounds: list[datetime],
) -> ComponentUptime:
    held: list[list[str]] = [[] for _ in range(len(bounds) - 1)]
    observed = downtime = 0.0
    for a, b, status in timeline:
        for index in _day_range(bounds, a, b):
            held[index].append(status)
        seconds = (b - a).total_seconds()
        observed += seconds
        downtime += seconds * _DOWNTIME_WEIGHT.get(ComponentStatus(status), 0.0)
    listed: list[list[DayIncident]] = [[] for _ in held]
    for a, b, incident in incidents:
        for index in _day_range(bounds, a, max(b, a + timedelta(microseconds=1))):
            listed[index].append(incident)
    days = [
        Day(
            date=bounds[index].date(),
            status=worst_status(statuses) if statuses else NO_DATA,
            incidents=listed[index],
        )
        for index, statuses in enumerate(held)
    ]
    percent = 100.0 * (1 - downtime / observed) if observed else None
    return ComponentUptime(days=days, percent=percent)


# -- kept in the cache as JSON -----------------------------------------------------------------


def to_json(uptime: PageUptime) -> dict[str, Any]:
    """`uptime` as plain JSON data (what the cache keeps; Redis stores it as JSON)."""
    return {
        "first_day": uptime.first_day.isoformat(),
        "last_day": uptime.last_day.isoformat(),
        "components": {
            str(pk): {
                "percent": line.percent,
                "days": [
                    [day.status, [[i.id, i.name] for i in day.incidents]] for day in line.days
                ],
            }
            for pk, line in uptime.components.items()
        },
    }


def from_json(kept: dict[str, Any]) -> PageUptime:
    """The `PageUptime` that `to_json` made `kept` of."""
    first_day = date.fromisoformat(kept["first_day"])
    components = {}
    for pk, line in kept["components"].items():
        days = [
            Day(
                date=first_day + timedelta(days=index),
                status=status,
                incidents=[DayIncident(int(i), str(name)) for i, name in incidents],
            )
            for index, (status, incidents) in enumerate(line["days"])
        ]
        components[int(pk)] = ComponentUptime(days=days, percent=line["percent"])
    return PageUptime(
        first_day=first_day,
        last_day=date.fromisoformat(kept["last_day"]),
        components=components,
    )
