"""Maintenances as the public reads them: the Statuspage v2 shape of a scheduled
maintenance (an incident's fields plus `scheduled_for` and `scheduled_until`, with its
`incident_updates` newest first and its `components`). Which ones each document lists:
statuspage.maintenance_selectors.

Components are shaped by the caller's `component_shape` (statuspage.selectors.component_json),
so a component reads the same in every document without this module importing the
selectors that import it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from statuspage import conf
from statuspage.instants import iso
from statuspage.maintenance_selectors import ACTIVE
from statuspage.models import (
    Component,
    ComponentStatus,
    Maintenance,
    MaintenanceStatus,
    MaintenanceUpdate,
)

ComponentShape = Callable[[Component], dict[str, Any]]


def shortlink(maintenance: Maintenance, base_url: str) -> str:
    """Its public page, under the status page's address `base_url`."""
    return f"{base_url.rstrip('/')}/maintenances/{maintenance.pk}"


def update_json(update: MaintenanceUpdate, affected: list[dict[str, str]] | None) -> dict[str, Any]:
    return {
        "id": str(update.pk),
        "status": update.status,
        "body": update.body,
        "incident_id": str(update.maintenance_id),
        "created_at": iso(update.published_at),
        "updated_at": iso(update.published_at),
        "display_at": iso(update.published_at),
        "affected_components": affected,
        "deliver_notifications": update.notify_subscribers,
        "custom_tweet": None,
        "tweet_id": None,
    }


def _affected(maintenance: Maintenance, update: MaintenanceUpdate) -> list[dict[str, str]] | None:
    """What starting it changed (as Statuspage lists an update's component changes): the
    components it put under maintenance (its own rows in the uptime history, prefetched by
    `with_updates`), each with the state it had; one already under maintenance is not a
    change and is not listed. None for an update that started nothing."""
    if update.status not in ACTIVE or maintenance.started_at is None:
        return None
    saved = maintenance.previous_statuses or {}
    started = {
        change.component_id
        for change in maintenance.status_changes.all()
        if change.changed_at == maintenance.started_at
        and change.status == ComponentStatus.UNDER_MAINTENANCE
    }
    return [
        {
            "code": str(component.pk),
            "name": component.name,
            "old_status": saved[str(component.pk)],
            "new_status": ComponentStatus.UNDER_MAINTENANCE,
        }
        for component in maintenance.components.all()
        if component.pk in started and str(component.pk) in saved
    ]


def maintenance_json(
    maintenance: Maintenance, *, base_url: str, component_shape: ComponentShape
) -> dict[str, Any]:
    """One scheduled maintenance in Statuspage v2's shape (its updates and components
    prefetched: `statuspage.maintenance_selectors.with_updates`)."""
    updates = list(maintenance.updates.all())  # newest first
    first_started = next(
        (u for u in reversed(updates) if u.status in ACTIVE), None
    )  # the oldest active update
    first_verifying = next(
        (u for u in reversed(updates) if u.status == MaintenanceStatus.VERIFYING), None
    )
    return {
        "id": str(maintenance.pk),
        "name": maintenance.name,
        "status": maintenance.status,
        "created_at": iso(maintenance.created_at),
        "updated_at": iso(maintenance.updated_at),
        "monitoring_at": iso(first_verifying.published_at if first_verifying else None),
        "resolved_at": iso(maintenance.resolved_at),
        "impact": maintenance.impact,
        "shortlink": shortlink(maintenance, base_url),
        "started_at": iso(maintenance.started_at or maintenance.scheduled_for),
        "page_id": conf.page_id(),
        "incident_updates": [
            update_json(u, _affected(maintenance, u) if u is first_started else None)
            for u in updates
        ],
        "components": [component_shape(c) for c in maintenance.components.all()],
        "scheduled_for": iso(maintenance.scheduled_for),
        "scheduled_until": iso(maintenance.scheduled_until),
    }


def maintenances_json(
    maintenances: list[Maintenance], *, base_url: str, component_shape: ComponentShape
) -> list[dict[str, Any]]:
    return [
        maintenance_json(m, base_url=base_url, component_shape=component_shape)
        for m in maintenances
    ]
