"""Which maintenances the public page, its JSON, the console's list, the command and the API
read, each with its updates (newest first) and components (page order) prefetched.

A scheduled maintenance whose window has ended without it starting is no longer upcoming:
the beat completes it ("did not take place", statuspage.maintenances), and until it runs
the lists here leave it out already."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from statuspage.models import (
    Component,
    ComponentStatusChange,
    Maintenance,
    MaintenanceStatus,
    MaintenanceUpdate,
)

ACTIVE = (MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING)
# scheduled-maintenances.json lists this many, newest first (as Statuspage's does).
RECENT = 50


def with_updates(maintenances: QuerySet[Maintenance]) -> QuerySet[Maintenance]:
    """`maintenances` with their updates (newest first) and components (page order)."""
    return maintenances.prefetch_related(
        Prefetch("updates", queryset=MaintenanceUpdate.objects.order_by("-published_at", "-id")),
        Prefetch("components", queryset=Component.objects.order_by("position", "name", "pk")),
        # The uptime rows it wrote: what starting it changed (the JSON's affected_components).
        Prefetch("status_changes", queryset=ComponentStatusChange.objects.order_by("id")),
    )


def _still_to_come(now: datetime | None) -> Q:
    return Q(status=MaintenanceStatus.SCHEDULED, scheduled_until__gt=now or timezone.now())


def upcoming(*, now: datetime | None = None) -> list[Maintenance]:
    """Scheduled ones whose window has not ended, soonest first."""
    queryset = Maintenance.objects.filter(_still_to_come(now))
    return list(with_updates(queryset).order_by("scheduled_for", "pk"))


def active() -> list[Maintenance]:
    """In progress or verifying, the earliest started first."""
    queryset = Maintenance.objects.filter(status__in=ACTIVE)
    return list(with_updates(queryset).order_by("scheduled_for", "pk"))


def shown(*, now: datetime | None = None) -> list[Maintenance]:
    """What the public page and summary.json show: active ones, then upcoming ones (one
    query, and one per prefetch when there are any)."""
    listed = with_updates(
        Maintenance.objects.filter(Q(status__in=ACTIVE) | _still_to_come(now)).order_by(
            "scheduled_for", "pk"
        )
    )
    return sorted(listed, key=lambda maintenance: not maintenance.is_active)


def recent() -> list[Maintenance]:
    """The RECENT latest of every state (scheduled-maintenances.json), newest first."""
    return list(with_updates(Maintenance.objects.order_by("-scheduled_for", "-pk"))[:RECENT])


def past(limit: int = RECENT) -> list[Maintenance]:
    """The `limit` latest completed ones (cancelled ones too), the latest ended first."""
    completed = Maintenance.objects.filter(status=MaintenanceStatus.COMPLETED)
    return list(with_updates(completed).order_by("-scheduled_until", "-pk")[:limit])
