"""Read-side queries the pages share, each with a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import F, Prefetch, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from incidents.models import (
    ApprovalRequest,
    ApprovalRequestStatus,
    Checklist,
    ChecklistItem,
    Incident,
    IncidentStatus,
    Release,
    Run,
    Service,
    Step,
    StepLog,
    TimelineEntry,
)


def incidents_open() -> QuerySet[Incident]:
    """Open incidents, most severe first, then most recently detected."""
    return (
        Incident.objects.exclude(status=IncidentStatus.RESOLVED)
        .select_related("commander")
        .prefetch_related("services")
        .order_by("severity", "-detected_at")
    )


def incidents_filtered(
    *,
    state: str = "",
    severity: str = "",
    environment: str = "",
    service: Service | None = None,
    text: str = "",
) -> QuerySet[Incident]:
    """The incident list: `state` is a status value, "open", or empty for all."""
    incidents = Incident.objects.select_related("commander").prefetch_related("services")
    if state == "open":
        incidents = incidents.exclude(status=IncidentStatus.RESOLVED)
    elif state:
        incidents = incidents.filter(status=state)
    if severity:
        incidents = incidents.filter(severity=severity)
    if environment:
        incidents = incidents.filter(environment=environment)
    if service is not None:
        incidents = incidents.filter(services=service)
    if text:
        incidents = incidents.filter(Q(title__icontains=text) | Q(summary__icontains=text))
    return incidents.distinct()


@dataclass(frozen=True)
class ServiceReleases:
    """A service with its newest release and its newest known-good release."""

    service: Service
    latest: Release | None
    known_good: Release | None

    @property
    def latest_is_known_good(self) -> bool:
        return self.latest is not None and self.latest.known_good


def services_with_releases() -> list[ServiceReleases]:
    """Every service with its latest and last known-good release (two queries)."""
    services = list(Service.objects.order_by("environment", "name"))
    latest: dict[int, Release] = {}
    known_good: dict[int, Release] = {}
    releases = Release.objects.filter(service__in=services).select_related("known_good_by")
    for release in releases.order_by("service_id", "-shipped_at", "-id"):
        latest.setdefault(release.service_id, release)
        if release.known_good:
            known_good.setdefault(release.service_id, release)
    return [
        ServiceReleases(service=s, latest=latest.get(s.pk), known_good=known_good.get(s.pk))
        for s in services
    ]


def incident_timeline(incident: Incident, *, after: int = 0) -> QuerySet[TimelineEntry]:
    """Timeline entries in the order they were written, optionally only those after an id."""
    entries = incident.timeline.select_related("actor").order_by("id")
    if after:
        entries = entries.filter(id__gt=after)
    return entries


def incident_checklists(incident: Incident) -> list[Checklist]:
    """The incident's checklists with their items and who ticked them."""
    items = ChecklistItem.objects.select_related("done_by").order_by("position", "id")
    return list(
        incident.checklists.prefetch_related(Prefetch("items", queryset=items)).order_by(
            "position", "id"
        )
    )


def incident_approval_requests(incident: Incident) -> list[ApprovalRequest]:
    """Approval requests, newest first, with their decisions."""
    return list(
        incident.approval_requests.select_related("requested_by").prefetch_related(
            "approvals__approver"
        )
    )


def approvals_awaiting(user: User | AnonymousUser) -> list[ApprovalRequest]:
    """Pending requests that still need a role `user` holds and that `user` did not request."""
    if not user.is_authenticated:
        return []
    held = set(user.groups.values_list("name", flat=True))
    pending = (
        ApprovalRequest.objects.filter(status=ApprovalRequestStatus.PENDING)
        .exclude(requested_by=user)
        .exclude(approvals__approver=user)
        .select_related("incident", "requested_by")
        .prefetch_related("approvals")
    )
    return [request for request in pending if held & set(request.missing_roles())]


def commanders() -> QuerySet[Any]:
    """Active users who hold the Incident Commander permission, by username."""
    User = get_user_model()
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(groups__permissions__codename="command_incident")
            | Q(user_permissions__codename="command_incident")
            | Q(is_superuser=True)
        )
        .distinct()
        .order_by("username")
    )


LOG_TAIL_LINES = 12


def incident_runs(incident: Incident) -> list[Run]:
    """The incident's rollback runs, newest first, each step with the tail of its log
    (`step.log_tail`), in four queries whatever the number of steps."""
    steps = Step.objects.select_related("service", "release").order_by("position")
    runs = list(
        incident.runs.select_related("created_by", "confirmed_by", "approval_request")
        .prefetch_related(Prefetch("steps", queryset=steps))
        .order_by("-id")
    )
    all_steps = [step for run in runs for step in run.steps.all()]
    tails: dict[int, list[StepLog]] = {step.pk: [] for step in all_steps}
    if all_steps:
        recent = (
            StepLog.objects.filter(step__in=all_steps)
            .annotate(
                from_end=Window(RowNumber(), partition_by=[F("step_id")], order_by=F("seq").desc())
            )
            .filter(from_end__lte=LOG_TAIL_LINES)
            .order_by("step_id", "seq")
        )
        for line in recent:
            tails[line.step_id].append(line)
    for step in all_steps:
        step.log_tail = tails[step.pk]  # type: ignore[attr-defined]
    return runs
