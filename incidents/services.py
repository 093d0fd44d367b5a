"""Domain operations on incidents. Each is one transaction that changes state and writes
the timeline entry saying so; listeners hear about it on Redis after commit.

Views and tasks call these functions and nothing else to change an incident.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as Person
from django.db import transaction
from django.utils import timezone

from incidents.models import (
    INCIDENT_INSTANTS,
    STATUS_TRANSITIONS,
    Approval,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalRequestStatus,
    Checklist,
    ChecklistItem,
    ChecklistTemplate,
    Incident,
    IncidentStatus,
    Release,
    Scenario,
    Service,
    Severity,
    TimelineEntry,
    TimelineKind,
)

logger = logging.getLogger(__name__)

# Who does something: a logged-in person, or anonymous (refused where a role is needed).
User = Person | AnonymousUser


class DomainError(Exception):
    """An operation that the rules forbid; the message is fit to show the user."""


class PermissionDenied(DomainError):
    """The actor lacks the role the operation needs."""


def _now() -> datetime:
    return timezone.now()


def channel_for(incident_id: int) -> str:
    """The Redis channel on which an incident's new timeline entries are announced."""
    return f"incident:{incident_id}"


_redis_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _redis_client


class _Announcer:
    """Sends this process's announcements to Redis from a thread of its own, a burst of
    them in one pipelined round trip: a committing thread hands its messages over and
    goes on, instead of waiting for Redis (and opening a connection of its own when
    dozens of rollback steps commit at once). Messages keep the order they were handed
    over in. Best effort: PostgreSQL is the record and watchers replay from it, so a lost
    announcement costs latency, never an event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[tuple[int, dict[str, int]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def forget_parent(self) -> None:
        """In a forked child (a Celery prefork child): the parent's lock may have been held
        at the fork, and its thread is not here. Start afresh."""
        self._lock = threading.Lock()
        self._pid = 0
        self._thread = None

    def send(self, incident_id: int, message: dict[str, int]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: a thread of its own
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="announcer", daemon=True
                )
                self._thread.start()
                atexit.register(self.stop)
            self._queue.put((incident_id, message))

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued and end the thread (at the process's exit). A daemon thread
        stopped in the middle of a send would hold the Redis client's lock for good, and the
        client's own clean-up at exit would wait for it forever."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or self._pid != os.getpid():
                return
            self._queue.put(None)
            self._pid = 0  # a later send starts a thread again
        thread.join(timeout)

    def _run(self, messages: queue.SimpleQueue[tuple[int, dict[str, int]] | None]) -> None:
        stopping = False
        while not stopping:
            batch: list[tuple[int, dict[str, int]]] = []
            waiting = [messages.get()]
            while not messages.empty() and len(waiting) < 500:
                waiting.append(messages.get())
            for waited in waiting:
                if waited is None:
                    stopping = True
                else:
                    batch.append(waited)
            if not batch:
                continue
            try:
                with _redis().pipeline(transaction=False) as pipe:
                    for incident_id, message in batch:
                        pipe.publish(channel_for(incident_id), json.dumps(message))
                    pipe.execute()
            except Exception:  # Redis down, or anything else: this thread must live on
                logger.warning("could not announce %s messages on Redis", len(batch), exc_info=True)


_announcer = _Announcer()
os.register_at_fork(after_in_child=_announcer.forget_parent)


def _publish(incident_id: int, message: dict[str, int]) -> None:
    _announcer.send(incident_id, message)


def announce_log_lines(incident_id: int, step_id: int) -> None:
    """Tell the incident's watchers that a step's log grew (after the current commit)."""
    transaction.on_commit(lambda: _publish(incident_id, {"log": step_id}))


def timeline_append(
    *,
    incident: Incident,
    kind: str,
    body: str,
    actor: User | None = None,
    actor_label: str = "",
    payload: dict[str, Any] | None = None,
) -> TimelineEntry:
    """Append one entry to the incident's timeline and announce it after commit.

    Call inside the transaction that made the change the entry describes.
    """
    real_actor = actor if actor is not None and actor.is_authenticated else None
    entry = TimelineEntry(
        incident=incident,
        kind=kind,
        body=body,
        actor=real_actor,
        actor_label=actor_label,
        payload=payload or {},
    )
    return timeline_append_all([entry])[0]


def timeline_append_all(entries: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """timeline_append for entries built but not yet saved, in one INSERT; each is
    announced after commit. Call inside the transaction that made the changes."""
    created = TimelineEntry.objects.bulk_create(entries)
    announced = [(entry.incident_id, entry.pk) for entry in created]

    def announce() -> None:
        for incident_id, entry_id in announced:
            _publish(incident_id, {"entry": entry_id})

    transaction.on_commit(announce)
    return created


def _lock(incident: Incident) -> Incident:
    return Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)


def _require(actor: User, permission: str, doing: str) -> Person:
    """The actor as a signed-in person holding `permission`, or PermissionDenied."""
    if not isinstance(actor, Person) or not actor.has_perm(permission):
        raise PermissionDenied(f"You do not have the role needed to {doing}.")
    return actor


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
    _require(actor, "incidents.command_incident", "change an incident's status")
    locked = _lock(incident)
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
    return locked


@transaction.atomic
def incident_change_severity(
    *, incident: Incident, severity: str, actor: User, reason: str = ""
) -> Incident:
    """Raise or lower the incident's severity."""
    _require(actor, "incidents.command_incident", "change an incident's severity")
    if severity not in Severity.values:
        raise DomainError(f"Unknown severity {severity!r}.")
    locked = _lock(incident)
    if locked.severity == severity:
        raise DomainError(f"The incident is already {severity}.")
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
    _require(actor, "incidents.command_incident", "assign the incident commander")
    if not commander.has_perm("incidents.command_incident"):
        raise DomainError(f"{commander.get_username()} does not hold the Incident Commander role.")
    locked = _lock(incident)
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


