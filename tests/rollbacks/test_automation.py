"""Automatic rollback, gated by policy: an alert for a service whose policy allows it, with
the helper saying roll back on signals read from a real Prometheus, drafts a rollback to the
known-good release as "automation" and sends it for approval; it starts by itself only where
the approval policy asks no approver and the service's policy says so."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from incidents.models import Release, TimelineKind
from rollbacks import automation
from rollbacks.automation import auto_rollback_consider, clean_policy
from rollbacks.models import ApprovalPolicy, Run, RunState
from tests.factories import UserFactory, incident_open
from tests.rollbacks.engine_factories import KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def error_rate(signals_exporter, signals_prometheus, settings):
    """Set the error rate (%) Prometheus reports for the service; returns its query."""
    settings.PROMETHEUS_URL = signals_prometheus.url
    name = f"errors_{uuid.uuid4().hex[:10]}"

    def set_to(percent: float) -> str:
        signals_exporter.set(name, percent, {"service": "web"})
        signals_prometheus.wait_for_value(f'{name}{{service="web"}}', percent)
        return f'{name}{{service="web"}}'

    return set_to


@pytest.fixture
def web(kube, engine_settings, roles):
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    now = timezone.now()
    Release.objects.create(
        service=service,
        version="v1",
        artifact="registry.local/web:v1",
        shipped_at=now - timedelta(days=2),
        known_good=True,
        known_good_at=now - timedelta(days=1),
    )
    Release.objects.create(
        service=service,
        version="v2",
        artifact="registry.local/web:v2",
        shipped_at=now - timedelta(hours=1),
    )
    return service


def policy(service, **changes):
    service.auto_rollback = {"enabled": True, "severities": ["P2"], "max_release_age_hours": 6}
    service.auto_rollback.update(changes)
    service.save()


def test_an_alert_drafts_a_rollback_to_known_good_and_asks_for_approval(web, error_rate):
    web.signal_queries = {"error_rate": error_rate(31.0)}
    policy(web)
    incident = incident_open(services=[web], severity="P2")
    ApprovalPolicy.objects.create(name="p2", severities=["P2"], required_roles=["On-call"])
    UserFactory(roles=["On-call"], email="oncall@corp.example")
    UserFactory(roles=["On-call"], email="陈@corp.example")
    UserFactory(roles=["On-call"], email="")
    UserFactory(roles=["On-call"], email="gone@corp.example", is_active=False)
    UserFactory(roles=["Responder"], email="responder@corp.example")

    assert auto_rollback_consider(incident.pk, web.pk) == "awaiting approval"
    run = Run.objects.get()
    assert run.created_by.username == "automation" and run.state == RunState.AWAITING_APPROVAL
    assert run.steps.get().to_version == "v1"
    decision = incident.timeline.get(kind=TimelineKind.DECISION)
    assert (
        decision.payload["automatic"] is True and decision.payload["rule"] == "error-rate-critical"
    )
    assert "error_rate 31" in decision.body and "rule error-rate-critical" in decision.body
    # In the decision helper's shape: its panel shows the verdict and refills the signals.
    assert decision.payload["verdict"] == "roll back" and decision.payload["severity"] == "P2"
    assert decision.payload["signals"]["error_rate"] == 31.0
    assert decision.payload["read"] == {"error_rate": 31.0}
    # The approvers are written to: nobody at the console asked them.
    assert [message.to for message in mail.outbox] == [["oncall@corp.example"], ["陈@corp.example"]]
    assert f"/incidents/{incident.pk}/" in mail.outbox[0].body
    assert "rule error-rate-critical" in mail.outbox[0].body
    # A second alert for the same service finds the rollback under way.
    assert auto_rollback_consider(incident.pk, web.pk) == "a rollback is already under way"
    assert Run.objects.count() == 1


def test_where_no_approver_is_asked_and_the_policy_says_start_it_starts(web, error_rate):
    web.signal_queries = {"error_rate": error_rate(31.0)}
    policy(web, start=True)
    incident = incident_open(services=[web], severity="P2")
    assert auto_rollback_consider(incident.pk, web.pk) == "started"
    run = Run.objects.get()
    assert run.state == RunState.RUNNING and run.confirmed_by.username == "automation"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no policy", "no policy"),
        ("other severity", "severity P2 not in the policy"),
        ("healthy", "helper says"),
        ("old release", "older than the policy's limit"),
        ("no known-good", "no known-good release"),
        ("no signals", "no signals"),
    ],
)
def test_nothing_is_done_unless_everything_the_policy_asks_holds(web, error_rate, case, says):
    web.signal_queries = {"error_rate": error_rate(0.4 if case == "healthy" else 31.0)}
    policy(web, severities=["P1"] if case == "other severity" else ["P2"])
    if case == "no policy":
        web.auto_rollback = {}
        web.save()
    if case == "old release":
        Release.objects.filter(version="v2").update(shipped_at=timezone.now() - timedelta(days=1))
    if case == "no known-good":
        Release.objects.update(known_good=False, known_good_at=None)
    if case == "no signals":
        web.signal_queries = {}
        web.save()
    incident = incident_open(services=[web], severity="P2")
    assert says in auto_rollback_consider(incident.pk, web.pk)
    assert not Run.objects.exists()
    assert not incident.timeline.filter(kind=TimelineKind.DECISION).exists()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"severities": ["P9"]}, "severities"),
        ({"max_release_age_hours": 0}, "max_release_age_hours"),
        ({"max_release_age_hours": "6"}, "max_release_age_hours"),
        ([], "a JSON object"),
    ],
)
def test_a_malformed_policy_is_refused_naming_the_field(given, says):
    with pytest.raises(ValueError, match=says):
        clean_policy(given)


def test_a_commander_sets_the_policy_on_the_service_page(client, web):
    from django.urls import reverse

    from tests.factories import UserFactory

    url = reverse("service_releases", args=[web.pk])
    data = {
        "action": "auto_rollback",
        "enabled": "on",
        "severities": ["P1", "P2"],
        "max_release_age_hours": "4",
    }
    client.force_login(UserFactory(roles=["Responder"]))
    assert client.post(url, data).status_code == 403
    client.force_login(UserFactory(roles=["Incident Commander"]))
    assert client.post(url, data).status_code == 302
    web.refresh_from_db()
    assert web.auto_rollback == {
        "enabled": True,
        "severities": ["P1", "P2"],
        "max_release_age_hours": 4,
        "start": False,
    }
    refused = client.post(url, {**data, "max_release_age_hours": "0"})
    assert refused.status_code == 400 and b"younger than (h)" in refused.content
    assert "Roll back automatically on alerts" in client.get(url).content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_alerts_considered_at_once_draft_one_rollback(web, error_rate, monkeypatch):
    web.signal_queries = {"error_rate": error_rate(31.0)}
    policy(web)
    incident = incident_open(services=[web], severity="P2")
    meet, create = threading.Barrier(2, timeout=1), automation.run_create

    def create_together(**kwargs):
        # A worker queued behind the incident's lock never arrives: go on alone.
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return create(**kwargs)

    monkeypatch.setattr(automation, "run_create", create_together)
    said: list[str] = []

    def consider() -> None:
        try:
            said.append(auto_rollback_consider(incident.pk, web.pk))
        finally:
            connection.close()

    workers = [threading.Thread(target=consider) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(said) == ["a rollback is already under way", "approved"]
    assert Run.objects.count() == 1
