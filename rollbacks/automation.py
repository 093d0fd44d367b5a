"""Automatic rollback, gated by policy. A service's `auto_rollback` policy (off unless set:
{"enabled": true, "severities": ["P1", "P2"], "max_release_age_hours": 6, "start": false})
lets an alert that opens or joins an incident for the service (alerts.signals.alert_fired)
draft a rollback on its own:

1. the decision helper reads the service's signals from Prometheus and must say roll back;
2. the incident's severity must be one the policy names, and the service's newest release
   younger than `max_release_age_hours` (an old release is not what broke);
3. the service needs a known-good release, and no run of the incident may already be
   drafted, waiting, approved or running for it.

Then the rollback to the known-good release is drafted and sent for approval by the
"automation" account, with the rule that fired and the numbers it saw on the timeline. The
incident's approval policy decides the rest: where it needs approvers (a P0, a P1), the
request waits for them on the dashboard like any other, and they are e-mailed (one
message each) since nobody at the console asked them; where it needs none and the policy
says `start`, the run starts. Every outcome, acted on or not, is one line in the log; only
what is done goes on the timeline.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.mail import send_mass_mail
from django.db import transaction
from django.utils import timezone

from console.celery import app
from incidents.decisions.forms import SignalsForm
from incidents.decisions.readings import signals_read
from incidents.decisions.rules import decide, thresholds
from incidents.errors import DomainError
from incidents.models import Incident, Release, Service, Severity, TimelineKind
from incidents.roles import COMMAND_PERMISSION, INCIDENT_COMMANDER, require_role
from incidents.timeline import timeline_append
from rollbacks.models import Run, RunState
from rollbacks.services import StepSpec, run_confirm_and_start, run_create, run_request_approval
from rollbacks.services.releases import release_latest_known_good

logger = logging.getLogger(__name__)

AUTOMATION_USERNAME = "automation"
ACTIVE = (RunState.DRAFT, RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.RUNNING)


def clean_policy(policy: Any) -> dict[str, Any]:
    """A policy as a service keeps it; ValueError naming the field otherwise."""
    if not isinstance(policy, dict):
        raise ValueError("auto_rollback: a JSON object")
    severities = policy.get("severities", [])
    if not isinstance(severities, list) or not set(severities) <= set(Severity.values):
        raise ValueError(f"auto_rollback.severities: some of {', '.join(Severity.values)}")
    hours = policy.get("max_release_age_hours", 6)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 24 * 30:
        raise ValueError("auto_rollback.max_release_age_hours: a whole number of 1 to 720")
    return {
        "enabled": bool(policy.get("enabled", False)),
        "severities": sorted(set(severities)),
        "max_release_age_hours": hours,
        "start": bool(policy.get("start", False)),
    }


def auto_rollback_set(*, service: Service, policy: Any, actor: User) -> Service:
    """Set a service's automatic rollback policy (a commander's decision)."""
    require_role(actor, COMMAND_PERMISSION, "set automatic rollback policies")
    try:
        cleaned = clean_policy(policy)
    except ValueError as error:
        raise DomainError(str(error)) from error
    with transaction.atomic():
        locked = Service.objects.select_for_update().get(pk=service.pk)
        locked.auto_rollback = cleaned
        locked.save(update_fields=["auto_rollback"])
    logger.info("%s set the automatic rollback policy of %s: %s", actor, service.name, cleaned)
    return locked


def automation_user() -> User:
    """The account automatic actions are taken as: an Incident Commander nobody signs in as."""
    user, created = User.objects.get_or_create(
        username=AUTOMATION_USERNAME, defaults={"first_name": "Backout", "last_name": "automation"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    group = Group.objects.filter(name=INCIDENT_COMMANDER).first()
    if group is not None and not user.groups.filter(pk=group.pk).exists():
        user.groups.add(group)
    return user


@app.task(name="rollbacks.tasks.auto_rollback_consider", ignore_result=True)
def auto_rollback_task(incident_id: int, service_id: int) -> None:
    """An alert fired for a service in an incident: act as its policy says, on a worker."""
    outcome = auto_rollback_consider(incident_id, service_id)
    logger.info("automatic rollback, incident %s service %s: %s", incident_id, service_id, outcome)


def auto_rollback_enqueue(incident_id: int, service_id: int, **kwargs: Any) -> None:
    """alert_fired receiver: consider it on a worker, never in the webhook's request."""
    auto_rollback_task.delay(incident_id, service_id)


