"""Read-side queries the pages share, each with a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Prefetch, Q, QuerySet

from incidents.models import (
    ApprovalRequest,
    ApprovalRequestStatus,
    Checklist,
    ChecklistItem,
    Incident,
    IncidentStatus,
    Release,
    Service,
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
