"""The rollback pages answered through the room: approvals, the dashboard's requests
awaiting approval, drafting a plan and starting it."""

import pytest
from django.urls import reverse
from django.utils import timezone

import rollbacks.services
from rollbacks.approvals import approval_request_open
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def commander(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander", "Approver", "On-call"])
    client.force_login(user)
    return user


def test_requester_approving_own_request_gets_the_two_person_message(client, commander):
    incident = incident_open(severity="P1")
    request = approval_request_open(
        incident=incident, requested_by=commander, scenario="any", reason="roll back web"
    )
    response = client.post(
        reverse("approval_decide", args=[incident.pk, request.pk]), {"decision": "approve"}
    )
    assert response.status_code == 400
    assert "someone else must approve" in response.content.decode()
    assert not request.approvals.exists()


def test_dashboard_shows_requests_awaiting_my_approval(client, roles):
    requester = UserFactory(roles=["Incident Commander"])
    approver = UserFactory(roles=["Approver", "Engineering Lead"])
    incident = incident_open(severity="P1", title="Login loop")
    approval_request_open(
        incident=incident, requested_by=requester, scenario="any", reason="roll back auth"
    )
    client.force_login(approver)
    page = client.get(reverse("dashboard")).content.decode()
    assert "Awaiting your approval" in page
    assert "Login loop" in page


@pytest.fixture
def flag_service():
    service = ServiceFactory(
        name="new-checkout",
        backend="feature_flag",
        target_config={"store": "redis", "flag": "new-checkout", "key_prefix": "test:flags:"},
    )
    ReleaseFactory(
        service=service,
        version="off",
        artifact="off",
        known_good=True,
        known_good_at=timezone.now(),
    )
    return service


def test_plan_without_any_target_is_refused(client, commander, flag_service):
    incident = incident_open(services=[flag_service])
    response = client.post(
        reverse("run_create", args=[incident.pk]), {"scenario": "any", "parallel": "on"}
    )
    assert response.status_code == 400
    assert "Choose a target for at least one service." in response.content.decode()
    assert not incident.runs.exists()


def test_plan_form_offers_the_known_good_release_for_affected_services(
    client, commander, flag_service
):
    incident = incident_open(services=[flag_service])
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert "selected>off (known-good)</option>" in page


def test_starting_with_the_wrong_confirmation_word_is_refused(client, commander, flag_service):
    incident = incident_open(services=[flag_service], severity="P3")
    release = flag_service.releases.get()
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[rollbacks.services.StepSpec(service=flag_service, release=release)],
        actor=commander,
    )
    rollbacks.services.run_request_approval(run=run, actor=commander)
    response = client.post(
        reverse("run_start", args=[incident.pk, run.pk]), {"confirmation": "yes"}, **HTMX
    )
    assert response.status_code == 400
    assert "Type new-checkout exactly" in response.content.decode()
    run.refresh_from_db()
    assert run.state == "approved"
