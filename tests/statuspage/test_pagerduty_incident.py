"""An incident resolved in the console resolves its PagerDuty alert, against the Events API
v2 stand-in on 127.0.0.1; Celery runs eagerly, through its own retry machinery."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from incidents import services
from incidents.models import IncidentStatus
from rollbacks.models import RunState
from statuspage import comms
from statuspage.models import Delivery
from tests.devinfra.hosted_pagerduty import ROUTING_KEY
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import RunFactory

pytestmark = pytest.mark.django_db


def _notice(capture, incident, *, kind="rollback_started", subject="Rollback #1 started", run=None):
    """A rollback notice on the internal channels (PagerDuty's among them), sent."""
    with capture(execute=True):
        comms.notice_create(
            incident=incident,
            kind=kind,
            dedupe_key=f"manual:{kind}",
            subject=subject,
            body="Steps",
            channels=comms.internal_channels(),
            run=run,
        )


def _triggered(capture, incident):
    _notice(capture, incident)


def _resolve(capture, incident):
    commander = UserFactory(roles=["Incident Commander"])
    with capture(execute=True):
        services.incident_change_status(
            incident=incident, to_status=IncidentStatus.RESOLVED, actor=commander
        )


def test_resolving_a_paged_incident_resolves_its_alert_once(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open(title="Checkout errors", severity="P1")
    _triggered(django_capture_on_commit_callbacks, incident)
    _resolve(django_capture_on_commit_callbacks, incident)

    [alert] = pagerduty.alerts
    assert (alert.dedup_key, alert.state) == (f"backout-incident-{incident.pk}", "resolved")
    actions = [r.body["event_action"] for r in pagerduty.calls("POST", "/v2/enqueue")]
    assert actions == ["trigger", "resolve"]


def test_resolving_an_incident_that_never_paged_sends_nothing(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open(title="Quiet", severity="P2")
    _resolve(django_capture_on_commit_callbacks, incident)
    assert pagerduty.calls("POST", "/v2/enqueue") == []


def test_a_5xx_on_the_resolve_is_retried_and_the_key_never_recorded(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open(title="Checkout errors", severity="P1")
    _triggered(django_capture_on_commit_callbacks, incident)
    pagerduty.fail_next(503, 1)
    _resolve(django_capture_on_commit_callbacks, incident)

    delivery = Delivery.objects.order_by("pk").last()
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    assert pagerduty.alerts[0].state == "resolved"
    recorded = json.dumps(
        [[e.body, e.payload] for e in incident.timeline.all()]
        + list(Delivery.objects.values_list("last_error", flat=True)),
        default=str,
    )
    assert ROUTING_KEY not in recorded


def test_resolving_in_the_browser_resolves_the_alert(
    pagerduty, client, django_capture_on_commit_callbacks
):
    incident = incident_open(title="Checkout errors", severity="P1")
    _triggered(django_capture_on_commit_callbacks, incident)
    client.force_login(UserFactory(roles=["Incident Commander"]))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("incident_status", args=[incident.pk]),
            {"to_status": "resolved", "reason": "fixed by hand"},
        )
    assert response.status_code in (200, 302)
    assert pagerduty.alerts[0].state == "resolved"


def test_resolving_after_a_failed_run_sends_one_resolve_with_the_incidents_key(
    pagerduty, django_capture_on_commit_callbacks
):
    run = RunFactory(state=RunState.FAILED)
    incident = run.incident
    _notice(
        django_capture_on_commit_callbacks,
        incident,
        kind="rollback_finished",
        subject="Rollback #1 failed",
        run=run,
    )
    incident.refresh_from_db()
    if incident.status == IncidentStatus.MITIGATING:
        _change(django_capture_on_commit_callbacks, incident, IncidentStatus.MONITORING)
    _resolve(django_capture_on_commit_callbacks, incident)
    resolves = [
        r for r in pagerduty.calls("POST", "/v2/enqueue") if r.body["event_action"] == "resolve"
    ]
    assert [r.body["dedup_key"] for r in resolves] == [f"backout-incident-{incident.pk}"]
    assert pagerduty.alerts[0].state == "resolved"


def _change(capture, incident, status):
    with capture(execute=True):
        services.incident_change_status(
            incident=incident, to_status=status, actor=UserFactory(roles=["Incident Commander"])
        )
