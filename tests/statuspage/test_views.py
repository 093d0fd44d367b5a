"""The status desk's views: every role against every view, refusals as 4xx with a message,
the 409 conflict that shows both texts, and the live preview."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.services import incident_change_status
from statuspage import comms, services
from statuspage.models import Delivery, Draft, Notice, Revision
from tests.factories import UserFactory, incident_open
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]
EVERYONE = set(ROLES)
SUPPORT = {"Support Lead"}
TOKEN = "0f8fad5b-d9cb-469f-a165-70867728950e"  # the customer notice form's token


class World:
    """A 45-minute outage with one published revision and one failed delivery."""

    def __init__(self) -> None:
        now = timezone.now()
        self.lead = UserFactory(username="lead-of-record", roles=["Support Lead"])
        self.incident = incident_open(
            started_at=now - timedelta(minutes=45), detected_at=now - timedelta(minutes=40)
        )
        self.revision = services.draft_publish(
            incident=self.incident,
            actor=self.lead,
            version=0,
            name="Checkout",
            status="investigating",
            impact="minor",
            body="Looking into it.",
            component_statuses={},
        )
        notice = Notice.objects.create(
            incident=self.incident, kind="rollback_started", dedupe_key="x", subject="s", body="b"
        )
        self.delivery = Delivery.objects.create(
            notice=notice, channel="email", state="failed", attempts=6, last_error="refused"
        )


@dataclass
class Case:
    name: str
    allowed: set[str]
    request: Callable[[World], tuple[str, str, dict[str, Any]]]

    def __str__(self) -> str:
        return self.name


def _url(name: str, **extra: Any) -> Callable[[World], str]:
    return lambda w: reverse(name, kwargs={"incident_id": w.incident.pk, **extra})


DRAFT = {"version": 1, "name": "Checkout", "status": "identified", "impact": "minor", "body": "x"}

CASES = [
    Case("status_desk", EVERYONE, lambda w: ("get", _url("status_desk")(w), {})),
    Case("status_draft_save", SUPPORT, lambda w: ("post", _url("status_draft")(w), DRAFT)),
    Case(
        "status_draft_publish",
        SUPPORT,
        lambda w: ("post", _url("status_draft")(w), DRAFT | {"action": "publish"}),
    ),
    Case(
        "status_preview", SUPPORT, lambda w: ("post", _url("status_preview")(w), {"body": "**b**"})
    ),
    Case(
        "status_draft_start",
        SUPPORT,
        lambda w: ("post", _url("status_draft_start")(w), {"version": 1}),
    ),
    Case(
        "status_revision_restore",
        SUPPORT,
        lambda w: (
            "post",
            _url("status_revision_restore", revision_id=w.revision.pk)(w),
            {"version": 1},
        ),
    ),
    Case(
        "status_customer_notice",
        SUPPORT,
        lambda w: (
            "post",
            _url("status_customer_notice")(w),
            {
                "recipients": "a@example.com",
                "subject": "s",
                "body": "b",
                "confirm": "on",
                "token": TOKEN,
            },
        ),
    ),
    Case(
        "status_delivery_retry",
        SUPPORT,
        lambda w: ("post", _url("status_delivery_retry", delivery_id=w.delivery.pk)(w), {}),
    ),
]


def _prepare(case: Case, client: Any, role: str | None) -> tuple[str, str, dict[str, Any]]:
    world = World()
    if role is not None:
        client.force_login(UserFactory(roles=[role]))
    return case.request(world)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    assert_sent_to_login(client, *_prepare(case, client, None))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_role_reaches_exactly_the_views_it_is_allowed(client, roles, case, role):
    method, url, data = _prepare(case, client, role)
    assert_reached_only_if_allowed(client, method, url, data, allowed=role in case.allowed)


def test_the_desk_shows_draft_revisions_and_notices(client, roles):
    world = World()
    client.force_login(world.lead)
    page = client.get(reverse("status_desk", args=[world.incident.pk])).content.decode()
    assert 'id="draft-form"' in page
    assert "Revision 1" in page
    assert "refused" in page and ">Retry<" in page
    assert "Send to customers" in page


def test_the_room_links_to_the_desk(client, roles):
    world = World()
    client.force_login(world.lead)
    page = client.get(reverse("incident_room", args=[world.incident.pk])).content.decode()
    assert reverse("status_desk", args=[world.incident.pk]) in page


def test_a_stale_save_answers_409_with_both_texts_and_changes_nothing(client, roles):
    world = World()
    other = UserFactory(username="alex", roles=["Support Lead"])
    services.draft_save(
        incident=world.incident,
        actor=other,
        version=1,
        name="Checkout",
        status="identified",
        impact="minor",
        body="Alex: cause found in the payment service.",
        component_statuses={},
    )
    client.force_login(world.lead)
    response = client.post(
        reverse("status_draft", args=[world.incident.pk]),
        DRAFT | {"body": "Sam: still investigating, sorry.", "action": "publish"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert "alex saved this draft" in page
    assert "Alex: cause found in the payment service." in page  # theirs, in the conflict panel
    assert "Sam: still investigating, sorry." in page  # yours, still in the editor
    assert 'name="version" value="2"' in page
    assert Draft.objects.get(incident=world.incident).body.startswith("Alex")
    assert Revision.objects.count() == 1


def test_invalid_draft_input_answers_400_with_a_message_and_saves_nothing(client, roles):
    world = World()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_draft", args=[world.incident.pk]),
        DRAFT | {"status": "on-fire", "name": ""},
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert Draft.objects.get(incident=world.incident).version == 1


def test_publishing_an_empty_update_answers_400(client, roles):
    world = World()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_draft", args=[world.incident.pk]),
        DRAFT | {"body": "", "action": "publish"},
    )
    assert response.status_code == 400
    assert "Write the update before publishing it." in response.content.decode()
    assert Revision.objects.count() == 1


def test_the_preview_renders_sanitised_markdown(client, roles):
    world = World()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_preview", args=[world.incident.pk]),
        {"name": "Checkout", "status": "identified", "body": "**fixed** <script>x()</script>"},
        headers={"HX-Request": "true"},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "<strong>fixed</strong>" in page and "<script>x()" not in page
    assert 'id="preview"' in page and "<html" not in page


def test_a_customer_notice_without_confirmation_answers_400(client, roles):
    world = World()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_customer_notice", args=[world.incident.pk]),
        {"recipients": "a@example.com", "subject": "s", "body": "b", "token": TOKEN},
    )
    assert response.status_code == 400
    assert "Confirm that the notice is ready" in response.content.decode()
    assert not Notice.objects.filter(kind="customer").exists()


def test_bad_recipient_addresses_answer_400(client, roles):
    world = World()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_customer_notice", args=[world.incident.pk]),
        {
            "recipients": "a@example.com, not-an-address",
            "subject": "s",
            "body": "b",
            "confirm": "on",
            "token": TOKEN,
        },
    )
    assert response.status_code == 400
    assert "not-an-address is not an email address." in response.content.decode()


def test_a_customer_notice_submitted_twice_is_sent_once(client, roles):
    world = World()
    client.force_login(world.lead)
    url = reverse("status_customer_notice", args=[world.incident.pk])
    form = {"recipients": "a@example.com", "subject": "s", "body": "b", "confirm": "on"}
    first = client.post(url, {**form, "token": TOKEN})
    again = client.post(url, {**form, "token": TOKEN})
    assert first.status_code in (200, 302)
    assert again.status_code == 400
    assert "sent already" in again.content.decode()
    assert Notice.objects.filter(kind="customer").count() == 1


def test_a_revision_of_another_incident_cannot_be_restored(client, roles):
    world = World()
    other = incident_open()
    client.force_login(world.lead)
    response = client.post(
        reverse("status_revision_restore", args=[other.pk, world.revision.pk]), {"version": 0}
    )
    assert response.status_code == 404


def test_a_delivery_being_retried_cannot_be_retried_again(client, roles):
    world = World()
    Delivery.objects.filter(pk=world.delivery.pk).update(will_retry=True)
    client.force_login(world.lead)
    response = client.post(
        reverse("status_delivery_retry", args=[world.incident.pk, world.delivery.pk])
    )
    assert response.status_code == 400
    assert "already being retried" in response.content.decode()


def test_the_desk_shows_the_update_due_banner_when_the_cadence_has_passed(client, roles, settings):
    world = World()
    commander = UserFactory(roles=["Incident Commander"])
    incident = incident_change_status(
        incident=world.incident, to_status="mitigating", actor=commander
    )
    settings.COMMS_CADENCE_MINUTES = 0
    assert comms.update_overdue_since(incident) is not None
    client.force_login(world.lead)
    page = client.get(reverse("status_desk", args=[world.incident.pk])).content.decode()
    assert 'id="cadence-due"' in page


@pytest.mark.parametrize(
    ("name", "extra", "data", "message"),
    [
        ("status_draft", {}, DRAFT | {"action": "delete"}, "Unknown action."),
        ("status_draft", {}, DRAFT | {"version": "two"}, "Enter a whole number."),
        ("status_preview", {}, {"status": "on-fire", "body": "x"}, "Select a valid choice"),
        ("status_draft_start", {}, {"version": 1, "status": "on-fire"}, "Select a valid choice"),
        ("status_draft_start", {}, {}, "This field is required."),
        ("status_revision_restore", {"revision": True}, {"version": "-1"}, "greater than or"),
    ],
    ids=["unknown-action", "bad-version", "preview", "start-status", "start-no-version", "restore"],
)
def test_malformed_desk_posts_answer_400_with_a_message(client, roles, name, extra, data, message):
    world = World()
    client.force_login(world.lead)
    kwargs = {"incident_id": world.incident.pk}
    if extra:
        kwargs["revision_id"] = world.revision.pk
    response = client.post(reverse(name, kwargs=kwargs), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Draft.objects.get(incident=world.incident).version == 1


@pytest.mark.parametrize("name", ["status_draft_start", "status_revision_restore"])
def test_starting_or_restoring_from_a_stale_version_answers_409_and_keeps_the_draft(
    client, roles, name
):
    world = World()
    client.force_login(world.lead)
    kwargs = {"incident_id": world.incident.pk}
    if name == "status_revision_restore":
        kwargs["revision_id"] = world.revision.pk
    response = client.post(reverse(name, kwargs=kwargs), {"version": 0})
    assert response.status_code == 409
    assert "lead-of-record saved this draft" in response.content.decode()
    assert Draft.objects.get(incident=world.incident).version == 1


def test_every_element_id_on_the_desk_is_unique(client, roles):
    import re
    from collections import Counter

    world = World()
    client.force_login(world.lead)
    page = client.get(reverse("status_desk", args=[world.incident.pk])).content.decode()
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    assert [name for name, count in ids.items() if count > 1] == []
    assert 'for="customer_body"' in page and 'id="customer_body"' in page
