"""Recovery figures across incidents, and the page that charts them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import Incident
from postmortems.selectors import recovery_overview
from rollbacks.models import RunState, StepState
from tests.factories import incident_open
from tests.postmortems.builders import resolved_incident
from tests.rollbacks.engine_factories import RunFactory, ServiceFactory, StepFactory

pytestmark = pytest.mark.django_db


def _steps(incident, backend, states, **run):
    service = ServiceFactory(backend=backend, target_config={})
    done = RunFactory(incident=incident, state=RunState.SUCCEEDED, **run)
    now = timezone.now()
    for position, state in enumerate(states, start=1):
        StepFactory(
            run=done,
            position=position,
            service=service,
            state=state,
            started_at=now,
            finished_at=now,
        )


def test_means_by_severity_cover_only_incidents_with_each_phase(ic):
    resolved_incident(by=ic, severity="P1")
    second = resolved_incident(by=ic, severity="P1")
    Incident.objects.filter(pk=second.pk).update(
        detected_at=second.started_at + timedelta(minutes=1)
    )
    incident_open(severity="P2")  # detected a few minutes after it started, nothing more
    overview = recovery_overview()
    p1, p2 = overview.by_severity[1], overview.by_severity[2]
    assert p1.incidents == 2 and p1.means["time_to_detect"] == timedelta(minutes=2)
    assert p1.means["total_recovery"] == timedelta(minutes=14)
    assert p2.incidents == 1 and p2.means["total_recovery"] is None
    assert overview.by_severity[0].incidents == 0


def test_means_by_service_group_incidents_by_each_service_they_name(ic):
    checkout, web = ServiceFactory(name="checkout"), ServiceFactory(name="web")
    first = resolved_incident(by=ic)
    first.services.set([checkout, web])
    resolved_incident(by=ic).services.set([checkout])
    rows = {row.group: row for row in recovery_overview().by_service}
    assert (rows["checkout"].incidents, rows["web"].incidents) == (2, 1)


def test_rollbacks_count_by_backend_and_outcome_leaving_out_drills_and_dry_runs(ic):
    incident = resolved_incident(by=ic)
    _steps(incident, "kubernetes", [StepState.SUCCEEDED, StepState.SUCCEEDED, StepState.FAILED])
    _steps(incident, "ecs", [StepState.SKIPPED])
    _steps(incident, "ecs", [StepState.SUCCEEDED], drill=True)
    _steps(incident, "dns", [StepState.SUCCEEDED], dry_run=True)
    rollbacks = recovery_overview().rollbacks
    assert rollbacks["kubernetes"]["succeeded"] == 2 and rollbacks["kubernetes"]["failed"] == 1
    assert rollbacks["ecs"] == {"succeeded": 0, "failed": 0, "skipped": 1, "cancelled": 0}
    assert "dns" not in rollbacks


def test_trend_lists_incidents_with_a_verified_recovery_in_detection_order(ic):
    older = resolved_incident(by=ic, title="older")
    Incident.objects.filter(pk=older.pk).update(
        started_at=older.started_at - timedelta(days=1),
        detected_at=older.detected_at - timedelta(days=1),
    )
    newer = resolved_incident(by=ic, title="newer")
    incident_open(title="still open")
    assert [point.incident_id for point in recovery_overview().trend] == [older.pk, newer.pk]


def test_range_and_environment_narrow_the_incidents(ic):
    old = resolved_incident(by=ic)
    Incident.objects.filter(pk=old.pk).update(
        started_at=old.started_at - timedelta(days=40),
        detected_at=old.detected_at - timedelta(days=40),
    )
    resolved_incident(by=ic, environment="staging")
    since = timezone.now() - timedelta(days=30)
    assert recovery_overview(since=since).incidents == 1
    assert recovery_overview(environment="production").incidents == 1


def test_the_metrics_page_charts_figures(client, ic):
    incident = resolved_incident(by=ic)
    _steps(incident, "kubernetes", [StepState.SUCCEEDED])
    client.force_login(ic)
    content = client.get(reverse("recovery_metrics")).content.decode()
    assert content.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    assert "<circle" in content
    assert "Kubernetes Deployment, Succeeded: 1 steps" in content
    assert "<td>Kubernetes Deployment</td><td>1</td>" in content


def test_the_metrics_page_renders_without_any_incident(client, ic):
    client.force_login(ic)
    response = client.get(reverse("recovery_metrics"))
    assert response.status_code == 200
    assert b"No incident has a verified recovery in this range." in response.content
    assert b"No rollback finished in this range." in response.content


@pytest.mark.parametrize("query", ["?days=7", "?environment=moon"])
def test_the_metrics_page_refuses_unknown_filters(client, ic, query):
    client.force_login(ic)
    response = client.get(reverse("recovery_metrics") + query)
    assert response.status_code == 400 and b"Choose days" in response.content


def test_the_metrics_page_reads_a_constant_number_of_queries(
    client, ic, django_assert_max_num_queries
):
    for _ in range(6):
        _steps(resolved_incident(by=ic), "ecs", [StepState.SUCCEEDED])
    client.force_login(ic)
    with django_assert_max_num_queries(12):
        client.get(reverse("recovery_metrics"))
