"""Alerts in: a notification from Alertmanager's webhook (payload version 4: alerts grouped,
firing or resolved, with labels, annotations and fingerprints), or Grafana's, which has the
same shape, turned into incidents and timeline entries.

- An alert's ALERT_SERVICE_LABEL label (`service`) names a service (in the environment of
  ALERT_ENVIRONMENT_LABEL, else production). An alert naming none is recorded, unmatched.
- A firing alert joins the open incident it joined before (by fingerprint), else the oldest
  open incident on its service, else opens one: severity from ALERT_SEVERITY_MAP by the
  ALERT_SEVERITY_LABEL label, title from the alert's name and summary, impact from when it
  started firing. Each alert that starts or stops firing is one timeline entry, with its
  labels and annotations; one still firing (Alertmanager repeats it) adds nothing.
- A notification is handled in one transaction, all or nothing, and the same body delivered
  twice (Alertmanager retries) is handled once. Notifications naming the same service are
  handled one after the other (its row is locked), so alert groups firing at once for a
  service open one incident between them.
- `alert_fired` is sent once per incident and service a notification touched, however many
  of its alerts fired.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.models import Alert, AlertNotification, AlertState
from alerts.signals import send_alert_fired
from incidents.errors import DomainError
from incidents.models import Environment, Incident, IncidentStatus, Service, TimelineKind
from incidents.services import incident_open
from incidents.timeline import timeline_append

ACTOR = "alertmanager"
MAX_ALERTS = 1000


@dataclass(frozen=True)
class IncomingAlert:
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    fingerprint: str = ""


@dataclass
class Outcome:
    """What a notification did, for the sender's log."""

    duplicate: bool = False
    opened: list[int] = field(default_factory=list)
    joined: list[int] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    fired: list[tuple[int, int]] = field(default_factory=list)


def fingerprint_of(alert: IncomingAlert) -> str:
    if alert.fingerprint:
        return alert.fingerprint[:64]
    labels = json.dumps(dict(sorted(alert.labels.items())), ensure_ascii=False)
    return hashlib.sha256(labels.encode()).hexdigest()[:16]


def severity_of(labels: Mapping[str, str]) -> str:
    value = labels.get(settings.ALERT_SEVERITY_LABEL, "").lower()
    mapped: str = settings.ALERT_SEVERITY_MAP.get(value, settings.ALERT_DEFAULT_SEVERITY)
    return mapped


def service_of(labels: Mapping[str, str]) -> Service | None:
    name = labels.get(settings.ALERT_SERVICE_LABEL, "")
    environment = labels.get(settings.ALERT_ENVIRONMENT_LABEL, Environment.PRODUCTION)
    if not name:
        return None
    return Service.objects.filter(name=name, environment=environment).first()


def describe(alert: IncomingAlert, name: str) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return f"{name}: {summary}" if summary else name


def notification_receive(
    *,
    body: bytes,
    status: str,
    receiver: str,
    group_key: str,
    alerts: Sequence[IncomingAlert],
    token_prefix: str = "",
) -> Outcome:
    if len(alerts) > MAX_ALERTS:
        raise DomainError(f"A notification carries at most {MAX_ALERTS} alerts.")
    digest = hashlib.sha256(body).hexdigest()
    outcome = Outcome()
    try:
        with transaction.atomic():
            AlertNotification.objects.create(
                digest=digest,
                receiver=receiver[:200],
                group_key=group_key[:1000],
                status=status,
                alert_count=len(alerts),
                token_prefix=token_prefix,
            )
            lock_services(alerts)
            # One order for every sender: rows of alerts naming no service (no lock to
            # queue behind) are then locked in the same order by each, never crosswise.
            for alert in sorted(alerts, key=lambda a: (fingerprint_of(a), a.starts_at)):
                handle_alert(alert, outcome)
            for incident_id, service_id in dict.fromkeys(outcome.fired):
                send_alert_fired(incident_id, service_id)
    except IntegrityError:
        if AlertNotification.objects.filter(digest=digest).exists():
            return Outcome(duplicate=True)
        raise
    return outcome


