"""The decision helper's read side: the latest recorded decision, and `room_context`, what
the incident room's two partials (`incidents/_recovery.html`, `incidents/_decision.html`)
render from."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from incidents.decisions.clock import recovery_clock, recovery_phases
from incidents.decisions.forms import SignalsForm
from incidents.decisions.rules import thresholds
from incidents.models import Incident, TimelineEntry, TimelineKind


def decision_latest(incident: Incident) -> TimelineEntry | None:
    """The incident's most recent recorded decision, if any."""
    return (
        TimelineEntry.objects.filter(incident=incident, kind=TimelineKind.DECISION)
        .select_related("actor")
        .order_by("-id")
        .first()
    )


def room_context(incident: Incident) -> dict[str, Any]:
    """What `_recovery.html` and `_decision.html` render from, besides `incident`,
    `can_command` and the request's CSRF token, which the room already provides."""
    now = timezone.now()
    latest = decision_latest(incident)
    initial = latest.payload.get("signals", {}) if latest is not None else {}
    return {
        "recovery_clock": recovery_clock(incident, now=now),
        "recovery_phases": recovery_phases(incident, now=now),
        "decision_latest": latest,
        "decision_form": SignalsForm(initial=initial),
        "decision_thresholds": thresholds(),
    }
