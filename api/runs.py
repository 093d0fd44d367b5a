"""Rollbacks over the API: draft one for an incident's services, to each one's last
known-good release or its previous revision, and read a run's state and steps. Approving
and starting stay in the console, where the policy's approvers and the typed confirmation
are."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Router, Status

from api.auth import scope
from api.models import READ, RUNS_WRITE
from api.schemas import ERRORS, RollbackIn, RunOut
from api.validation import InputError
from incidents.models import Incident
from incidents.roles import require_role
from rollbacks.models import Run, RunWatch, WatchState
from rollbacks.services import StepSpec, run_create
from rollbacks.services.releases import release_latest_known_good

router = Router(tags=["rollbacks"])
REASON_MAX = 2000


def watch_out(run: Run) -> dict[str, Any] | None:
    """The watch after the run (rollbacks.watch), as the room's rollback panel shows it."""
    watch = RunWatch.objects.filter(run=run).first()
    if watch is None:
        return None
    watching = watch.state == WatchState.WATCHING
    return {
        "state": watch.state,
        "rounds": watch.rounds,
        "started_at": watch.started_at,
        "ends_at": watch.ends_at,
        "next_check_at": watch.next_check_at if watching else None,
        "last_checked_at": watch.last_checked_at,
        "last_summary": watch.last_summary,
    }


def run_out(request: HttpRequest, run: Run) -> dict[str, Any]:
    steps = run.steps.select_related("service").order_by("position")
    return {
        "id": run.pk,
        "url": request.build_absolute_uri(reverse("incident_room", args=[run.incident_id])),
        "incident": run.incident_id,
        "state": run.state,
        "reason": run.reason,
        "dry_run": run.dry_run,
        "drill": run.drill,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "failure_reason": run.failure_reason,
        "steps": [
            {
                "position": step.position,
                "group": step.group,
                "service": step.service.name,
                "backend": step.backend,
                "state": step.state,
                "from_version": step.from_version,
                "to_version": step.to_version,
                "to_previous": step.to_previous,
                "attempts": step.attempts,
                "started_at": step.started_at,
                "finished_at": step.finished_at,
            }
            for step in steps
        ],
        "watch": watch_out(run),
    }


@router.post(
    "/incidents/{incident_id}/rollbacks",
    response={201: RunOut, **ERRORS},
    auth=scope(RUNS_WRITE),
)
def rollback_draft(request: HttpRequest, incident_id: int, payload: RollbackIn) -> Status:
    """Draft a rollback of the named services (each in a group of its own, in the order
    given), to be previewed, approved and started in the console."""
    incident = get_object_or_404(Incident, pk=incident_id)
    if len(payload.reason) > REASON_MAX:
        raise InputError({"reason": [f"At most {REASON_MAX} characters."]})
    if not payload.services:
        raise InputError({"services": ["Name at least one of the incident's services."]})
    named = {service.name: service for service in incident.services.all()}
    unknown = [name for name in payload.services if name not in named]
    if unknown:
        shown = ", ".join(name[:60] for name in unknown[:5])
        raise InputError({"services": [f"Not a service of incident #{incident.pk}: {shown}."]})
    steps = []
    for name in dict.fromkeys(payload.services):
        service = named[name]
        if payload.to == "previous":
            steps.append(StepSpec(service=service, previous=True))
            continue
        release = release_latest_known_good(service)
        if release is None:
            raise InputError({"services": [f"{name} has no known-good release."]})
        steps.append(StepSpec(service=service, release=release))
    run = run_create(incident=incident, steps=steps, actor=request.user, reason=payload.reason)
    return Status(201, run_out(request, run))


@router.get("/runs/{run_id}", response={200: RunOut, **ERRORS}, auth=scope(READ))
def run_read(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """A run's state and its steps', and the watch after it succeeded (if any)."""
    require_role(request.user, "incidents.view_incident", "read rollbacks")
    return run_out(request, get_object_or_404(Run, pk=run_id))
