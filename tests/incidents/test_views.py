from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from devinfra.processes import free_port
from incidents import services
from incidents.models import Incident, TimelineKind
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def commander(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander", "Approver", "On-call"])
    client.force_login(user)
    return user


def _create_form(**overrides):
    data = {
        "title": "Checkout 500s after v2.4.0",
        "severity": "P1",
        "environment": "production",
        "rto_minutes": "15",
        "rpo_minutes": "5",
    }
    data.update(overrides)
    return data


def test_the_new_incident_form_labels_every_field(client, commander):
    ServiceFactory(name="checkout")
    page = client.get(reverse("incident_create")).content.decode()
    assert 'for=""' not in page
    assert "<legend>Services</legend>" in page  # a group of checkboxes is named by a legend
    assert '<label for="id_title">Title</label>' in page


def test_creating_an_incident_opens_its_room(client, commander):
    service = ServiceFactory(name="checkout")
    response = client.post(reverse("incident_create"), _create_form(services=[service.pk]))
    incident = Incident.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("incident_room", args=[incident.pk])
    assert incident.commander == commander
    assert list(incident.services.all()) == [service]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"title": ""}, "This field is required."),
        ({"severity": "P9"}, "Select a valid choice."),
        ({"rto_minutes": "0"}, "greater than or equal to 1"),
        ({"detected_at": "not a date"}, "Enter a valid date/time."),
        (
            {"detected_at": (timezone.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")},
            "cannot be in the future",
        ),
        (
            {
                "started_at": (timezone.now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
                "detected_at": (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"),
            },
            "Impact cannot start after it was detected.",
        ),
    ],
)
def test_bad_incident_form_answers_400_and_saves_nothing(client, commander, overrides, message):
    response = client.post(reverse("incident_create"), _create_form(**overrides))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Incident.objects.exists()


def test_incident_services_must_be_in_its_environment(client, commander):
    staging = ServiceFactory(name="web", environment="staging")
    response = client.post(reverse("incident_create"), _create_form(services=[staging.pk]))
    assert response.status_code == 400
    assert "Not in the production environment: web" in response.content.decode()


def test_room_shows_timeline_and_checklists(client, commander):
    incident = incident_open(title="Search latency doubled")
    response = client.get(reverse("incident_room", args=[incident.pk]))
    page = response.content.decode()
    assert "P2 incident opened: Search latency doubled" in page
    assert "Before rolling back" in page
    assert "Health endpoints answer with the rolled-back version" in page


def test_room_shows_no_template_comments_or_tags_as_text(client, commander):
    page = client.get(reverse("incident_room", args=[incident_open().pk])).content.decode()
    for leftover in ("{#", "#}", "{%", "%}", "{{", "}}"):
        assert leftover not in page


def test_refused_status_change_answers_400_with_the_reason(client, commander):
    incident = incident_open()
    before = incident.timeline.count()
    response = client.post(
        reverse("incident_status", args=[incident.pk]), {"to_status": "monitoring"}, **HTMX
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert incident.timeline.count() == before


def test_htmx_status_change_returns_the_refreshed_room(client, commander):
    incident = incident_open()
    response = client.post(
        reverse("incident_status", args=[incident.pk]), {"to_status": "identified"}, **HTMX
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="room"')
    assert "Investigating → Identified" in page


def test_empty_note_is_refused(client, commander):
    incident = incident_open()
    response = client.post(reverse("note_create", args=[incident.pk]), {"body": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not incident.timeline.filter(kind=TimelineKind.NOTE).exists()


def test_ticking_by_htmx_returns_the_item_with_who_ticked_it(client, commander):
    incident = incident_open()
    item = incident.checklists.first().items.first()
    response = client.post(
        reverse("checklist_item_toggle", args=[incident.pk, item.pk]), {"done": "1"}, **HTMX
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith(f'<li id="checklist-item-{item.pk}" class="done"')
    assert "by ic at" in page


def test_tick_with_a_bad_value_is_refused(client, commander):
    incident = incident_open()
    item = incident.checklists.first().items.first()
    response = client.post(
        reverse("checklist_item_toggle", args=[incident.pk, item.pk]), {"done": "maybe"}, **HTMX
    )
    assert response.status_code == 400
    item.refresh_from_db()
    assert item.done_at is None


def test_item_of_another_incident_is_not_found(client, commander):
    first, second = incident_open(), incident_open()
    item = first.checklists.first().items.first()
    response = client.post(
        reverse("checklist_item_toggle", args=[second.pk, item.pk]), {"done": "1"}
    )
    assert response.status_code == 404


def test_timeline_poll_returns_only_entries_after_the_given_one(client, commander):
    incident = incident_open()
    first = incident.timeline.get()
    note = services.note_add(incident=incident, author=commander, body="error rate 12%")
    response = client.get(reverse("incident_timeline", args=[incident.pk]), {"after": first.pk})
    page = response.content.decode()
    assert f'id="entry-{note.pk}"' in page
    assert f'id="entry-{first.pk}"' not in page


def test_timeline_poll_with_a_bad_cursor_is_refused(client, commander):
    incident = incident_open()
    response = client.get(reverse("incident_timeline", args=[incident.pk]), {"after": "x"})
    assert response.status_code == 400


def test_incident_list_filters_by_severity(client, commander):
    incident_open(title="Everything down", severity="P0")
    incident_open(title="Typo on pricing page", severity="P3")
    response = client.get(reverse("incident_list"), {"state": "open", "severity": "P0"})
    page = response.content.decode()
    assert "Everything down" in page
    assert "Typo on pricing page" not in page


def test_incident_list_with_an_unknown_filter_value_is_refused(client, commander):
    response = client.get(reverse("incident_list"), {"severity": "P7"})
    assert response.status_code == 400


def test_readiness_fails_with_503_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get(reverse("readyz"))
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_unknown_post_method_on_a_read_page_is_refused(client, commander):
    response = client.post(reverse("dashboard"))
    assert response.status_code == 405


def test_wrong_password_answers_400_with_a_message(client, roles):
    UserFactory(username="sam", password="the-right-one")
    response = client.post(reverse("login"), {"username": "sam", "password": "wrong"})
    assert response.status_code == 400
    assert "do not match" in response.content.decode()


def test_stream_under_wsgi_says_it_needs_asgi(client, commander):
    incident = incident_open()
    client.force_login(commander)
    response = client.get(reverse("incident_events", args=[incident.pk]))
    assert response.status_code == 503
    assert b"ASGI" in response.content


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_stream_answers_only_get(client, commander, method):
    incident = incident_open()
    response = getattr(client, method)(reverse("incident_events", args=[incident.pk]))
    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_the_target_config_help_shows_valid_json():
    import json
    import re

    from incidents.models import Service

    help_text = str(Service._meta.get_field("target_config").help_text)
    example = re.search(r"\{.*\}", help_text)
    assert example is not None
    assert json.loads(example.group()) == {"namespace": "shop", "deployment": "web"}


def test_the_command_panel_shows_the_status_the_incident_has(client, commander):
    incident = incident_open(title="Search slow")
    page = client.get(reverse("incident_room", args=[incident.pk])).content.decode()
    assert '<option value="" selected>Investigating (now)</option>' in page
    assert '<option value="identified">Identified</option>' in page

    response = client.post(
        reverse("incident_status", args=[incident.pk]), {"to_status": "", "reason": "x"}, **HTMX
    )
    assert response.status_code == 400
    incident.refresh_from_db()
    assert incident.status == "investigating"
