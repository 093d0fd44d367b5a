"""Incidents over the API: open, read, change status or severity, add a note. Each write
goes through incidents.services and the browser's forms, as the console's pages do."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Router, Status

from api.auth import person_of, scope
from api.models import INCIDENTS_WRITE, READ
from api.schemas import ERRORS, IncidentChange, IncidentIn, IncidentOut, NoteIn, NoteOut
from api.validation import InputError, validated
from incidents import services
from incidents.forms import IncidentCreateForm, NoteForm, SeverityChangeForm, StatusChangeForm
from incidents.models import Incident, Service
from incidents.roles import COMMAND_PERMISSION, require_role

router = Router(tags=["incidents"])


def incident_out(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.pk,
        "url": request.build_absolute_uri(reverse("incident_room", args=[incident.pk])),
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "environment": incident.environment,
        "commander": incident.commander.get_username() if incident.commander else None,
        "services": sorted(service.name for service in incident.services.all()),
        "summary": incident.summary,
        "started_at": incident.started_at,
        "detected_at": incident.detected_at,
        "resolved_at": incident.resolved_at,
    }


def service_ids(names: list[str], environment: str) -> list[int]:
    """The services named, in the environment; an unknown name is refused by name."""
    if len(names) > 100:
        raise InputError({"services": ["At most 100 services."]})
    found = dict(
        Service.objects.filter(name__in=names, environment=environment).values_list("name", "pk")
    )
    unknown = [name for name in names if name not in found]
    if unknown:
        shown = ", ".join(name[:60] for name in unknown[:5])
        raise InputError({"services": [f"No {environment} service named {shown}."]})
    return [found[name] for name in names]


@router.post("/incidents", response={201: IncidentOut, **ERRORS}, auth=scope(INCIDENTS_WRITE))
def incident_open(request: HttpRequest, payload: IncidentIn) -> Status:
    """Open an incident (as the browser's New incident form does)."""
    require_role(request.user, "incidents.add_incident", "open incidents")
    data = payload.dict()
    data["services"] = service_ids(data["services"], data["environment"])
    if data["commander"]:
        commander = User.objects.filter(username=data["commander"]).first()
        if commander is None:
            raise InputError({"commander": ["No such user."]})
        data["commander"] = commander.pk
    cleaned = validated(IncidentCreateForm, data)
    incident = services.incident_open(
        title=cleaned["title"],
        severity=cleaned["severity"],
        environment=cleaned["environment"],
        opened_by=request.user,
        commander=cleaned["commander"] or person_of(request),
        services=cleaned["services"],
        summary=cleaned["summary"],
        started_at=cleaned["started_at"],
        detected_at=cleaned["detected_at"],
        rto=timedelta(minutes=cleaned["rto_minutes"]),
        rpo=timedelta(minutes=cleaned["rpo_minutes"]),
    )
    return Status(201, incident_out(request, incident))


@router.get("/incidents/{incident_id}", response={200: IncidentOut, **ERRORS}, auth=scope(READ))
def incident_read(request: HttpRequest, incident_id: int) -> dict[str, Any]:
    require_role(request.user, "incidents.view_incident", "read incidents")
    return incident_out(request, get_object_or_404(Incident, pk=incident_id))


@router.patch(
    "/incidents/{incident_id}", response={200: IncidentOut, **ERRORS}, auth=scope(INCIDENTS_WRITE)
)
def incident_change(
    request: HttpRequest, incident_id: int, payload: IncidentChange
) -> dict[str, Any]:
    """Change the severity, then the status; each lands on the timeline."""
    require_role(request.user, COMMAND_PERMISSION, "change an incident's status or severity")
    incident = get_object_or_404(Incident, pk=incident_id)
    if payload.severity is None and payload.status is None:
        raise InputError({"input": ["Give a new status or severity."]})
    with transaction.atomic():  # both changes, or neither
        return incident_apply(request, incident, payload)


def incident_apply(
    request: HttpRequest, incident: Incident, payload: IncidentChange
) -> dict[str, Any]:
    if payload.severity is not None:
        cleaned = validated(
            SeverityChangeForm, {"severity": payload.severity, "reason": payload.reason}
        )
        incident = services.incident_change_severity(
            incident=incident,
            severity=cleaned["severity"],
            actor=request.user,
            reason=cleaned.get("reason", ""),
        )
    if payload.status is not None:
        cleaned = validated(
            StatusChangeForm,
            {"to_status": payload.status, "reason": payload.reason},
            incident=incident,
        )
        incident = services.incident_change_status(
            incident=incident,
            to_status=cleaned["to_status"],
            actor=request.user,
            reason=cleaned.get("reason", ""),
        )
    incident.refresh_from_db()
    return incident_out(request, incident)


@router.post(
    "/incidents/{incident_id}/notes",
    response={201: NoteOut, **ERRORS},
    auth=scope(INCIDENTS_WRITE),
)
def note_add(request: HttpRequest, incident_id: int, payload: NoteIn) -> Status:
    """Add a note to the incident's timeline, as its author."""
    incident = get_object_or_404(Incident, pk=incident_id)
    cleaned = validated(NoteForm, {"body": payload.body})
    entry = services.note_add(incident=incident, author=request.user, body=cleaned["body"])
    return Status(
        201,
        {
            "id": entry.pk,
            "incident": incident.pk,
            "created_at": entry.created_at,
            "author": request.user.get_username(),
        },
    )
