"""Scheduled maintenances over the API: list and read them (read scope); schedule, edit,
post updates and cancel (statuspage:write), through statuspage.maintenances and the forms of
the console's maintenance pages. Times without an offset are read in the console's time
zone. A refusal answers 400 naming the field, and nothing is saved."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Field, Router, Schema, Status

from api.auth import scope
from api.models import READ, STATUS_PAGE_WRITE
from api.schemas import ERRORS
from api.validation import InputError, validated
from incidents.roles import require_role
from statuspage import maintenance_selectors, maintenances
from statuspage.maintenance_forms import (
    MaintenanceCancelForm,
    MaintenanceForm,
    MaintenanceUpdateForm,
)
from statuspage.maintenances import MaintenanceRefused
from statuspage.models import Maintenance

router = Router(tags=["status page"])


class MaintenanceIn(Schema):
    name: str = Field(description="Public, at most 200 characters")
    scheduled_for: datetime = Field(description="Start; without an offset: console time")
    scheduled_until: datetime = Field(description="End, after the start")
    body: str = Field(description="The first (scheduled) update, Markdown, at most 10,000")
    components: list[int] = Field(default_factory=list, description="Component ids, no groups")
    impact: str = Field("maintenance", description="maintenance, none, minor, major, critical")
    auto_start: bool = True
    auto_complete: bool = True
    notify_subscribers: bool = False


class MaintenanceChange(Schema):
    name: str | None = None
    scheduled_for: datetime | None = None
    scheduled_until: datetime | None = None
    components: list[int] | None = None
    impact: str | None = None
    auto_start: bool | None = None
    auto_complete: bool | None = None


class MaintenanceUpdateIn(Schema):
    status: str = Field(description="scheduled, in_progress, verifying or completed; forward")
    body: str = Field(description="Markdown, at most 10,000 characters")
    notify_subscribers: bool = False


class MaintenanceCancelIn(Schema):
    reason: str = Field("", description="Published with the cancellation")
    notify_subscribers: bool = False


class MaintenanceComponentOut(Schema):
    id: int
    name: str
    status: str


class MaintenanceUpdateOut(Schema):
    id: int
    status: str
    body: str
    published_at: datetime
    published_by: str | None = Field(description="None when the beat published it")
    notify_subscribers: bool


class MaintenanceOut(Schema):
    id: int
    url: str = Field(description="Its public page")
    console_url: str
    name: str
    status: str
    impact: str
    scheduled_for: datetime
    scheduled_until: datetime
    auto_start: bool
    auto_complete: bool
    started_at: datetime | None
    resolved_at: datetime | None
    components: list[MaintenanceComponentOut]
    updates: list[MaintenanceUpdateOut] = Field(description="Oldest first")


def maintenance_out(request: HttpRequest, maintenance: Maintenance) -> dict[str, Any]:
    updates = sorted(maintenance.updates.all(), key=lambda u: (u.published_at, u.pk))
    return {
        "id": maintenance.pk,
        "url": request.build_absolute_uri(
            reverse("status_maintenance_public", args=[maintenance.pk])
        ),
        "console_url": request.build_absolute_uri(
            reverse("status_maintenance", args=[maintenance.pk])
        ),
        "name": maintenance.name,
        "status": maintenance.status,
        "impact": maintenance.impact,
        "scheduled_for": maintenance.scheduled_for,
        "scheduled_until": maintenance.scheduled_until,
        "auto_start": maintenance.auto_start,
        "auto_complete": maintenance.auto_complete,
        "started_at": maintenance.started_at,
        "resolved_at": maintenance.resolved_at,
        "components": [
            {"id": c.pk, "name": c.name, "status": c.status} for c in maintenance.components.all()
        ],
        "updates": [
            {
                "id": u.pk,
                "status": u.status,
                "body": u.body,
                "published_at": u.published_at,
                "published_by": u.published_by.get_username() if u.published_by else None,
                "notify_subscribers": u.notify_subscribers,
            }
            for u in updates
        ],
    }


def loaded(pk: int) -> Maintenance:
    queryset = maintenance_selectors.with_updates(Maintenance.objects.all()).prefetch_related(
        "updates__published_by"
    )
    return get_object_or_404(queryset, pk=pk)


def refused_by_field[Result](call: Callable[[], Result]) -> Result:
    """`call()`, a service's refusal answered as a 400 naming its field."""
    try:
        return call()
    except MaintenanceRefused as error:
        raise InputError({error.field: [str(error)]}) from None


