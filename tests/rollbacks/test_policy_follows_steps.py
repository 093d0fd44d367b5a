"""The approval policy follows what a plan's steps do, not only the scenario picked: a plan
that restores a database needs the DBA, and counts as a data restore for the CTO."""

from __future__ import annotations

import pytest
from django.urls import reverse

import rollbacks.services
from incidents.errors import DomainError
from rollbacks.approvals import approval_decide, plan_restoring, policy_reasons
from rollbacks.models import ApprovalPolicy, ApprovalRequest, RunState
from rollbacks.services import StepSpec
from tests.factories import ServiceFactory, UserFactory
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory

pytestmark = pytest.mark.django_db

DBA_POLICY = "Database restores need a DBA"
CTO_POLICY = "Data corruption needs the CTO"


@pytest.fixture
def database(settings, moto_server):
    settings.AWS_ENDPOINT_URL = moto_server.url  # live reads fail fast: nothing is seeded
    return ServiceFactory(
        name="orders-db",
        backend="database",
        target_config={"source_instance": "orders", "mode": "point_in_time", "secret": "db"},
    )


def draft(commander, *services, severity="P3", scenario="any"):
    # A snapshot restore naming no snapshot asks nothing of RDS until it is planned.
    steps = [
        StepSpec(service=service, params={"method": "snapshot"})
        if service.backend == "database"
        else StepSpec(service=service, previous=True)
        for service in services
    ]
    return rollbacks.services.run_create(
        incident=IncidentFactory(severity=severity),
        steps=steps,
        actor=commander,
        scenario=scenario,
    )


def test_the_dba_policy_is_there_from_the_start():
    policy = ApprovalPolicy.objects.get(name=DBA_POLICY)
    assert policy.restores_data and policy.required_roles == ["DBA"] and not policy.severities


def test_a_database_restore_needs_the_dba_and_the_cto_whatever_the_scenario(commander, database):
    web = KubeServiceFactory(name="web")
    run = draft(commander, web, database)
    assert plan_restoring(run) == ["orders-db"]

    asked = rollbacks.services.run_request_approval(run=run, actor=commander)

    assert asked.state == RunState.AWAITING_APPROVAL
    request = ApprovalRequest.objects.get(pk=asked.approval_request_id)
    assert request.required_roles == ["CTO", "DBA"]  # policies in name order
    assert request.reasons == [
        {"role": "CTO", "policy": CTO_POLICY, "why": "orders-db restores data: a data restore"},
        {"role": "DBA", "policy": DBA_POLICY, "why": "orders-db restores data"},
    ]
    entry = asked.incident.timeline.last()
    assert "awaits approval from CTO (Data corruption needs the CTO: orders-db" in entry.body
    assert "DBA (Database restores need a DBA: orders-db restores data)" in entry.body


def test_a_plan_that_restores_nothing_keeps_the_severity_policy(commander):
    run = draft(commander, KubeServiceFactory(name="web"), severity="P3")
    assert rollbacks.services.run_request_approval(run=run, actor=commander).state == "approved"
    p1 = draft(commander, KubeServiceFactory(name="api"), severity="P1")
    roles = [reason["role"] for reason in policy_reasons(severity="P1", scenario="any")]
    assert roles == ["On-call", "Engineering Lead"]
    assert rollbacks.services.run_request_approval(run=p1, actor=commander).state == (
        "awaiting_approval"
    )


def test_the_room_shows_the_policy_before_approval_is_asked(client, commander, database):
    client.force_login(commander)
    run = draft(commander, database)
    page = client.get(reverse("incident_room", args=[run.incident_id])).content.decode()
    assert "Approval needed: <strong>CTO</strong>" in page
    assert (
        f'<strong>DBA</strong> <span class="quiet">({DBA_POLICY}: orders-db restores data)' in page
    )

    plain = draft(commander, KubeServiceFactory(name="web"))
    page = client.get(reverse("incident_room", args=[plain.incident_id])).content.decode()
    assert "No approval needed: no policy applies to this plan." in page


def test_starting_checks_the_step_policy_again(commander, database, roles):
    """A request approved before the DBA policy existed does not start a database restore."""
    ApprovalPolicy.objects.filter(name=DBA_POLICY).update(active=False)
    ApprovalPolicy.objects.filter(name=CTO_POLICY).update(active=False)
    run = rollbacks.services.run_request_approval(run=draft(commander, database), actor=commander)
    assert run.state == RunState.APPROVED  # nothing applied then
    ApprovalPolicy.objects.filter(name=DBA_POLICY).update(active=True)
    with pytest.raises(DomainError, match="also needs approval from DBA"):
        rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation="orders-db", enqueue=False
        )


def test_the_dba_approves_and_the_run_is_approved(commander, database, roles):
    ApprovalPolicy.objects.filter(name=CTO_POLICY).update(active=False)
    run = rollbacks.services.run_request_approval(run=draft(commander, database), actor=commander)
    dba = UserFactory(username="dana", roles=["Approver", "DBA"])
    approval_decide(request=run.approval_request, approver=dba, decision="approve", role="DBA")
    run.refresh_from_db()
    assert run.state == RunState.APPROVED


def test_a_policy_that_only_restores_data_needs_a_restoring_plan():
    policy = ApprovalPolicy(name="x", required_roles=["DBA"], restores_data=True)
    assert not policy.applies_to(severity="P1", scenario="any")
    assert not policy.applies_to(severity="P1", scenario="data_corruption")
    assert policy.applies_to(severity="P4", scenario="security_breach", restores_data=True)
