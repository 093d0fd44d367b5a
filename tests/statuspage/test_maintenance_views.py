"""The maintenance pages: the support lead schedules, edits, updates and cancels in the
console (htmx like the components page); other roles get 403, visitors the login page;
bad input answers 400 naming the field with nothing saved; the public page of one
maintenance, on the console's host and at the status host's root."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import maintenances
from statuspage.models import Component, Maintenance, MaintenanceUpdate
from tests.factories import UserFactory
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login

pytestmark = pytest.mark.django_db
ROLES = ["Viewer", "Responder", "Approver", "Incident Commander", "Support Lead"]
STATUS_HOST = "status.example.com"


def _next_january_10() -> str:
    """The date of the next 10 January (winter in Paris), always less than a year ahead."""
    today = timezone.localdate()
    return f"{today.year + (1 if (today.month, today.day) >= (1, 10) else 0)}-01-10"


def _local(moment) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%dT%H:%M}"


def _form(**overrides) -> dict:
    start = timezone.now() + timedelta(days=1)
    data = {
        "name": "Database upgrade",
        "scheduled_for": _local(start),
        "scheduled_until": _local(start + timedelta(hours=1)),
        "impact": "maintenance",
        "auto_start": "on",
        "auto_complete": "on",
        "body": "We upgrade the orders database.",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _scheduled(actor, components=()) -> Maintenance:
    start = timezone.now() + timedelta(days=1)
    return maintenances.maintenance_schedule(
        actor=actor,
        name="Database upgrade",
        scheduled_for=start,
        scheduled_until=start + timedelta(hours=1),
        body="We upgrade the orders database.",
        component_ids=[c.pk for c in components],
    )


@pytest.fixture
def signed_in(client, support_lead):
    client.force_login(support_lead)
    return client


def _cases(maintenance: Maintenance) -> list[tuple[str, str, dict]]:
    pk = maintenance.pk
    return [
        ("get", reverse("status_maintenances"), {}),
        ("post", reverse("status_maintenance_create"), _form()),
        ("get", reverse("status_maintenance", args=[pk]), {}),
        ("post", reverse("status_maintenance_edit", args=[pk]), _form(body=None, name="Edited")),
        (
            "post",
            reverse("status_maintenance_update", args=[pk]),
            {"status": "scheduled", "body": "Still on."},
        ),
        ("post", reverse("status_maintenance_cancel", args=[pk]), {"reason": "Moved."}),
    ]


@pytest.mark.parametrize("index", range(6))
def test_an_anonymous_visitor_is_sent_to_login(client, support_lead, index):
    method, url, data = _cases(_scheduled(support_lead))[index]
    assert_sent_to_login(client, method, url, data)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("index", range(6))
def test_only_the_support_lead_reaches_the_maintenance_pages(client, support_lead, role, index):
    maintenance = _scheduled(support_lead)
    method, url, data = _cases(maintenance)[index]
    client.force_login(UserFactory(roles=[role]))
    updates = MaintenanceUpdate.objects.count()
    maintenances_before = Maintenance.objects.count()
    assert_reached_only_if_allowed(client, method, url, data, allowed=role == "Support Lead")
    if role != "Support Lead":
        # Nothing saved: no update, no new maintenance, and an edit changed nothing.
        assert MaintenanceUpdate.objects.count() == updates
        assert Maintenance.objects.count() == maintenances_before
        saved = Maintenance.objects.get(pk=maintenance.pk)
        assert (saved.name, saved.updated_at) == (maintenance.name, maintenance.updated_at)


def test_the_nav_links_the_page_for_the_support_lead_only(client, signed_in):
    page = signed_in.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("status_maintenances")}"' in page
    client.force_login(UserFactory(roles=["Viewer"]))
    assert reverse("status_maintenances") not in client.get(reverse("dashboard")).content.decode()


def test_the_list_shows_active_upcoming_and_past_and_names_the_time_zone(
    signed_in, support_lead, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    upcoming, active, past = (_scheduled(support_lead) for _ in range(3))
    maintenances.maintenance_update_post(
        actor=support_lead, maintenance=active, status="in_progress", body="Go."
    )
    maintenances.maintenance_cancel(actor=support_lead, maintenance=past)
    page = signed_in.get(reverse("status_maintenances")).content.decode()
    sections = page.split('id="upcoming-maintenances"')
    assert f'id="maintenance-{active.pk}"' in sections[0]
    upcoming_part, past_part = sections[1].split('id="past-maintenances"')
    assert f'id="maintenance-{upcoming.pk}"' in upcoming_part
    assert f'id="maintenance-{past.pk}"' in past_part
    assert "Europe/Paris" in page and "Start (Europe/Paris)" in page


def test_scheduling_reads_times_in_the_consoles_time_zone(signed_in, settings):
    settings.TIME_ZONE = "Europe/Paris"
    orders = Component.objects.create(name="Order history")
    response = signed_in.post(
        reverse("status_maintenance_create"),
        _form(
            scheduled_for=f"{_next_january_10()}T02:00",
            scheduled_until=f"{_next_january_10()}T03:00",
            components=[orders.pk],
        ),
    )
    created = Maintenance.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("status_maintenance", args=[created.pk])
    assert created.scheduled_for.astimezone(timezone.UTC).hour == 1  # 02:00 in Paris, winter
    assert list(created.components.all()) == [orders]


def test_scheduling_over_htmx_goes_to_the_new_maintenance(signed_in):
    response = signed_in.post(reverse("status_maintenance_create"), _form(), HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == reverse(
        "status_maintenance", args=[Maintenance.objects.get().pk]
    )


@pytest.mark.parametrize(
    ("overrides", "field_text"),
    [
        ({"name": "x" * 201}, "Name: Ensure this value has at most 200 characters"),
        ({"name": "維" * 201}, "Name: Ensure this value has at most 200 characters"),
        ({"name": "<script>x</script>"}, "Name: give it a public name"),
        ({"name": "tab\tin name"}, "Name: control characters are not allowed"),
        ({"name": "nul\x00"}, "Name: Null characters are not allowed"),
        ({"body": "x" * 10_001}, "Update (Markdown): Ensure this value has at most 10000"),
        ({"body": "bell\x07"}, "Update: control characters are not allowed"),
        ({"body": ""}, "First update (Markdown): This field is required"),
        ({"scheduled_until": "2020-01-01T00:00"}, "End: The end must be after the start"),
        ({"scheduled_until": "9999-12-31T23:59"}, "End: a window lasts at most 30 days"),
        ({"name": "javascript:" * 18 + "ab"}, "Name: at most 200 characters (this has 254)"),
        ({"name": "rtl&#x202E;override"}, "Name: control characters are not allowed"),
        ({"scheduled_for": "soon"}, "Start: Enter a valid date/time"),
        ({"impact": "apocalyptic"}, "Impact: Select a valid choice"),
        ({"components": ["999999"]}, "Components: Select a valid choice"),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_saves_nothing(signed_in, overrides, field_text):
    response = signed_in.post(reverse("status_maintenance_create"), _form(**overrides))
    assert response.status_code == 400
    # The message at the top of the form (the form's labels there start with a capital only).
    assert field_text.lower() in response.content.decode().lower()
    assert not Maintenance.objects.exists()


def test_a_group_is_refused_by_the_service_with_its_reason(signed_in):
    group = Component.objects.create(name="Online store", is_group=True)
    response = signed_in.post(
        reverse("status_maintenance_create"), _form(components=[group.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 400
    assert "Components: Online store is a group" in response.content.decode()
    assert not Maintenance.objects.exists()


def test_a_name_of_200_characters_in_any_script_is_kept(signed_in):
    name = "صيانة" + "維" * 190 + "🛠️" * 2 + "x"
    response = signed_in.post(reverse("status_maintenance_create"), _form(name=name))
    assert response.status_code == 302
    assert Maintenance.objects.get().name == name


def test_the_detail_page_posts_updates_over_htmx(signed_in, support_lead):
    orders = Component.objects.create(name="Order history")
    maintenance = _scheduled(support_lead, [orders])
    page = signed_in.get(reverse("status_maintenance", args=[maintenance.pk])).content.decode()
    assert "We upgrade the orders database." in page and 'hx-post="' in page
    response = signed_in.post(
        reverse("status_maintenance_update", args=[maintenance.pk]),
        {"status": "in_progress", "body": "**Started**"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<strong>Started</strong>" in body and "Update published (In progress)" in body
    assert "<html" not in body  # the fragment only
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"


def test_moving_backwards_answers_400_naming_the_status(signed_in, support_lead):
    maintenance = _scheduled(support_lead)
    maintenances.maintenance_update_post(
        actor=support_lead, maintenance=maintenance, status="verifying", body="Checking."
    )
    response = signed_in.post(
        reverse("status_maintenance_update", args=[maintenance.pk]),
        {"status": "in_progress", "body": "Back?"},
    )
    assert response.status_code == 400
    assert "Status: a maintenance only moves forward" in response.content.decode()
    assert maintenance.updates.count() == 2


def test_editing_and_cancelling_from_the_detail_page(signed_in, support_lead):
    maintenance = _scheduled(support_lead)
    url = reverse("status_maintenance_edit", args=[maintenance.pk])
    bad = signed_in.post(url, _form(body=None, scheduled_until="2020-01-01T00:00"))
    assert bad.status_code == 400 and "End: The end must be after the start" in bad.content.decode()
    assert signed_in.post(url, _form(body=None, name="Renamed")).status_code == 302
    maintenance.refresh_from_db()
    assert maintenance.name == "Renamed"
    cancel = signed_in.post(
        reverse("status_maintenance_cancel", args=[maintenance.pk]), {"reason": "Vendor delay."}
    )
    assert cancel.status_code == 302
    maintenance.refresh_from_db()
    assert maintenance.status == "completed"
    again = signed_in.post(reverse("status_maintenance_cancel", args=[maintenance.pk]), {})
    assert again.status_code == 400 and "only a scheduled maintenance" in again.content.decode()


def test_the_public_page_shows_it_with_its_updates_without_login(client, support_lead):
    maintenance = _scheduled(support_lead)
    response = client.get(reverse("status_maintenance_public", args=[maintenance.pk]))
    assert response.status_code == 200
    assert "We upgrade the orders database." in response.content.decode()
    assert response["Access-Control-Allow-Origin"] == "*"
    assert client.get(reverse("status_maintenance_public", args=[999_999])).status_code == 404


def test_the_public_status_page_lists_active_and_upcoming_ones(client, support_lead):
    upcoming, done = _scheduled(support_lead), _scheduled(support_lead)
    maintenances.maintenance_cancel(actor=support_lead, maintenance=done)
    page = client.get(reverse("status_page")).content.decode()
    assert f'id="maintenance-{upcoming.pk}"' in page
    assert f'id="maintenance-{done.pk}"' not in page
    assert reverse("status_maintenance_public", args=[upcoming.pk]) in page


@pytest.fixture
def status_host(settings):
    settings.STATUS_PAGE_HOST = STATUS_HOST
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, STATUS_HOST]
    return STATUS_HOST


@pytest.mark.parametrize(
    "path",
    [
        "/maintenances/{pk}",
        "/api/v2/scheduled-maintenances.json",
        "/api/v2/scheduled-maintenances/upcoming.json",
        "/api/v2/scheduled-maintenances/active.json",
    ],
)
def test_the_status_host_serves_the_maintenance_urls_at_its_root(
    client, support_lead, status_host, path
):
    maintenance = _scheduled(support_lead)
    response = client.get(path.format(pk=maintenance.pk), HTTP_HOST=status_host)
    assert response.status_code == 200, response.content[:300]
    assert response["Access-Control-Allow-Origin"] == "*"
    if path.endswith(".json") and "active" not in path:
        (listed,) = response.json()["scheduled_maintenances"]
        assert listed["shortlink"] == f"http://{status_host}/maintenances/{maintenance.pk}"
    page = client.get("/", HTTP_HOST=status_host).content.decode()
    assert f'href="/maintenances/{maintenance.pk}"' in page
    assert client.get("/status-page/maintenances/", HTTP_HOST=status_host).status_code == 404


def test_the_public_page_shows_a_new_update_at_once_despite_the_cache(client, support_lead):
    maintenance = _scheduled(support_lead)
    url = reverse("status_maintenance_public", args=[maintenance.pk])
    assert "Work has started" not in client.get(url).content.decode()
    maintenances.maintenance_update_post(
        actor=support_lead, maintenance=maintenance, status="in_progress", body="Work has started."
    )
    assert "Work has started" in client.get(url).content.decode()
