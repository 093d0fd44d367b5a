"""Read-side queries: the public page and its feeds (only published data: components and
revisions, never drafts, incident titles or timeline notes), and the desk's history."""

from __future__ import annotations

import difflib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Min, Prefetch, QuerySet
from django.utils import timezone

from incidents.models import Incident, Service
from statuspage import conf, maintenance_json, maintenance_selectors, texts
from statuspage.instants import iso as _iso
from statuspage.models import (
    FINISHED_PUBLIC_STATUSES,
    Component,
    ComponentStatus,
    ComponentStatusChange,
    Delivery,
    Maintenance,
    Notice,
    PublicIncident,
    Revision,
)
from statuspage.public_cache import PUBLIC_CACHE_KEY

logger = logging.getLogger(__name__)

HISTORY_DAYS = 30
FEED_ENTRIES = 50
RECENT_INCIDENTS = 50  # incidents.json, as Statuspage's
PUBLIC_CACHE_SECONDS = 5

_LEVELS = ["none", "minor", "major", "critical"]
INDICATOR_DESCRIPTIONS = {
    "none": "All systems operational",
    "minor": "Some services are degraded",
    "major": "Partial system outage",
    "critical": "Major system outage",
    "maintenance": "Planned maintenance in progress",
}
# From best to worst, for a group's state: planned work ranks below any degradation.
_WORST: list[str] = [
    ComponentStatus.OPERATIONAL,
    ComponentStatus.UNDER_MAINTENANCE,
    ComponentStatus.DEGRADED_PERFORMANCE,
    ComponentStatus.PARTIAL_OUTAGE,
    ComponentStatus.MAJOR_OUTAGE,
]
_COMPONENT_LEVEL = {
    ComponentStatus.OPERATIONAL: "none",
    ComponentStatus.DEGRADED_PERFORMANCE: "minor",
    ComponentStatus.UNDER_MAINTENANCE: "minor",
    ComponentStatus.PARTIAL_OUTAGE: "major",
    ComponentStatus.MAJOR_OUTAGE: "critical",
}


def page_id() -> str:
    return conf.page_id()


def published_incidents() -> QuerySet[PublicIncident]:
    """Published incidents, each with its revisions (newest first) and components."""
    return PublicIncident.objects.select_related("incident").prefetch_related(
        Prefetch("revisions", queryset=Revision.objects.order_by("-number")),
        Prefetch("components", queryset=Component.objects.order_by("position", "name")),
    )


def overall_indicator(
    components: list[Component], incidents: list[PublicIncident], *, maintenance: bool = False
) -> str:
    """The worst of the active incidents' impacts and the components' states (a group's
    state is its components', so groups are not counted twice). While a maintenance is in
    progress (`maintenance`), components under maintenance are planned work and the
    indicator is "maintenance" unless something else is worse (as Statuspage's is)."""
    planned = ComponentStatus.UNDER_MAINTENANCE if maintenance else None
    levels = [
        _COMPONENT_LEVEL[ComponentStatus(c.status)]
        for c in components
        if not c.is_group and c.status != planned
    ]
    levels += [incident.impact for incident in incidents if incident.is_active]
    worst = max(levels, key=_LEVELS.index, default="none")
    return "maintenance" if maintenance and worst == "none" else worst


def worst_status(statuses: list[str]) -> str:
    """The worst of component states (operational when there are none)."""
    return max(statuses, key=_WORST.index, default=ComponentStatus.OPERATIONAL)


@dataclass
class ComponentLine:
    """One line of the page's component list: a component, or a group with its members
    (in order). A group's state and time are its members' worst and latest."""

    component: Component
    members: list[Component] = field(default_factory=list)

    @property
    def status(self) -> str:
        if not self.component.is_group:
            return self.component.status
        return worst_status([member.status for member in self.members])

    @property
    def status_label(self) -> str:
        return ComponentStatus(self.status).label

    @property
    def updated_at(self) -> datetime:
        return max([self.component.updated_at, *(m.updated_at for m in self.members)])

    @property
    def shown_members(self) -> list[Component]:
        return [member for member in self.members if shown(member)]

    @property
    def is_shown(self) -> bool:
        """Whether the public page lists it: a group while one of its members is shown."""
        if self.component.is_group:
            return bool(self.shown_members)
        return shown(self.component)