@transaction.atomic
def incident_record_instant(
    *, incident: Incident, instant: str, at: datetime, actor: User | None, actor_label: str = ""
) -> Incident:
    """Set one of the key instants (e.g. verified_at) that the recovery metrics derive from."""
    if actor is not None and actor_label == "":
        _require(actor, "incidents.command_incident", "record incident instants")
    if instant not in INCIDENT_INSTANTS:
        raise DomainError(f"Unknown instant {instant!r}.")
    if at > _now() + timedelta(minutes=1):
        raise DomainError("An instant cannot be in the future.")
    locked = _lock(incident)
    # Impact starts first, detection second; every later instant follows detection.
    if instant == "started_at" and at > locked.detected_at:
        raise DomainError("Impact cannot start after it was detected.")
    if instant == "detected_at" and at < locked.started_at:
        raise DomainError("Detection cannot come before impact started.")
    if instant not in ("started_at", "detected_at") and at < locked.detected_at:
        raise DomainError("That instant would come before the incident was detected.")
    previous = getattr(locked, instant)
    setattr(locked, instant, at)
    locked.save(update_fields=[instant])
    label = instant.removesuffix("_at").replace("_", " ")
    timeline_append(
        incident=locked,
        kind=TimelineKind.INSTANT_RECORDED,
        body=f"Recorded {label} at {timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}",
        actor=actor,
        actor_label=actor_label,
        payload={
            "instant": instant,
            "at": at.isoformat(),
            "previous": previous.isoformat() if previous else None,
        },
    )
    return locked


@transaction.atomic
def note_add(*, incident: Incident, author: User, body: str) -> TimelineEntry:
    """Add a free-text note to the timeline."""
    _require(author, "incidents.add_note", "add notes")
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
        _require(actor, "incidents.tick_checklist", "tick checklist items")
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


def required_roles_for(*, severity: str, scenario: str) -> list[str]:
    """The approver roles every active matching policy asks for, in a stable order."""
    roles: list[str] = []
    for policy in ApprovalPolicy.objects.filter(active=True):
        if policy.applies_to(severity=severity, scenario=scenario):
            roles.extend(role for role in policy.required_roles if role not in roles)
    return roles


@transaction.atomic
def approval_request_open(
    *, incident: Incident, requested_by: User, scenario: str, reason: str
) -> ApprovalRequest:
    """Ask for the approvals the incident's severity and scenario need.

    With no matching policy the request is approved at once, and the timeline says so.
    """
    requester = _require(requested_by, "incidents.command_incident", "request rollback approval")
    if scenario not in Scenario.values:
        raise DomainError(f"Unknown scenario {scenario!r}.")
    if not reason.strip():
        raise DomainError("Say why the rollback is needed.")
    locked = _lock(incident)
    if not locked.is_open:
        raise DomainError("The incident is resolved; reopen it first.")
    if locked.approval_requests.filter(status=ApprovalRequestStatus.PENDING).exists():
        raise DomainError("An approval request is already pending for this incident.")
    roles = required_roles_for(severity=locked.severity, scenario=scenario)
    request = ApprovalRequest.objects.create(
        incident=locked,
        scenario=scenario,
        reason=reason.strip(),
        requested_by=requester,
        required_roles=roles,
        status=ApprovalRequestStatus.PENDING if roles else ApprovalRequestStatus.APPROVED,
        decided_at=None if roles else _now(),
    )
    needed = ", ".join(roles) if roles else "no approval (no policy applies)"
    timeline_append(
        incident=locked,
        kind=TimelineKind.APPROVAL,
        body=f"Rollback approval requested ({Scenario(scenario).label}); needs {needed}",
        actor=requested_by,
        payload={"request": request.pk, "required_roles": roles, "status": request.status},
    )
    return request


