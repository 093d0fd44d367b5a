"""Scheduled maintenances over the API: read with `read`, schedule, edit, update and cancel
with `statuspage:write`, through the same services and forms as the console; refusals name
the field and save nothing; roles are the owner's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage.models import Component, Maintenance, MaintenanceUpdate

pytestmark = pytest.mark.django_db
PATH = "/status-page/maintenances"


def _next_january_10() -> str:
    """The date of the next 10 January (winter in Paris), always less than a year ahead."""
    today = timezone.localdate()
    return f"{today.year + (1 if (today.month, today.day) >= (1, 10) else 0)}-01-10"


def _body(**overrides) -> dict:
    start = timezone.now() + timedelta(days=1)
    body = {
        "name": "Database upgrade",
        "scheduled_for": start.isoformat(),
        "scheduled_until": (start + timedelta(hours=1)).isoformat(),
        "body": "We upgrade the orders database.",
    }
    body.update(overrides)
    return body


@pytest.fixture
def lead(api_as):
    return api_as(["Support Lead"], "read", "statuspage:write")


@pytest.fixture
def orders(db) -> Component:
    return Component.objects.create(name="Order history", position=1)


def test_schedule_then_read_it_back(lead, orders):
    response = lead.call("post", PATH, _body(components=[orders.pk], impact="minor"))
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["status"] == "scheduled" and created["impact"] == "minor"
    assert created["components"] == [
        {"id": orders.pk, "name": "Order history", "status": "operational"}
    ]
    assert created["url"].endswith(f"/status/maintenances/{created['id']}")
    (update,) = created["updates"]
    assert update["status"] == "scheduled" and update["published_by"] == lead.user.username
    listed = lead.call("get", f"{PATH}?state=upcoming").json()
    assert [m["id"] for m in listed] == [created["id"]]
    assert lead.call("get", f"{PATH}?state=active").json() == []
    assert lead.call("get", f"{PATH}/{created['id']}").json()["name"] == "Database upgrade"


def test_updates_move_it_forward_and_the_components_follow(lead, orders):
    pk = lead.call("post", PATH, _body(components=[orders.pk])).json()["id"]
    started = lead.call("post", f"{PATH}/{pk}/updates", {"status": "in_progress", "body": "Go."})
    assert started.status_code == 201
    assert started.json()["components"][0]["status"] == "under_maintenance"
    assert [m["id"] for m in lead.call("get", f"{PATH}?state=active").json()] == [pk]
    done = lead.call("post", f"{PATH}/{pk}/updates", {"status": "completed", "body": "Done."})
    assert done.json()["status"] == "completed"
    assert done.json()["components"][0]["status"] == "operational"
    back = lead.call("post", f"{PATH}/{pk}/updates", {"status": "verifying", "body": "Again?"})
    assert back.status_code == 400
    assert "status" in back.json()["errors"]
    assert [m["id"] for m in lead.call("get", f"{PATH}?state=past").json()] == [pk]


def test_edit_and_cancel(lead, orders):
    pk = lead.call("post", PATH, _body()).json()["id"]
    edited = lead.call("patch", f"{PATH}/{pk}", {"name": "Renamed", "components": [orders.pk]})
    assert edited.status_code == 200
    assert edited.json()["name"] == "Renamed" and edited.json()["components"][0]["id"] == orders.pk
    cancelled = lead.call("post", f"{PATH}/{pk}/cancel", {"reason": "Vendor delay."})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "completed"
    assert "Vendor delay." in cancelled.json()["updates"][-1]["body"]
    late = lead.call("patch", f"{PATH}/{pk}", {"name": "Too late"})
    assert late.status_code == 400 and "status" in late.json()["errors"]


def test_a_naive_time_is_read_in_the_consoles_time_zone(lead, settings):
    settings.TIME_ZONE = "Europe/Paris"
    response = lead.call(
        "post",
        PATH,
        _body(
            scheduled_for=f"{_next_january_10()}T02:00:00",
            scheduled_until=f"{_next_january_10()}T03:00:00",
        ),
    )
    assert response.status_code == 201
    assert response.json()["scheduled_for"].startswith(f"{_next_january_10()}T01:00:00")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "x" * 201}, "name"),
        ({"name": "維" * 201}, "name"),
        ({"name": "<script></script>"}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"name": "rtl\u202eoverride"}, "name"),
        ({"body": "x" * 10_001}, "body"),
        ({"body": "bell\u0007"}, "body"),
        ({"body": ""}, "body"),
        ({"impact": "apocalyptic"}, "impact"),
        ({"components": [999_999]}, "components"),
        ({"scheduled_until": "2020-01-01T00:00:00+00:00"}, "scheduled_until"),
        ({"scheduled_until": "9999-12-31T23:59:59-05:00"}, "scheduled_until"),
        ({"name": "javascript:" * 18 + "ab"}, "name"),  # 254 characters once cleaned
        ({"name": "line&#10;break"}, "name"),
        ({"scheduled_for": "not a time"}, "body.scheduled_for"),
        ({"name": None}, "body.name"),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_saves_nothing(lead, overrides, field):
    response = lead.call("post", PATH, _body(**overrides))
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Maintenance.objects.exists() and not MaintenanceUpdate.objects.exists()


def test_a_group_is_refused_by_name(lead):
    group = Component.objects.create(name="Online store", is_group=True)
    response = lead.call("post", PATH, _body(components=[group.pk]))
    assert response.status_code == 400
    assert "Online store is a group" in response.json()["errors"]["components"][0]
    assert not Maintenance.objects.exists()


def test_a_null_character_is_refused_before_anything(lead):
    response = lead.call("post", PATH, _body(name="nul\u0000"))
    assert response.status_code == 400
    assert not Maintenance.objects.exists()


def test_cjk_emoji_and_right_to_left_text_at_the_limit_are_kept(lead):
    name = "صيانة" + "維" * 190 + "🛠️" * 2 + "x"
    response = lead.call("post", PATH, _body(name=name, body="維護 🛠️ صيانة " * 700))
    assert response.status_code == 201, response.content
    assert response.json()["name"] == name


def test_a_token_without_the_write_scope_cannot_schedule(api_as):
    reader = api_as(["Support Lead"], "read")
    assert reader.call("post", PATH, _body()).status_code == 403
    assert not Maintenance.objects.exists()


def test_a_viewer_holding_the_scope_is_refused_by_the_role(lead):
    lead.demote("Viewer")
    response = lead.call("post", PATH, _body())
    assert response.status_code == 403
    assert not Maintenance.objects.exists()


def test_reading_needs_a_token(client, lead):
    assert client.get(f"/api/v1{PATH}").status_code == 401
    assert lead.call("get", PATH).status_code == 200


def test_an_unknown_maintenance_is_a_404(lead):
    assert lead.call("get", f"{PATH}/999999").status_code == 404
    response = lead.call("post", f"{PATH}/999999/updates", {"status": "completed", "body": "x"})
    assert response.status_code == 404


def test_a_far_off_end_refused_leaves_the_public_page_readable(lead, client):
    refused = lead.call("post", PATH, _body(scheduled_until="9999-12-31T23:59:59-05:00"))
    assert refused.status_code == 400
    assert "a window lasts at most 30 days" in str(refused.json()["errors"]["scheduled_until"])
    assert client.get(reverse("status_summary_json")).status_code == 200
