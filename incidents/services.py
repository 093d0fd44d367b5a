"""Domain operations on incidents. Each is one transaction that changes state and writes
the timeline entry saying so; listeners hear about it on Redis after commit.

Views and tasks call these functions and nothing else to change an incident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from django.contrib.auth.models import User as Person
from django.db import transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.guards import known_good_refusal, severity_refusal
from incidents.models import (
    INCIDENT_INSTANTS,
    STATUS_TRANSITIONS,
    Checklist,
    ChecklistItem,
    ChecklistTemplate,
    Incident,
    IncidentStatus,
    Release,
    Service,
    Severity,
    TimelineEntry,
    TimelineKind,
)
from incidents.roles import User, require_role
from incidents.selectors import release_suspected_by
from incidents.signals import send_incident_reopened, send_incident_resolved
from incidents.timeline import timeline_append, timeline_append_all

logger = logging.getLogger(__name__)

# Who does something: a logged-in person, or anonymous (refused where a role is needed).


def _now() -> datetime:
    return timezone.now()


def incident_lock(incident: Incident) -> Incident:
    """The incident, locked FOR NO KEY UPDATE until the transaction ends."""
    return Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)


@transaction.atomic
def incident_open(
    *,
    title: str,
    severity: str,
    environment: str,
    opened_by: User | None,
    commander: Person | None = None,
    services: Iterable[Service] = (),
    summary: str = "",
    started_at: datetime | None = None,
    detected_at: datetime | None = None,
    rto: timedelta | None = None,
    rpo: timedelta | None = None,
    actor_label: str = "",
) -> Incident:
    """Open an incident, attach the default checklists, and start its timeline."""
    if severity not in Severity.values:
        raise DomainError(f"Unknown severity {severity!r}.")
    now = _now()
    detected = detected_at or now
    started = started_at or detected
    if started > detected:
        raise DomainError("Impact cannot start after it was detected.")
    if detected > now + timedelta(minutes=1):
        raise DomainError("Detection time cannot be in the future.")
    opener = opened_by if opened_by is not None and opened_by.is_authenticated else None
    incident = Incident.objects.create(
        title=title,
        severity=severity,
        environment=environment,
        commander=commander,
        summary=summary,
        created_by=opener,
        started_at=started,
        detected_at=detected,
        **({"rto": rto} if rto is not None else {}),
        **({"rpo": rpo} if rpo is not None else {}),
    )
    incident.services.set(list(services))
    _attach_checklists(incident)
    timeline_append(
        incident=incident,
        kind=TimelineKind.INCIDENT_OPENED,
        body=f"{severity} incident opened: {title}",
        actor=opener,
        actor_label=actor_label,
        payload={
            "severity": severity,
            "environment": environment,
            "commander": commander.get_username() if commander else None,
            "services": [service.name for service in incident.services.all()],
        },
    )
    return incident


def _attach_checklists(incident: Incident) -> None:
    templates = ChecklistTemplate.objects.filter(auto_attach=True).prefetch_related("items")
    for template in templates:
        checklist = Checklist.objects.create(
            incident=incident, name=template.name, kind=template.kind, position=template.position
        )
        ChecklistItem.objects.bulk_create(
            ChecklistItem(
                checklist=checklist,
                position=item.position,
                text=item.text,
                check_key=item.check_key,
            )
            for item in template.items.all()
        )


# Entering a status stamps the instant it stands for, the first time only.
_STATUS_INSTANTS = {
    IncidentStatus.IDENTIFIED: "decided_at",
    IncidentStatus.MITIGATING: "decided_at",
    IncidentStatus.MONITORING: "restored_at",
    IncidentStatus.RESOLVED: "resolved_at",
}


@transaction.atomic
def incident_change_status(
    *, incident: Incident, to_status: str, actor: User, reason: str = ""
) -> Incident:
    """Move the incident to `to_status` if the state machine allows it."""
    require_role(actor, "incidents.command_incident", "change an incident's status")
    locked = incident_lock(incident)
    if to_status not in IncidentStatus.values:
        raise DomainError(f"Unknown status {to_status!r}.")
    if to_status not in STATUS_TRANSITIONS[locked.status]:
        raise DomainError(
            f"An incident cannot go from {locked.get_status_display()} to "
            f"{IncidentStatus(to_status).label}."
        )
    from_status = locked.status
    locked.status = to_status
    stamped = []
    instant = _STATUS_INSTANTS.get(IncidentStatus(to_status))
    if instant and getattr(locked, instant) is None:
        setattr(locked, instant, _now())
        stamped.append(instant)
    if to_status == IncidentStatus.INVESTIGATING and from_status == IncidentStatus.RESOLVED:
        locked.resolved_at = None
    locked.save()
    text = f"Status: {IncidentStatus(from_status).label} → {IncidentStatus(to_status).label}"
    timeline_append(
        incident=locked,
        kind=TimelineKind.STATUS_CHANGE,
        body=f"{text}. {reason}".strip() if reason else text,
        actor=actor,
        payload={"from": from_status, "to": to_status, "reason": reason, "stamped": stamped},
    )
    if to_status == IncidentStatus.RESOLVED:
        send_incident_resolved(locked)
    elif from_status == IncidentStatus.RESOLVED:
        send_incident_reopened(locked)
    return locked


@transaction.atomic
def incident_change_severity(
    *, incident: Incident, severity: str, actor: User, reason: str = ""
) -> Incident:
    """Raise or lower the incident's severity.

    Any Incident Commander may raise it: escalating must never wait for a hand-over. Only
    the incident's own commander (anyone, while it has none) may lower it, and not while an
    app's guard refuses (incidents.guards: a plan awaiting approval under the higher
    severity's policy)."""
    require_role(actor, "incidents.command_incident", "change an incident's severity")
    if severity not in Severity.values:
        raise DomainError(f"Unknown severity {severity!r}.")
    locked = incident_lock(incident)
    if locked.severity == severity:
        raise DomainError(f"The incident is already {severity}.")
    lowering = Severity.values.index(severity) > Severity.values.index(locked.severity)  # P0 first
    commander = locked.commander
    if lowering and commander is not None and commander.pk != actor.pk:
        raise DomainError(
            f"Only the incident's commander ({commander.get_username()}) may lower its "
            "severity; anyone may raise it. Take command first."
        )
    refusal = severity_refusal(locked, locked.severity, severity)
    if refusal:
        raise DomainError(refusal)
    previous, locked.severity = locked.severity, severity
    locked.save(update_fields=["severity"])
    timeline_append(
        incident=locked,
        kind=TimelineKind.SEVERITY_CHANGE,
        body=f"Severity: {previous} → {severity}. {reason}".strip(),
        actor=actor,
        payload={"from": previous, "to": severity, "reason": reason},
    )
    return locked


