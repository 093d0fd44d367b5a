"""Read-side queries: the public page and its feeds (only published data: components and
revisions, never drafts, incident titles or timeline notes), and the desk's history."""

from __future__ import annotations

import difflib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from incidents.models import Incident
from statuspage import conf
from statuspage.models import (
    FINISHED_PUBLIC_STATUSES,
    Component,
    ComponentStatus,
    Delivery,
    Notice,
    PublicIncident,
    Revision,
)
from statuspage.services import PUBLIC_CACHE_KEY

logger = logging.getLogger(__name__)

HISTORY_DAYS = 30
FEED_ENTRIES = 50
PUBLIC_CACHE_SECONDS = 5

_LEVELS = ["none", "minor", "major", "critical"]
INDICATOR_DESCRIPTIONS = {
    "none": "All systems operational",
    "minor": "Some services are degraded",
    "major": "Partial system outage",
    "critical": "Major system outage",
}
_COMPONENT_LEVEL = {
    ComponentStatus.OPERATIONAL: "none",
    ComponentStatus.DEGRADED_PERFORMANCE: "minor",
    ComponentStatus.UNDER_MAINTENANCE: "minor",
    ComponentStatus.PARTIAL_OUTAGE: "major",
    ComponentStatus.MAJOR_OUTAGE: "critical",
}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return timezone.localtime(moment).isoformat(timespec="milliseconds")


def page_id() -> str:
    return conf.page_id()


def _public_incidents() -> QuerySet[PublicIncident]:
    return PublicIncident.objects.select_related("incident").prefetch_related(
        Prefetch("revisions", queryset=Revision.objects.order_by("-number")),
        Prefetch("components", queryset=Component.objects.order_by("position", "name")),
    )


def overall_indicator(components: list[Component], incidents: list[PublicIncident]) -> str:
    """The worst of the active incidents' impacts and the components' states."""
    levels = [_COMPONENT_LEVEL[ComponentStatus(c.status)] for c in components]
    levels += [incident.impact for incident in incidents if incident.is_active]
    return max(levels, key=_LEVELS.index, default="none")


@dataclass
class PublicState:
    components: list[Component]
    active: list[PublicIncident]
    history: list[PublicIncident]
    updated_at: datetime
    indicator: str

    @property
    def description(self) -> str:
        return INDICATOR_DESCRIPTIONS[self.indicator]


def public_state(*, now: datetime | None = None) -> PublicState:
    """What the public page shows: four queries whatever the number of incidents."""
    moment = now or timezone.now()
    components = list(Component.objects.order_by("position", "name"))
    incidents = list(
        _public_incidents()
        .exclude(
            status__in=FINISHED_PUBLIC_STATUSES,
            resolved_at__lt=moment - timedelta(days=HISTORY_DAYS),
        )
        .order_by("-updated_at", "-id")
    )
    active = [incident for incident in incidents if incident.is_active]
    history = [incident for incident in incidents if not incident.is_active]
    stamps = [c.updated_at for c in components] + [i.updated_at for i in incidents]
    return PublicState(
        components=components,
        active=active,
        history=history,
        updated_at=max(stamps, default=moment),
        indicator=overall_indicator(components, active),
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


def component_json(component: Component) -> dict[str, Any]:
    return {
        "id": str(component.pk),
        "name": component.name,
        "status": component.status,
        "created_at": _iso(component.created_at),
        "updated_at": _iso(component.updated_at),
        "position": component.position,
        "description": component.description or None,
        "showcase": True,
        "start_date": None,
        "group_id": None,
        "page_id": page_id(),
        "group": False,
        "only_show_if_degraded": False,
    }


def _affected(
    revision: Revision, previous: Revision | None, names: dict[str, str]
) -> list[dict[str, str]] | None:
    if not revision.component_statuses:
        return None
    before = previous.component_statuses if previous else {}
    return [
        {
            "code": key,
            "name": names.get(key, ""),
            "old_status": before.get(key, ComponentStatus.OPERATIONAL),
            "new_status": status,
        }
        for key, status in revision.component_statuses.items()
        if key in names
    ]


def incident_json(
    incident: PublicIncident, shortlink: str, names: dict[str, str]
) -> dict[str, Any]:
    revisions = list(incident.revisions.all())  # newest first (prefetched)
    updates = []
    for index, revision in enumerate(revisions):
        previous = revisions[index + 1] if index + 1 < len(revisions) else None
        updates.append(
            {
                "id": str(revision.pk),
                "status": revision.status,
                "body": revision.body,
                "incident_id": str(incident.pk),
                "created_at": _iso(revision.published_at),
                "updated_at": _iso(revision.published_at),
                "display_at": _iso(revision.published_at),
                "affected_components": _affected(revision, previous, names),
                "deliver_notifications": True,
                "custom_tweet": None,
                "tweet_id": None,
            }
        )
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
    names = {str(c.pk): c.name for c in state.components}
    return {
        "page": page_json(state, base_url),
        "components": [component_json(c) for c in state.components],
        "incidents": [incident_json(i, f"{base_url}#incident-{i.pk}", names) for i in state.active],
        "scheduled_maintenances": [],
        "status": status_json(state),
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


def incident_notices(incident: Incident) -> list[Notice]:
    return list(
        Notice.objects.filter(incident=incident)
        .select_related("created_by", "run")
        .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("channel")))
        .order_by("-created_at", "-id")
    )