def shown(component: Component) -> bool:
    """Whether the public page lists a component (`only_show_if_degraded` ones only while
    they are not operational)."""
    return not component.only_show_if_degraded or component.status != ComponentStatus.OPERATIONAL


def component_lines(components: list[Component]) -> list[ComponentLine]:
    """`components` (all of them, in position order) as the page lists them: top-level
    components and groups in order, each group's members under it."""
    lines = {c.pk: ComponentLine(c) for c in components if c.group_id is None}
    for component in components:
        if component.group_id is not None and component.group_id in lines:
            lines[component.group_id].members.append(component)
    return list(lines.values())


@dataclass
class PublicState:
    components: list[Component]
    active: list[PublicIncident]
    history: list[PublicIncident]
    updated_at: datetime
    indicator: str
    lines: list[ComponentLine] = field(default_factory=list)
    # Active, then upcoming (statuspage.maintenance_selectors.shown).
    maintenances: list[Maintenance] = field(default_factory=list)

    @property
    def description(self) -> str:
        return INDICATOR_DESCRIPTIONS[self.indicator]

    @property
    def shown_lines(self) -> list[ComponentLine]:
        return [line for line in self.lines if line.is_shown]


def public_state(*, now: datetime | None = None) -> PublicState:
    """What the public page shows: four queries whatever the number of incidents."""
    moment = now or timezone.now()
    components = list(Component.objects.order_by("position", "name", "pk"))
    incidents = list(
        published_incidents()
        .exclude(
            status__in=FINISHED_PUBLIC_STATUSES,
            resolved_at__lt=moment - timedelta(days=HISTORY_DAYS),
        )
        .order_by("-updated_at", "-id")
    )
    active = [incident for incident in incidents if incident.is_active]
    history = [incident for incident in incidents if not incident.is_active]
    maintenances = maintenance_selectors.shown(now=moment)
    stamps = [c.updated_at for c in components] + [i.updated_at for i in incidents]
    stamps += [m.updated_at for m in maintenances]
    return PublicState(
        components=components,
        active=active,
        history=history,
        updated_at=max(stamps, default=moment),
        indicator=overall_indicator(
            components, active, maintenance=any(m.is_active for m in maintenances)
        ),
        lines=component_lines(components),
        maintenances=maintenances,
    )


# -- the Atlassian Statuspage v2 shape -------------------------------------------------------


def page_json(state: PublicState, url: str) -> dict[str, Any]:
    return {
        "id": page_id(),
        "name": conf.page_name(),
        "url": url,
        "time_zone": settings.TIME_ZONE,
        "updated_at": _iso(state.updated_at),
    }


def status_json(state: PublicState) -> dict[str, str]:
    return {"indicator": state.indicator, "description": state.description}


def component_json(component: Component, line: ComponentLine | None = None) -> dict[str, Any]:
    """A component in Statuspage's shape. A group (given with its `line`) carries the ids
    of its components, its members' worst state and their latest change."""
    shape: dict[str, Any] = {
        "id": str(component.pk),
        "name": component.name,
        "status": line.status if line else component.status,
        "created_at": _iso(component.created_at),
        "updated_at": _iso(line.updated_at if line else component.updated_at),
        "position": component.position,
        "description": component.description or None,
        "showcase": True,
        "start_date": None,
        "group_id": str(component.group_id) if component.group_id else None,
        "page_id": page_id(),
        "group": component.is_group,
        "only_show_if_degraded": component.only_show_if_degraded,
    }
    if component.is_group:
        shape["components"] = [str(m.pk) for m in (line.members if line else [])]
    return shape


def components_json(state: PublicState) -> list[dict[str, Any]]:
    """Every component, a group followed by its members, in page order."""
    listed = []
    for line in state.lines:
        listed.append(component_json(line.component, line))
        listed += [component_json(member) for member in line.members]
    return listed


def _component_names(components: list[Component]) -> dict[str, str]:
    """The public names of the components an update may set (groups never are), by id."""
    return {str(c.pk): c.name for c in components if not c.is_group}


# An incident's component changes: (component id, changed at) -> (old state, new state).
_Changes = dict[tuple[str, datetime], tuple[str, str]]