@transaction.atomic
def approval_decide(
    *,
    request: ApprovalRequest,
    approver: Person,
    decision: str,
    role: str | None = None,
    comment: str = "",
) -> ApprovalRequest:
    """Record one approver's decision. The requester may never approve their own request.

    `role` picks which missing capacity the approval covers when the approver holds
    several; by default the first missing one they hold.
    """
    _require(approver, "incidents.approve_rollback", "approve rollbacks")
    if decision not in ApprovalDecision.values:
        raise DomainError(f"Unknown decision {decision!r}.")
    locked = ApprovalRequest.objects.select_for_update(no_key=True).get(pk=request.pk)
    if locked.status != ApprovalRequestStatus.PENDING:
        raise DomainError(f"This request is already {locked.get_status_display().lower()}.")
    if locked.requested_by_id == approver.pk:
        raise DomainError("You requested this rollback; someone else must approve it.")
    if locked.approvals.filter(approver=approver).exists():
        raise DomainError("You have already decided on this request.")
    held = set(approver.groups.values_list("name", flat=True))
    candidates = [name for name in locked.missing_roles() if name in held]
    if role is not None:
        if role not in locked.required_roles:
            raise DomainError(f"This request does not need a {role} approval.")
        if role not in held:
            raise DomainError(f"You do not hold the {role} role.")
        candidates = [role] if role in locked.missing_roles() else []
    if not candidates:
        raise DomainError("None of the roles this request still needs is yours.")
    chosen = candidates[0]
    Approval.objects.create(
        request=locked, approver=approver, role=chosen, decision=decision, comment=comment.strip()
    )
    if decision == ApprovalDecision.REJECT:
        locked.status = ApprovalRequestStatus.REJECTED
    elif not locked.missing_roles():
        locked.status = ApprovalRequestStatus.APPROVED
    if locked.status != ApprovalRequestStatus.PENDING:
        locked.decided_at = _now()
    locked.save(update_fields=["status", "decided_at"])
    _follow_run(locked)
    verb = "approved" if decision == ApprovalDecision.APPROVE else "rejected"
    outcome = {
        ApprovalRequestStatus.PENDING: f"still needs {', '.join(locked.missing_roles())}",
        ApprovalRequestStatus.APPROVED: "all approvals given",
        ApprovalRequestStatus.REJECTED: "request rejected",
    }[ApprovalRequestStatus(locked.status)]
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.APPROVAL,
        body=f"{approver.get_username()} {verb} as {chosen}; {outcome}"
        + (f". “{comment.strip()}”" if comment.strip() else ""),
        actor=approver,
        payload={
            "request": locked.pk,
            "decision": decision,
            "role": chosen,
            "status": locked.status,
        },
    )
    return locked


def _follow_run(request: ApprovalRequest) -> None:
    """Move the rollback run this request belongs to (approved, or back to draft) in the
    transaction that recorded the decision."""
    # Imported here: incidents.rollbacks builds on this module.
    from incidents.rollbacks import run_follow_approval

    run_follow_approval(request=request)


@transaction.atomic
def approval_withdraw(*, request: ApprovalRequest, actor: User) -> ApprovalRequest:
    """The commander withdraws a pending request (e.g. the plan changed)."""
    _require(actor, "incidents.command_incident", "withdraw approval requests")
    locked = ApprovalRequest.objects.select_for_update(no_key=True).get(pk=request.pk)
    if locked.status != ApprovalRequestStatus.PENDING:
        raise DomainError("Only a pending request can be withdrawn.")
    locked.status = ApprovalRequestStatus.WITHDRAWN
    locked.decided_at = _now()
    locked.save(update_fields=["status", "decided_at"])
    _follow_run(locked)
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.APPROVAL,
        body="Approval request withdrawn",
        actor=actor,
        payload={"request": locked.pk, "status": locked.status},
    )
    return locked


@transaction.atomic
def release_mark_known_good(
    *, release: Release, actor: User | None, known_good: bool = True
) -> Release:
    """Mark (or unmark) a release as known-good, recording who and when."""
    if actor is not None and actor.is_authenticated:
        _require(actor, "incidents.change_release", "mark releases known-good")
    locked = Release.objects.select_for_update(no_key=True).get(pk=release.pk)
    real_actor = actor if actor is not None and actor.is_authenticated else None
    locked.known_good = known_good
    locked.known_good_by = real_actor if known_good else None
    locked.known_good_at = _now() if known_good else None
    locked.save(update_fields=["known_good", "known_good_by", "known_good_at"])
    return locked
