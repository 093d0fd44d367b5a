"""Read-side queries the pages share, each with a constant number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F, Max, Prefetch, Q, QuerySet

from incidents.models import (
    Checklist,
    ChecklistItem,
    Incident,
    IncidentStatus,
    Release,
    Service,
    TimelineEntry,
    TimelineOrder,
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
    """A service with its newest release, its newest known-good release, and the open
    incident that makes the newest one suspect (it affects the service and began while that
    release was the newest), if any."""

    service: Service
    latest: Release | None
    known_good: Release | None
    suspected_by: Incident | None = None

    @property
    def latest_is_known_good(self) -> bool:
        return self.latest is not None and self.latest.known_good


def release_suspected_by(release: Release) -> Incident | None:
    """The open incident that affects the release's service and began while this release was
    its newest (shipped before the impact, nothing shipped since): while there is one, the
    release is the suspect and no candidate for known-good. A release shipped after the
    impact began (a fix) is not suspected. An unsaved release is asked about as if saved."""
    incidents = Incident.objects.exclude(status=IncidentStatus.RESOLVED).filter(
        services=release.service_id, started_at__gte=release.shipped_at
    )
    for incident in incidents.order_by("started_at", "pk"):
        newest = (
            Release.objects.filter(service=release.service_id, shipped_at__lte=incident.started_at)
            .order_by("-shipped_at", "-id")
            .first()
        )
        if release.pk is None:  # not saved yet: the newest unless another shipped after it
            if newest is None or newest.shipped_at <= release.shipped_at:
                return incident
        elif newest is not None and newest.pk == release.pk:
            return incident
    return None


def services_with_releases() -> list[ServiceReleases]:
    """Every service with its latest and last known-good release, and the open incident
    suspecting the latest (four queries, one row per service however many releases each
    service has had)."""
    services = list(Service.objects.order_by("environment", "name"))
    newest_first = Release.objects.select_related("known_good_by").order_by(
        "service_id", "-shipped_at", "-id"
    )
    latest = {r.service_id: r for r in newest_first.distinct("service_id")}
    known_good = {
        r.service_id: r for r in newest_first.filter(known_good=True).distinct("service_id")
    }
    open_incidents = list(
        Incident.objects.exclude(status=IncidentStatus.RESOLVED)
        .prefetch_related("services")
        .order_by("started_at", "pk")
    )

    def suspected(service: Service) -> Incident | None:
        """The first open incident on the service that began with the newest release live."""
        newest = latest.get(service.pk)
        if newest is None:
            return None
        for incident in open_incidents:
            affected = any(s.pk == service.pk for s in incident.services.all())
            if affected and newest.shipped_at <= incident.started_at:
                return incident
        return None

    return [
        ServiceReleases(
            service=s,
            latest=latest.get(s.pk),
            known_good=known_good.get(s.pk),
            suspected_by=suspected(s),
        )
        for s in services
    ]


def incident_timeline(incident: Incident, *, after: int = 0) -> QuerySet[TimelineEntry]:
    """Timeline entries in the order they became visible, optionally only those that became
    visible after entry `after` (see models.TimelineOrder; an entry whose transaction is
    still open has no place in that order yet and sorts last, by id)."""
    entries = incident.timeline.select_related("actor").order_by(
        F("order__seq").asc(nulls_last=True), "id"
    )
    if after:
        seq = entry_seq(incident.pk, after)
        if seq is None:
            entries = entries.filter(id__gt=after)
        else:
            entries = entries.filter(Q(order__seq__gt=seq) | Q(order__isnull=True, id__gt=after))
    return entries


@dataclass(frozen=True)
class TimelinePage:
    """Entries of one incident in commit order, the latest `limit` before a point."""

    entries: list[TimelineEntry]
    earlier: int  # how many committed entries come before the first of `entries`


def timeline_page(incident: Incident, *, before: int | None = None, limit: int) -> TimelinePage:
    """The latest `limit` entries (before entry `before`, when given) in commit order, read
    through the (incident, seq) index so a long timeline costs no more than a short one.
    Without `before`, entries written in this very transaction (no position yet) come last,
    as in `incident_timeline`."""
    orders = TimelineOrder.objects.filter(incident_id=incident.pk)
    if before is not None:
        seq = orders.filter(entry_id=before).values_list("seq", flat=True).first()
        if seq is None:
            return TimelinePage([], 0)
        orders = orders.filter(seq__lt=seq)
    picked = list(orders.order_by("-seq").values_list("seq", "entry_id")[:limit])
    by_id = {
        entry.pk: entry
        for entry in TimelineEntry.objects.select_related("actor").filter(
            pk__in=[entry_id for _, entry_id in picked]
        )
    }
    entries = [by_id[entry_id] for _, entry_id in reversed(picked)]
    earlier = orders.filter(seq__lt=picked[-1][0]).count() if len(picked) == limit else 0
    if before is None:
        entries += list(
            incident.timeline.select_related("actor").filter(order__isnull=True).order_by("id")
        )
    return TimelinePage(entries, earlier)


def entry_seq(incident_id: int, entry_id: int) -> int | None:
    """The commit-order position of an incident's entry; for an id that is not one of its
    entries, the position of the latest entry below that id (None when there is none)."""
    orders = TimelineOrder.objects.filter(incident_id=incident_id)
    exact = orders.filter(entry_id=entry_id).values_list("seq", flat=True).first()
    if exact is not None:
        return exact
    below = orders.filter(entry_id__lt=entry_id).aggregate(top=Max("seq"))["top"]
    return int(below) if below is not None else None


def timeline_after_seq(incident_id: int, seq: int, *, limit: int) -> list[TimelineOrder]:
    """Up to `limit` of the incident's entries after commit-order position `seq`, in that
    order, each with its entry and actor loaded."""
    return list(
        TimelineOrder.objects.filter(incident_id=incident_id, seq__gt=seq)
        .select_related("entry", "entry__actor")
        .order_by("seq")[:limit]
    )


def latest_seq(incident_id: int) -> int:
    top = TimelineOrder.objects.filter(incident_id=incident_id).aggregate(top=Max("seq"))["top"]
    return int(top or 0)


def incident_checklists(incident: Incident) -> list[Checklist]:
    """The incident's checklists with their items and who ticked them."""
    items = ChecklistItem.objects.select_related("done_by").order_by("position", "id")
    return list(
        incident.checklists.prefetch_related(Prefetch("items", queryset=items)).order_by(
            "position", "id"
        )
    )


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