def auto_rollback_consider(incident_id: int, service_id: int) -> str:
    """Act on an alert for `service_id` in `incident_id` as its policy says; what happened."""
    incident = Incident.objects.filter(pk=incident_id).first()
    service = Service.objects.filter(pk=service_id).first()
    if incident is None or service is None or not incident.is_open:
        return "gone"
    try:
        policy = clean_policy(service.auto_rollback or {})
    except ValueError as error:
        logger.warning("%s: automatic rollback policy ignored: %s", service.name, error)
        return "bad policy"
    if not policy["enabled"]:
        return "no policy"
    if incident.severity not in policy["severities"]:
        return f"severity {incident.severity} not in the policy"
    reading = signals_read([service], watch_level=thresholds().error_rate_watch)
    form = SignalsForm({key: str(value) for key, value in reading.initial().items()})
    if not reading.values or not form.is_valid():
        return "no signals"
    decision = decide(form.signals(), incident)
    if decision.verdict != "roll back":
        return f"helper says {decision.verdict}"
    newest = Release.objects.filter(service=service).order_by("-shipped_at", "-id").first()
    age_limit = timedelta(hours=policy["max_release_age_hours"])
    if newest is None or timezone.now() - newest.shipped_at > age_limit:
        return "the live release is older than the policy's limit"
    good = release_latest_known_good(service)
    if good is None or good.pk == newest.pk:
        return "no known-good release to go back to"
    signals = form.signals().as_payload()
    rule_reason = (decision.rule, decision.reason)
    return act(incident, service, good, rule_reason, reading.values, signals, policy)


def act(
    incident: Incident,
    service: Service,
    good: Release,
    rule_reason: tuple[str, str],
    values: dict[str, float],
    signals: dict[str, Any],
    policy: dict[str, Any],
) -> str:
    actor, (rule, reason) = automation_user(), rule_reason
    numbers = ", ".join(f"{key} {value:g}" for key, value in sorted(values.items()))
    why = f"Automatic rollback of {service.name} to {good.version}: rule {rule}. {reason}"
    with transaction.atomic():
        # Alerts for one incident arrive together: the check and the draft hold its row.
        Incident.objects.select_for_update().filter(pk=incident.pk).first()
        if Run.objects.filter(incident=incident, state__in=ACTIVE, steps__service=service).exists():
            return "a rollback is already under way"
        run = run_create(
            incident=incident,
            steps=[StepSpec(service=service, release=good)],
            actor=actor,
            reason=why[:2000],
        )
        timeline_append(
            incident=incident,
            kind=TimelineKind.DECISION,
            body=f"{why} (signals read: {numbers}; policy: "
            f"{', '.join(policy['severities'])}, release younger than "
            f"{policy['max_release_age_hours']} h)"[:5000],
            actor=actor,
            # The decision helper's own shape (its panel shows and refills from it), and
            # what the automation adds: the values read and the run it drafted.
            payload={
                "verdict": "roll back",
                "reason": reason,
                "rule": rule,
                "severity": incident.severity,
                "signals": signals,
                "automatic": True,
                "read": values,
                "run": run.pk,
            },
        )
    try:
        run = run_request_approval(run=run, actor=actor, reason="automatic rollback")
    except DomainError as error:
        logger.warning("automatic rollback #%s not sent for approval: %s", run.pk, error)
        return "drafted"
    if run.state == RunState.AWAITING_APPROVAL:
        approvers_ask(run, why)
    if run.state != RunState.APPROVED or not policy["start"]:
        return "awaiting approval" if run.state == RunState.AWAITING_APPROVAL else "approved"
    run_confirm_and_start(run=run, actor=actor, confirmation=run.expected_confirmation())
    return "started"


def approvers_ask(run: Run, why: str) -> int:
    """E-mail the people who can give the approvals an automatic rollback waits for (the
    active members, with an address, of the capacities its request names): nobody is at
    the console to ask them. Returns how many were written to; a failure is logged."""
    request = run.approval_request
    roles = list(request.required_roles) if request is not None else []
    people = (
        User.objects.filter(is_active=True, groups__name__in=roles)
        .exclude(email="")
        .exclude(username=AUTOMATION_USERNAME)
        .distinct()
        .order_by("pk")
    )
    addresses = [person.email for person in people]
    if not addresses:
        logger.warning("automatic rollback #%s: no approver of %s has an e-mail", run.pk, roles)
        return 0
    room = f"{settings.CONSOLE_BASE_URL.rstrip('/')}/incidents/{run.incident_id}/"
    body = (
        f"{why}\n\nIt waits for approval as {', '.join(roles)}. Approve or reject it in the "
        f"incident's room: {room}\n\nIncident #{run.incident_id}: {run.incident.title}"
    )
    try:
        send_mass_mail(
            [
                (
                    f"[Backout] Approval needed: automatic rollback #{run.pk}, "
                    f"incident #{run.incident_id}",
                    body,
                    settings.COMMS_EMAIL_FROM or settings.DEFAULT_FROM_EMAIL,
                    [address],
                )
                for address in addresses
            ]
        )
    except Exception:
        logger.exception("automatic rollback #%s: writing to its approvers failed", run.pk)
        return 0
    return len(addresses)
