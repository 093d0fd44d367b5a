"""Reminders to undo what a step set for a while: a flag turned off "for 30 minutes" is
called back to the incident's timeline once the 30 minutes are over.

`reminders_send` is what Celery beat runs every ROLLBACK_REMINDER_SWEEP_SECONDS. It finds
succeeded steps with a `for_minutes` option whose time is up, and writes one timeline entry
per step. Each step row is locked (skipping rows another sweep holds) and the entry is looked
for under that lock before it is written, so two beat processes by mistake, or a sweep run
again, remind once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import timeline_append
from rollbacks.models import Step, StepState

# Steps finished longer ago than this are not looked at any more.
LOOK_BACK = timedelta(days=8)
REMINDER_ACTOR = "rollback engine"


def reminders_due(now: datetime | None = None) -> list[int]:
    """Ids of succeeded steps with a `for_minutes` that has run out."""
    now = now or timezone.now()
    candidates = Step.objects.filter(
        state=StepState.SUCCEEDED,
        params__has_key="for_minutes",
        finished_at__gte=now - LOOK_BACK,
    ).values_list("pk", "finished_at", "params")
    due = []
    for pk, finished_at, params in candidates:
        minutes = params.get("for_minutes")
        if not isinstance(minutes, int) or finished_at is None:
            continue
        if finished_at + timedelta(minutes=minutes) <= now:
            due.append(pk)
    return due


def reminder_send(step_id: int) -> bool:
    """Write the step's reminder unless it was written; whether this call wrote it."""
    with transaction.atomic():
        step = (
            Step.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("run__incident", "service")
            .filter(pk=step_id)
            .first()
        )
        if step is None:  # another sweep holds it
            return False
        incident = step.run.incident
        if TimelineEntry.objects.filter(
            incident=incident, kind=TimelineKind.RUN, payload__reminder_for_step=step.pk
        ).exists():
            return False
        minutes = step.params["for_minutes"]
        set_to = step.params.get("state") or step.params.get("operation") or "changed"
        at = timezone.localtime(step.finished_at).strftime("%H:%M %Z")
        timeline_append(
            incident=incident,
            kind=TimelineKind.RUN,
            body=f"Reminder: {step.service.name} was set {set_to} at {at} for {minutes} min "
            f"(run #{step.run_id}, step {step.position}); that time is up: set it back, or "
            "decide to keep it and say so here",
            actor_label=REMINDER_ACTOR,
            payload={"run": step.run_id, "reminder_for_step": step.pk, "for_minutes": minutes},
        )
        return True


def reminders_send() -> int:
    """Send every reminder that is due; how many were written."""
    return sum(reminder_send(step_id) for step_id in reminders_due())
