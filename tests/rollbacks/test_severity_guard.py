"""The approval bypass by severity: a P1 lowered to P3 while its plan waited would have been
approved by nobody and run. Lowering is refused while a plan or a request waits under the
higher severity's policy, and only the incident's own commander may lower it; raising is
always open, and a plan started before a raise is not stopped by it."""

from __future__ import annotations

import pytest
from django.urls import reverse

import rollbacks.services
from incidents.errors import DomainError
from incidents.models import Incident
from incidents.services import incident_change_severity
from rollbacks.approvals import approval_request_open
from rollbacks.models import RunState
from rollbacks.services import StepSpec
from tests.factories import UserFactory
from tests.rollbacks.engine_factories import IncidentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def p1(commander) -> Incident:
    return IncidentFactory(severity="P1", commander=commander)


def draft(commander, incident, service):
    return rollbacks.services.run_create(
        incident=incident, steps=[StepSpec(service=service, previous=True)], actor=commander
    )


@pytest.mark.parametrize("stage", ["draft", "awaiting", "approved"])
def test_lowering_is_refused_while_a_plan_waits(commander, kube_service, p1, stage, roles):
    run = draft(commander, p1, kube_service)
    if stage != "draft":
        run = rollbacks.services.run_request_approval(run=run, actor=commander)
    if stage == "approved":
        for role in ("On-call", "Engineering Lead"):
            approver = UserFactory(roles=["Approver", role])
            rollbacks.approvals.approval_decide(
                request=run.approval_request, approver=approver, decision="approve", role=role
            )
        run.refresh_from_db()
        assert run.state == RunState.APPROVED

    with pytest.raises(DomainError, match=f"Plan #{run.pk} is .* under the P1 approval policy"):
        incident_change_severity(incident=p1, severity="P3", actor=commander)
    p1.refresh_from_db()
    assert p1.severity == "P1"
    incident_change_severity(incident=p1, severity="P0", actor=commander)  # raising is fine

    rollbacks.services.run_cancel(run=run, actor=commander, reason="not this way")
    incident_change_severity(incident=p1, severity="P3", actor=commander)
    p1.refresh_from_db()
    assert p1.severity == "P3"


def test_the_bypass_no_longer_starts_a_run_without_approvers(commander, kube_service, p1):
    run = draft(commander, p1, kube_service)
    with pytest.raises(DomainError):
        incident_change_severity(incident=p1, severity="P3", actor=commander)
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    assert run.state == RunState.AWAITING_APPROVAL
    with pytest.raises(DomainError, match="not approved yet"):
        rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation="web", enqueue=False
        )


def test_a_pending_request_without_a_plan_also_holds_the_severity(commander, p1):
    approval_request_open(incident=p1, requested_by=commander, scenario="any", reason="bad")
    with pytest.raises(DomainError, match="withdraw it before lowering"):
        incident_change_severity(incident=p1, severity="P2", actor=commander)


def test_only_the_incidents_commander_lowers_it_and_anyone_raises_it(commander, p1, roles):
    other = UserFactory(roles=["Incident Commander"])
    with pytest.raises(DomainError, match=f"Only the incident's commander \\({commander}"):
        incident_change_severity(incident=p1, severity="P2", actor=other)
    incident_change_severity(incident=p1, severity="P0", actor=other)
    incident_change_severity(incident=p1, severity="P2", actor=commander)
    unowned = IncidentFactory(severity="P1")
    incident_change_severity(incident=unowned, severity="P3", actor=other)


def test_the_room_answers_400_with_the_reason(client, commander, kube_service, p1):
    run = draft(commander, p1, kube_service)
    client.force_login(commander)
    response = client.post(
        reverse("incident_severity", args=[p1.pk]), {"severity": "P3", "reason": "calmer"}
    )
    assert response.status_code == 400
    assert f"Plan #{run.pk} is draft under the P1 approval policy" in response.content.decode()
    p1.refresh_from_db()
    assert p1.severity == "P1"