@transaction.atomic
def incident_assign_commander(*, incident: Incident, commander: Person, actor: User) -> Incident:
    """Name the incident commander; taking command of an unowned incident is allowed."""
    require_role(actor, "incidents.command_incident", "assign the incident commander")
    if not commander.has_perm("incidents.command_incident"):
        raise DomainError(f"{commander.get_username()} does not hold the Incident Commander role.")
    locked = incident_lock(incident)
    if locked.commander_id == commander.pk:
        raise DomainError(f"{commander.get_username()} already commands this incident.")
    previous = locked.commander.get_username() if locked.commander else None
    locked.commander = commander
    locked.save(update_fields=["commander"])
    timeline_append(
        incident=locked,
        kind=TimelineKind.COMMANDER_CHANGE,
        body=f"Incident commander: {commander.get_username()}",
        actor=actor,
        payload={"from": previous, "to": commander.get_username()},
    )
    return locked


def _instant_refusal(locked: Incident, instant: str, at: datetime) -> str:
    """Why `instant` cannot be recorded at `at` on the locked incident, or ""."""
    if instant not in INCIDENT_INSTANTS:
        return f"Unknown instant {instant!r}."
    if at > _now() + timedelta(minutes=1):
        return "An instant cannot be in the future."
    # Impact starts first, detection second; every later instant follows detection.
    if instant == "started_at" and at > locked.detected_at:
        return "Impact cannot start after it was detected."
    if instant == "detected_at" and at < locked.started_at:
        return "Detection cannot come before impact started."
    if instant not in ("started_at", "detected_at") and at < locked.detected_at:
        return "That instant would come before the incident was detected."
    return ""


def _instants_write(
    locked: Incident, instants: Mapping[str, datetime], actor: User | None, actor_label: str
) -> None:
    """Set `instants` on the locked incident in one UPDATE, with an entry each in one INSERT."""
    real_actor = actor if actor is not None and actor.is_authenticated else None
    entries = []
    for instant, at in instants.items():
        previous = getattr(locked, instant)
        setattr(locked, instant, at)
        label = instant.removesuffix("_at").replace("_", " ")
        entries.append(
            TimelineEntry(
                incident=locked,
                kind=TimelineKind.INSTANT_RECORDED,
                body=f"Recorded {label} at {timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}",
                actor=real_actor,
                actor_label=actor_label,
                payload={
                    "instant": instant,
                    "at": at.isoformat(),
                    "previous": previous.isoformat() if previous else None,
                },
            )
        )
    if entries:
        locked.save(update_fields=list(instants))
        timeline_append_all(entries)


@transaction.atomic
def incident_record_instant(
    *, incident: Incident, instant: str, at: datetime, actor: User | None, actor_label: str = ""
) -> Incident:
    """Set one of the key instants (e.g. verified_at) that the recovery metrics derive from."""
    if actor is not None and actor_label == "":
        require_role(actor, "incidents.command_incident", "record incident instants")
    locked = incident_lock(incident)
    if refusal := _instant_refusal(locked, instant, at):
        raise DomainError(refusal)
    _instants_write(locked, {instant: at}, actor, actor_label)
    return locked