@router.get(
    "/status-page/maintenances",
    response={200: list[MaintenanceOut], **ERRORS},
    auth=scope(READ),
)
def maintenance_list(
    request: HttpRequest, state: Literal["all", "upcoming", "active", "past"] = "all"
) -> list[dict[str, Any]]:
    """Maintenances by `state`: `upcoming` (scheduled, window not ended; the soonest
    first), `active` (in progress or verifying; the earliest first), `past` (completed; the
    latest ended first, 50 at most) or `all` (every state; the 50 latest to start, latest
    first)."""
    require_role(request.user, "incidents.view_incident", "read maintenances")
    chosen: list[Maintenance]
    if state == "upcoming":
        chosen = maintenance_selectors.upcoming()
    elif state == "active":
        chosen = maintenance_selectors.active()
    elif state == "past":
        chosen = maintenance_selectors.past()
    else:
        chosen = maintenance_selectors.recent()
    return [maintenance_out(request, m) for m in chosen]


@router.get(
    "/status-page/maintenances/{maintenance_id}",
    response={200: MaintenanceOut, **ERRORS},
    auth=scope(READ),
)
def maintenance_read(request: HttpRequest, maintenance_id: int) -> dict[str, Any]:
    require_role(request.user, "incidents.view_incident", "read maintenances")
    return maintenance_out(request, loaded(maintenance_id))


@router.post(
    "/status-page/maintenances",
    response={201: MaintenanceOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def maintenance_schedule(request: HttpRequest, payload: MaintenanceIn) -> Status:
    """Schedule a maintenance with its first update (as the console's form does)."""
    data = validated(MaintenanceForm, payload.dict())
    created = refused_by_field(
        lambda: maintenances.maintenance_schedule(
            actor=request.user,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            body=data["body"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
            notify_subscribers=data["notify_subscribers"],
        )
    )
    return Status(201, maintenance_out(request, loaded(created.pk)))


@router.patch(
    "/status-page/maintenances/{maintenance_id}",
    response={200: MaintenanceOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def maintenance_edit(
    request: HttpRequest, maintenance_id: int, payload: MaintenanceChange
) -> dict[str, Any]:
    """Change a scheduled maintenance: the fields given, the others kept."""
    maintenance = loaded(maintenance_id)
    given = {key: value for key, value in payload.dict().items() if value is not None}
    current = MaintenanceForm.initial_for(maintenance)
    data = validated(MaintenanceForm, {**current, **given}, with_body=False)
    saved = refused_by_field(
        lambda: maintenances.maintenance_edit(
            actor=request.user,
            maintenance=maintenance,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
        )
    )
    return maintenance_out(request, loaded(saved.pk))


@router.post(
    "/status-page/maintenances/{maintenance_id}/updates",
    response={201: MaintenanceOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def maintenance_update(
    request: HttpRequest, maintenance_id: int, payload: MaintenanceUpdateIn
) -> Status:
    """Post an update, moving the maintenance forward (or keeping its status)."""
    maintenance = get_object_or_404(Maintenance, pk=maintenance_id)
    data = validated(MaintenanceUpdateForm, payload.dict())
    refused_by_field(
        lambda: maintenances.maintenance_update_post(
            actor=request.user,
            maintenance=maintenance,
            status=data["status"],
            body=data["body"],
            notify_subscribers=data["notify_subscribers"],
        )
    )
    return Status(201, maintenance_out(request, loaded(maintenance.pk)))


@router.post(
    "/status-page/maintenances/{maintenance_id}/cancel",
    response={200: MaintenanceOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def maintenance_cancel(
    request: HttpRequest, maintenance_id: int, payload: MaintenanceCancelIn
) -> dict[str, Any]:
    """Call off a scheduled maintenance (completed with an update saying so)."""
    maintenance = get_object_or_404(Maintenance, pk=maintenance_id)
    data = validated(MaintenanceCancelForm, payload.dict())
    refused_by_field(
        lambda: maintenances.maintenance_cancel(
            actor=request.user,
            maintenance=maintenance,
            reason=data["reason"],
            notify_subscribers=data["notify_subscribers"],
        )
    )
    return maintenance_out(request, loaded(maintenance.pk))