def _incident_changes(incidents: list[PublicIncident]) -> dict[int, _Changes]:
    """By incident, the component states that its publishes changed, each with the state
    before (the previous recorded change of that component, whatever made it): one query
    for the history of every component the incidents' updates set."""
    keys = {
        int(key)
        for incident in incidents
        for revision in incident.revisions.all()  # prefetched
        for key in revision.component_statuses
    }
    changes: dict[int, _Changes] = {incident.pk: {} for incident in incidents}
    if not keys:
        return changes
    rows = (
        ComponentStatusChange.objects.filter(component_id__in=keys)
        .order_by("component_id", "changed_at", "id")
        .values_list("component_id", "changed_at", "status", "public_incident_id")
    )
    before: dict[int, str] = {}
    for component_id, changed_at, status, public_incident_id in rows:
        old = before.get(component_id, ComponentStatus.OPERATIONAL)
        if public_incident_id in changes and old != status:
            changes[public_incident_id][(str(component_id), changed_at)] = (old, status)
        before[component_id] = status
    return changes


def _affected(
    revision: Revision, changes: _Changes, names: dict[str, str]
) -> list[dict[str, str]] | None:
    """What this update really changed (Statuspage's `affected_components`), or None."""
    affected = []
    for key in revision.component_statuses:
        change = changes.get((key, revision.published_at))
        if key in names and change is not None:
            old, new = change
            affected.append({"code": key, "name": names[key], "old_status": old, "new_status": new})
    return affected or None


def incident_json(
    incident: PublicIncident, shortlink: str, names: dict[str, str], changes: _Changes
) -> dict[str, Any]:
    """An incident in Statuspage's shape; `changes` are its own (`_incident_changes`)."""
    revisions = list(incident.revisions.all())  # newest first (prefetched)
    updates = [
        {
            "id": str(revision.pk),
            "status": revision.status,
            "body": revision.body,
            "incident_id": str(incident.pk),
            "created_at": _iso(revision.published_at),
            "updated_at": _iso(revision.published_at),
            "display_at": _iso(revision.published_at),
            "affected_components": _affected(revision, changes, names),
            "deliver_notifications": revision.notify_subscribers,
            "custom_tweet": None,
            "tweet_id": None,
        }
        for revision in revisions
    ]
    return {
        "id": str(incident.pk),
        "name": incident.name,
        "status": incident.status,
        "created_at": _iso(incident.created_at),
        "updated_at": _iso(incident.updated_at),
        "monitoring_at": _iso(incident.monitoring_at),
        "resolved_at": _iso(incident.resolved_at),
        "impact": incident.impact,
        "shortlink": shortlink,
        # When the impact began (the incident's own record), not when it was first published.
        "started_at": _iso(incident.incident.started_at or incident.created_at),
        "page_id": page_id(),
        "incident_updates": updates,
        "components": [component_json(c) for c in incident.components.all()],
    }


def summary_json(state: PublicState, base_url: str) -> dict[str, Any]:
    """summary.json: page, components, unresolved incidents, maintenances, status."""
    names = _component_names(state.components)
    changes = _incident_changes(state.active)
    return {
        "page": page_json(state, base_url),
        "components": components_json(state),
        "incidents": [
            incident_json(i, incident_shortlink(base_url, i), names, changes[i.pk])
            for i in state.active
        ],
        "scheduled_maintenances": maintenance_json.maintenances_json(
            state.maintenances, base_url=base_url, component_shape=component_json
        ),
        "status": status_json(state),
    }


def incident_shortlink(base_url: str, incident: PublicIncident) -> str:
    """The incident's own public page (/status/incidents/<id>), absolute, under the page's
    address (the status host's root there)."""
    return f"{base_url.rstrip('/')}/incidents/{incident.pk}"


def published_incident(incident_id: int) -> PublicIncident | None:
    """One published incident with its revisions (newest first) and components."""
    return published_incidents().filter(pk=incident_id).first()


def incidents_in_month(start: datetime, end: datetime) -> list[PublicIncident]:
    """The incidents first published in [start, end), newest first, each with its
    components (the history lists no update text): two queries."""
    return list(
        PublicIncident.objects.filter(created_at__gte=start, created_at__lt=end)
        .prefetch_related(
            Prefetch("components", queryset=Component.objects.order_by("position", "name"))
        )
        .order_by("-created_at", "-id")
    )