@transaction.atomic(savepoint=False)
def incident_fill_instants(
    *,
    incident: Incident,
    instants: Mapping[str, datetime],
    actor: User | None,
    actor_label: str = "",
) -> tuple[Incident, dict[str, str]]:
    """Record each of `instants` that the incident has not recorded yet, in one UPDATE and
    one INSERT of their entries: what a run's start and end fill in. Returns the incident
    and, for each instant refused (one that would come before detection, say), why; the
    others are recorded all the same. An instant already set is left as it is."""
    if actor is not None and actor_label == "":
        require_role(actor, "incidents.command_incident", "record incident instants")
    locked = incident_lock(incident)
    refused = {
        instant: refusal
        for instant, at in instants.items()
        if (refusal := _instant_refusal(locked, instant, at))
    }
    unset = {
        instant: at
        for instant, at in instants.items()
        if instant not in refused and getattr(locked, instant) is None
    }
    _instants_write(locked, unset, actor, actor_label)
    return locked, refused


@transaction.atomic
def note_add(*, incident: Incident, author: User, body: str) -> TimelineEntry:
    """Add a free-text note to the timeline."""
    require_role(author, "incidents.add_note", "add notes")
    text = body.strip()
    if not text:
        raise DomainError("A note cannot be empty.")
    return timeline_append(incident=incident, kind=TimelineKind.NOTE, body=text, actor=author)


@transaction.atomic
def checklist_item_set(
    *,
    item: ChecklistItem,
    done: bool,
    actor: User | None,
    automatically: bool = False,
    reason: str = "",
) -> ChecklistItem:
    """Tick or untick a checklist item, recording who and when.

    `automatically=True` is for passing verification checks; then actor may be None.
    """
    if not automatically:
        if actor is None:
            raise DomainError("Someone must tick the item.")
        require_role(actor, "incidents.tick_checklist", "tick checklist items")
    locked = (
        ChecklistItem.objects.select_for_update(no_key=True)
        .select_related("checklist")
        .get(pk=item.pk)
    )
    if locked.is_done == done:
        return locked
    real_actor = actor if actor is not None and actor.is_authenticated else None
    locked.done_at = _now() if done else None
    locked.done_by = real_actor if done else None
    locked.done_automatically = automatically and done
    locked.save(update_fields=["done_at", "done_by", "done_automatically"])
    verb = "Ticked" if done else "Unticked"
    suffix = f" ({reason})" if reason else ""
    timeline_append(
        incident=locked.checklist.incident,
        kind=TimelineKind.CHECKLIST,
        body=f"{verb} “{locked.text}” on {locked.checklist.name}{suffix}",
        actor=real_actor,
        actor_label="verification" if automatically else "",
        payload={"item": locked.pk, "checklist": locked.checklist_id, "done": done},
    )
    return locked


def release_mark_known_good(
    *, release: Release, actor: User | None, known_good: bool = True, reason: str = ""
) -> Release:
    """Mark (or unmark) a release as known-good, recording who and when. Refused while an
    open incident affecting its service began after it shipped: that release is the
    suspect, and a rollback would take it as a target. A person marking it is also asked
    what the known-good guards ask (incidents.guards): a reason where its checks fail."""
    person = actor is not None and actor.is_authenticated
    if actor is not None and person:
        require_role(actor, "incidents.change_release", "mark releases known-good")
    if len(reason.strip()) > 500:
        raise DomainError("A known-good reason is at most 500 characters.")
    if person and known_good:
        refusal = known_good_refusal(release, reason.strip())
        if refusal:
            raise DomainError(refusal)
    with transaction.atomic():
        locked = Release.objects.select_for_update(no_key=True).get(pk=release.pk)
        suspect = release_suspected_by(locked) if known_good else None
        if suspect is not None:
            raise DomainError(
                f"{locked.service.name} {locked.version} is suspected by open incident "
                f"#{suspect.pk} ({suspect.title[:80]}), which began after it shipped; resolve "
                "the incident (or take the service off it) before marking this release "
                "known-good."
            )
        real_actor = actor if actor is not None and actor.is_authenticated else None
        locked.known_good = known_good
        locked.known_good_by = real_actor if known_good else None
        locked.known_good_at = _now() if known_good else None
        locked.known_good_reason = reason.strip()
        locked.save(
            update_fields=["known_good", "known_good_by", "known_good_at", "known_good_reason"]
        )
    return locked


@transaction.atomic
def service_signals_set(*, service: Service, queries: dict[str, str], actor: User) -> Service:
    """Set the PromQL queries the decision helper reads for `service` (decisions.readings)."""
    from incidents.decisions.readings import clean_queries

    require_role(actor, "incidents.command_incident", "set a service's signal queries")
    try:
        cleaned = clean_queries(queries)
    except ValueError as error:
        raise DomainError(str(error)) from error
    locked = Service.objects.select_for_update().get(pk=service.pk)
    locked.signal_queries = cleaned
    locked.save(update_fields=["signal_queries"])
    return locked
