"""Incidents ready for a post-mortem, built through the domain services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from incidents import services
from incidents.models import Incident, TimelineEntry, TimelineKind
from incidents.timeline import timeline_append
from rollbacks.models import Run, RunState, StepState
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory, RunFactory, StepFactory


def commander(username: str = "ic") -> Any:
    return UserFactory(username=username, roles=["Incident Commander"])


def responder(username: str = "responder") -> Any:
    return UserFactory(username=username, roles=["Responder"])


def viewer(username: str = "viewer") -> Any:
    return UserFactory(username=username, roles=["Viewer"])


def resolved_incident(*, by: Any, notes: int = 3, **overrides: Any) -> Incident:
    """A P1 incident worked to resolution: instants 3, 1, 1, 6 and 3 minutes apart, a few
    notes, and status changes on its timeline."""
    now = timezone.now()
    start = now - timedelta(minutes=20)
    fields: dict[str, Any] = {
        "title": "Checkout errors after v1.5.0",
        "severity": "P1",
        "commander": by,
        "opened_by": by,
        "summary": "Payments failed for a third of checkouts.",
        "started_at": start,
        "detected_at": start + timedelta(minutes=3),
    }
    fields.update(overrides)
    incident = incident_open(**fields)
    for number in range(notes):
        services.note_add(incident=incident, author=by, body=f"note {number}: error rate 23%")
    services.incident_change_status(incident=incident, to_status="identified", actor=by)
    for instant, minutes in (
        ("decided_at", 4),
        ("rollback_started_at", 5),
        ("restored_at", 11),
        ("verified_at", 14),
    ):
        services.incident_record_instant(
            incident=incident, instant=instant, at=start + timedelta(minutes=minutes), actor=by
        )
    services.incident_change_status(incident=incident, to_status="resolved", actor=by)
    incident.refresh_from_db()
    return incident


def finished_run(incident: Incident, *, drill: bool = False, steps: int = 2) -> Run:
    """A run that succeeded, its steps timed: 2 s queued, 5 s applying, 30 s settling."""
    started = timezone.now() - timedelta(minutes=8)
    run = RunFactory(
        incident=incident,
        state=RunState.SUCCEEDED,
        drill=drill,
        started_at=started,
        finished_at=started + timedelta(seconds=40),
    )
    for position in range(1, steps + 1):
        StepFactory(
            run=run,
            position=position,
            service=KubeServiceFactory(),
            state=StepState.SUCCEEDED,
            attempts=1,
            enqueued_at=started,
            started_at=started + timedelta(seconds=2),
            apply_started_at=started + timedelta(seconds=2),
            applied_at=started + timedelta(seconds=7),
            finished_at=started + timedelta(seconds=37),
        )
    timeline_append(incident=incident, kind=TimelineKind.RUN, body=f"Rollback #{run.pk} succeeded")
    return run


def entries_of(incident: Incident) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident=incident).order_by("id"))