def first_incident_at() -> datetime | None:
    """When the first incident was published (None before any was)."""
    return PublicIncident.objects.aggregate(at=Min("created_at"))["at"]


def recent_incidents(limit: int = RECENT_INCIDENTS) -> list[PublicIncident]:
    """The most recently opened published incidents, whatever their status: three queries."""
    return list(published_incidents().order_by("-created_at", "-id")[:limit])


def incidents_json(
    state: PublicState, base_url: str, incidents: list[PublicIncident]
) -> dict[str, Any]:
    """incidents.json and incidents/unresolved.json: the page and the given incidents."""
    names = _component_names(state.components)
    changes = _incident_changes(incidents)
    return {
        "page": page_json(state, base_url),
        "incidents": [
            incident_json(i, incident_shortlink(base_url, i), names, changes[i.pk])
            for i in incidents
        ],
    }


def cached_public(name: str, build: Callable[[], Any]) -> Any:
    """What `build()` makes of the public state (a rendered page, a JSON document: data the
    cache stores as JSON, never model instances), kept a few seconds under `name` so that a
    burst of readers during an outage costs the database one set of queries. Publishing
    moves the cache's generation on, so every copy is dropped at once. A cache that is down
    is skipped, never fatal."""
    try:
        generation = cache.get_or_set(PUBLIC_CACHE_KEY, uuid.uuid4().hex, None)
        key = f"{PUBLIC_CACHE_KEY}:{generation}:{hashlib.sha256(name.encode()).hexdigest()}"
        cached = cache.get(key)
    except Exception:
        logger.warning("status page cache unreadable", exc_info=True)
        return build()
    if cached is not None:
        return cached
    made = build()
    try:
        cache.set(key, made, PUBLIC_CACHE_SECONDS)
    except Exception:
        logger.warning("status page cache unwritable", exc_info=True)
    return made


def feed_revisions() -> list[Revision]:
    return list(
        Revision.objects.select_related("public_incident").order_by("-published_at", "-id")[
            :FEED_ENTRIES
        ]
    )


# -- the desk --------------------------------------------------------------------------------


@dataclass
class RevisionView:
    revision: Revision
    diff: list[str]
    changes: list[str]


def revision_history(incident: Incident) -> list[RevisionView]:
    """Published revisions, newest first, each with its diff to the one before."""
    revisions = list(
        Revision.objects.filter(public_incident__incident=incident)
        .select_related("published_by")
        .order_by("number")
    )
    views = []
    previous: Revision | None = None
    for revision in revisions:
        changes = []
        if previous is not None:
            for field in ("name", "status", "impact"):
                old, new = getattr(previous, field), getattr(revision, field)
                if old != new:
                    changes.append(f"{field}: {old} → {new}")
            if previous.component_statuses != revision.component_statuses:
                changes.append("component states changed")
        diff = list(
            difflib.unified_diff(
                previous.body.splitlines() if previous else [],
                revision.body.splitlines(),
                fromfile=f"revision {previous.number}" if previous else "nothing",
                tofile=f"revision {revision.number}",
                lineterm="",
            )
        )
        views.append(RevisionView(revision=revision, diff=diff, changes=changes))
        previous = revision
    return list(reversed(views))


@dataclass
class DeskComponent:
    """A component the draft may set, with the incident's services that feed it: a
    suggestion that it is affected (the support lead decides)."""

    component: Component
    fed_by: list[str]

    @property
    def group_name(self) -> str:
        return self.component.group.name if self.component.group else ""


def desk_components(incident: Incident) -> list[DeskComponent]:
    """Every component a draft may set (groups take their members' state), in page order,
    each with the names of the incident's services feeding it."""
    fed_by_incident = Prefetch(
        "services",
        queryset=Service.objects.filter(incidents=incident).order_by("name"),
        to_attr="incident_services",
    )
    listed = (
        Component.objects.filter(is_group=False)
        .select_related("group")
        .prefetch_related(fed_by_incident)
    )
    return [
        DeskComponent(component, [s.name for s in component.incident_services])  # type: ignore[attr-defined]
        for component in sorted(listed, key=texts.page_order)
    ]


def incident_notices(incident: Incident) -> list[Notice]:
    return list(
        Notice.objects.filter(incident=incident)
        .select_related("created_by", "run")
        .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("channel")))
        .order_by("-created_at", "-id")
    )