def lock_services(alerts: Sequence[IncomingAlert]) -> None:
    """Lock the rows of the services the alerts name, in one order, so that notifications
    about one service are handled one after the other: two alert groups firing at once for
    a service open one incident, not two."""
    names = {
        (
            alert.labels.get(settings.ALERT_SERVICE_LABEL, ""),
            alert.labels.get(settings.ALERT_ENVIRONMENT_LABEL, Environment.PRODUCTION),
        )
        for alert in alerts
    }
    wanted = Q(pk__in=[])
    for name, environment in names:
        if name:
            wanted |= Q(name=name, environment=environment)
    list(Service.objects.select_for_update().filter(wanted).order_by("pk").values_list("pk"))


def alert_row(fingerprint: str, alert: IncomingAlert, name: str, service: Service | None) -> Alert:
    """The stored alert (locked), made now if this is its first notification. An alert with
    no service has no lock to queue behind, so two notifications may both make it: the
    second waits for the first to commit and then takes its row."""
    wanted = Alert.objects.select_for_update().filter(
        fingerprint=fingerprint, starts_at=alert.starts_at
    )
    row = wanted.first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return Alert.objects.create(
                fingerprint=fingerprint,
                starts_at=alert.starts_at,
                name=name[:200],
                status="",
                service=service,
            )
    except IntegrityError:
        return wanted.get()


def handle_alert(alert: IncomingAlert, outcome: Outcome) -> None:
    name = alert.labels.get("alertname", "") or "alert"
    fingerprint = fingerprint_of(alert)
    now = timezone.now()
    row = alert_row(fingerprint, alert, name, service_of(alert.labels))
    if row.status == alert.status:
        Alert.objects.filter(pk=row.pk).update(last_seen_at=now)
        return
    service = row.service
    row.status, row.ends_at, row.last_seen_at = alert.status, alert.ends_at, now
    row.labels, row.annotations = dict(alert.labels), dict(alert.annotations)
    row.generator_url = alert.generator_url[:1000]
    if service is None:
        row.save()
        outcome.unmatched.append(name)
        return
    if alert.status == AlertState.FIRING:
        row.incident = incident_for(row, alert, service, outcome)
        outcome.fired.append((row.incident.pk, service.pk))
    row.save()
    if row.incident is None:
        return
    verb = "firing" if alert.status == AlertState.FIRING else "resolved"
    if alert.status == AlertState.RESOLVED:
        outcome.resolved.append(name)
    timeline_append(
        incident=row.incident,
        kind=TimelineKind.ALERT_RECEIVED,
        body=f"Alert {verb} on {service.name}: {describe(alert, name)}"[:5000],
        actor_label=ACTOR,
        payload={
            "fingerprint": fingerprint,
            "status": alert.status,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "starts_at": alert.starts_at.isoformat(),
            "generator_url": alert.generator_url[:1000],
        },
    )


def incident_for(row: Alert, alert: IncomingAlert, service: Service, outcome: Outcome) -> Incident:
    """The open incident this alert joins, or a new one it opens."""
    open_incidents = Incident.objects.exclude(status=IncidentStatus.RESOLVED)
    earlier = (
        Alert.objects.filter(fingerprint=row.fingerprint, incident__in=open_incidents)
        .select_related("incident")
        .order_by("-starts_at")
        .first()
    )
    incident = earlier.incident if earlier is not None else None
    if incident is None:
        incident = open_incidents.filter(services=service).order_by("started_at", "pk").first()
    if incident is not None:
        outcome.joined.append(incident.pk)
        return incident
    name = alert.labels.get("alertname", "") or "alert"
    now = timezone.now()
    started = min(alert.starts_at, now)
    incident = incident_open(
        title=describe(alert, name)[:200],
        severity=severity_of(alert.labels),
        environment=service.environment,
        opened_by=None,
        services=[service],
        summary=alert.annotations.get("description", "")[:5000],
        started_at=started if started > now - timedelta(days=7) else now,
        detected_at=now,
        actor_label=ACTOR,
    )
    outcome.opened.append(incident.pk)
    return incident
