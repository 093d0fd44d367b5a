import pytest
from django.db import IntegrityError, InternalError, transaction

from incidents.errors import DomainError
from incidents.models import TimelineKind
from rollbacks.approvals import approval_decide, approval_request_open, required_roles_for
from rollbacks.models import Approval, ApprovalRequestStatus
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def commander(roles):
    return UserFactory(roles=["Incident Commander", "Approver", "Engineering Lead"])


def _request(commander, severity="P1", scenario="any"):
    incident = incident_open(severity=severity)
    return approval_request_open(
        incident=incident,
        requested_by=commander,
        scenario=scenario,
        reason="v1.5.0 breaks checkout",
    )


@pytest.mark.parametrize(
    ("severity", "scenario", "roles_needed"),
    [
        ("P0", "any", ["On-call", "Engineering Lead"]),
        ("P1", "any", ["On-call", "Engineering Lead"]),
        ("P2", "any", []),
        ("P2", "data_corruption", ["CTO"]),
        ("P3", "security_breach", ["CTO", "Security Lead"]),
        ("P0", "security_breach", ["On-call", "Engineering Lead", "CTO", "Security Lead"]),
    ],
)
def test_default_policies_require_roles_by_severity_and_scenario(severity, scenario, roles_needed):
    needed = required_roles_for(severity=severity, scenario=scenario)
    assert sorted(needed) == sorted(roles_needed)


def test_request_with_no_matching_policy_is_approved_at_once(commander):
    request = _request(commander, severity="P3")
    assert request.status == ApprovalRequestStatus.APPROVED


def test_approver_cannot_approve_own_request(commander):
    request = _request(commander)
    with pytest.raises(DomainError, match="someone else must approve"):
        approval_decide(request=request, approver=commander, decision="approve")
    assert not request.approvals.exists()


def test_database_refuses_an_approval_by_the_requester(commander):
    request = _request(commander)
    with pytest.raises((IntegrityError, InternalError), match="requester"), transaction.atomic():
        Approval.objects.create(
            request=request, approver=commander, role="Engineering Lead", decision="approve"
        )


def test_request_is_approved_once_every_required_role_has_approved(commander):
    request = _request(commander)
    on_call = UserFactory(roles=["Approver", "On-call"])
    lead = UserFactory(roles=["Approver", "Engineering Lead"])
    request = approval_decide(request=request, approver=on_call, decision="approve")
    assert request.status == ApprovalRequestStatus.PENDING
    assert request.missing_roles() == ["Engineering Lead"]
    request = approval_decide(request=request, approver=lead, decision="approve")
    assert request.status == ApprovalRequestStatus.APPROVED
    assert request.decided_at is not None


def test_one_rejection_rejects_the_request(commander):
    request = _request(commander)
    on_call = UserFactory(roles=["Approver", "On-call"])
    request = approval_decide(
        request=request, approver=on_call, decision="reject", comment="try the flag first"
    )
    assert request.status == ApprovalRequestStatus.REJECTED


def test_approver_without_a_needed_role_is_refused(commander):
    request = _request(commander)
    dba = UserFactory(roles=["Approver", "DBA"])
    with pytest.raises(DomainError, match="None of the roles"):
        approval_decide(request=request, approver=dba, decision="approve")


def test_one_person_cannot_cover_two_roles(commander):
    request = _request(commander)
    both = UserFactory(roles=["Approver", "On-call", "Engineering Lead"])
    approval_decide(request=request, approver=both, decision="approve")
    with pytest.raises(DomainError, match="already decided"):
        approval_decide(request=request, approver=both, decision="approve")


def test_decisions_are_written_to_the_timeline(commander):
    request = _request(commander)
    on_call = UserFactory(roles=["Approver", "On-call"])
    approval_decide(request=request, approver=on_call, decision="approve")
    entries = request.incident.timeline.filter(kind=TimelineKind.APPROVAL).order_by("id")
    assert [e.payload.get("status") for e in entries] == ["pending", "pending"]
    assert entries.last().actor == on_call


def test_only_one_pending_request_per_incident(commander):
    request = _request(commander)
    with pytest.raises(DomainError, match="already pending"):
        approval_request_open(
            incident=request.incident, requested_by=commander, scenario="any", reason="again"
        )
