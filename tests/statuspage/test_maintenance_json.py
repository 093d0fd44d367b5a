"""Maintenances in Statuspage v2's shape: summary.json's `scheduled_maintenances`, the
three scheduled-maintenances documents, field by field, and the page's indicator during
a maintenance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import maintenances, services
from statuspage.models import Component
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

MAINTENANCE_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at",
    "impact", "shortlink", "started_at", "page_id", "incident_updates", "components",
    "scheduled_for", "scheduled_until",
}  # fmt: skip
UPDATE_KEYS = {
    "id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
    "affected_components", "deliver_notifications", "custom_tweet", "tweet_id",
}  # fmt: skip
COMPONENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
    "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
}  # fmt: skip


def _iso(moment) -> str:
    return timezone.localtime(moment).isoformat(timespec="milliseconds")


@pytest.fixture
def orders(db) -> Component:
    return Component.objects.create(name="Order history", description="Past orders", position=1)


def _schedule(actor, components=(), name="Database upgrade", hours=24):
    start = timezone.now() + timedelta(hours=hours)
    return maintenances.maintenance_schedule(
        actor=actor,
        name=name,
        scheduled_for=start,
        scheduled_until=start + timedelta(hours=1),
        body="We upgrade **the** database.",
        component_ids=[c.pk for c in components],
        notify_subscribers=True,
    )


def _post(actor, maintenance, status, body="Working on it."):
    return maintenances.maintenance_update_post(
        actor=actor, maintenance=maintenance, status=status, body=body
    )


def test_a_scheduled_maintenance_has_statuspages_shape_field_by_field(
    client, support_lead, orders, settings
):
    settings.STATUS_PAGE_ID = "page-1"
    maintenance = _schedule(support_lead, [orders])
    started = _post(support_lead, maintenance, "in_progress", "Started.")
    verifying = _post(support_lead, maintenance, "verifying", "Checking.")
    maintenance.refresh_from_db()
    orders.refresh_from_db()
    first = maintenance.updates.order_by("published_at", "id").first()
    (shape,) = client.get(reverse("status_summary_json")).json()["scheduled_maintenances"]
    assert set(shape) == MAINTENANCE_KEYS
    assert shape["id"] == str(maintenance.pk)
    assert shape["name"] == "Database upgrade"
    assert shape["status"] == "verifying"
    assert shape["impact"] == "maintenance"
    assert shape["created_at"] == _iso(maintenance.created_at)
    assert shape["updated_at"] == _iso(maintenance.updated_at)
    assert shape["monitoring_at"] == _iso(verifying.published_at)
    assert shape["resolved_at"] is None
    assert shape["started_at"] == _iso(maintenance.started_at)
    assert shape["scheduled_for"] == _iso(maintenance.scheduled_for)
    assert shape["scheduled_until"] == _iso(maintenance.scheduled_until)
    assert shape["page_id"] == "page-1"
    assert shape["shortlink"] == f"http://testserver/status/maintenances/{maintenance.pk}"
    assert [u["id"] for u in shape["incident_updates"]] == [
        str(verifying.pk),
        str(started.pk),
        str(first.pk),
    ]
    newest, middle, oldest = shape["incident_updates"]
    for update in shape["incident_updates"]:
        assert set(update) == UPDATE_KEYS
        assert update["incident_id"] == str(maintenance.pk)
        assert update["custom_tweet"] is None and update["tweet_id"] is None
    assert newest == {
        "id": str(verifying.pk),
        "status": "verifying",
        "body": "Checking.",
        "incident_id": str(maintenance.pk),
        "created_at": _iso(verifying.published_at),
        "updated_at": _iso(verifying.published_at),
        "display_at": _iso(verifying.published_at),
        "affected_components": None,
        "deliver_notifications": False,
        "custom_tweet": None,
        "tweet_id": None,
    }
    assert middle["affected_components"] == [
        {
            "code": str(orders.pk),
            "name": "Order history",
            "old_status": "operational",
            "new_status": "under_maintenance",
        }
    ]
    assert oldest["status"] == "scheduled" and oldest["body"] == "We upgrade **the** database."
    assert oldest["deliver_notifications"] is True
    (component,) = shape["components"]
    assert set(component) == COMPONENT_KEYS
    assert component["id"] == str(orders.pk) and component["status"] == "under_maintenance"
    assert component["description"] == "Past orders" and component["group"] is False


def test_a_window_over_another_lists_only_the_components_it_changed(client, support_lead, orders):
    search = Component.objects.create(name="Search", position=2, status="degraded_performance")
    first = _schedule(support_lead, [orders], name="First")
    second = _schedule(support_lead, [orders, search], name="Second", hours=25)
    _post(support_lead, first, "in_progress")
    _post(support_lead, second, "in_progress")
    listed = client.get(reverse("status_summary_json")).json()["scheduled_maintenances"]
    shape = next(m for m in listed if m["id"] == str(second.pk))
    started = shape["incident_updates"][0]
    # Order history was under maintenance already (the first window's): not a change.
    assert started["affected_components"] == [
        {
            "code": str(search.pk),
            "name": "Search",
            "old_status": "degraded_performance",
            "new_status": "under_maintenance",
        }
    ]


def test_a_scheduled_one_not_started_reads_started_at_its_start(client, support_lead):
    maintenance = _schedule(support_lead)
    (shape,) = client.get(reverse("status_summary_json")).json()["scheduled_maintenances"]
    assert shape["started_at"] == _iso(maintenance.scheduled_for)
    assert shape["monitoring_at"] is None and shape["components"] == []
    assert shape["incident_updates"][0]["affected_components"] is None


def _ids(client, name) -> list[str]:
    body = client.get(reverse(name)).json()
    assert set(body) == {"page", "scheduled_maintenances"}
    assert set(body["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    return [m["id"] for m in body["scheduled_maintenances"]]


def test_each_document_lists_the_maintenances_it_names(client, support_lead, orders):
    later = _schedule(support_lead, name="Later", hours=48)
    sooner = _schedule(support_lead, name="Sooner", hours=24)
    active = _schedule(support_lead, [orders], name="Active")
    _post(support_lead, active, "in_progress")
    done = _schedule(support_lead, name="Done")
    maintenances.maintenance_cancel(actor=support_lead, maintenance=done)
    assert _ids(client, "status_maintenances_upcoming_json") == [str(sooner.pk), str(later.pk)]
    assert _ids(client, "status_maintenances_active_json") == [str(active.pk)]
    assert set(_ids(client, "status_maintenances_json")) == {
        str(m.pk) for m in (later, sooner, active, done)
    }
    summary = client.get(reverse("status_summary_json")).json()
    assert [m["id"] for m in summary["scheduled_maintenances"]] == [
        str(active.pk),
        str(sooner.pk),
        str(later.pk),
    ]


def test_completed_ones_carry_their_resolution(client, support_lead, orders):
    maintenance = _schedule(support_lead, [orders])
    _post(support_lead, maintenance, "in_progress")
    _post(support_lead, maintenance, "completed", "Done.")
    maintenance.refresh_from_db()
    (shape,) = client.get(reverse("status_maintenances_json")).json()["scheduled_maintenances"]
    assert shape["status"] == "completed"
    assert shape["resolved_at"] == _iso(maintenance.resolved_at)
    assert shape["components"][0]["status"] == "operational"


def test_the_indicator_reads_maintenance_while_one_is_in_progress(client, support_lead, orders):
    maintenance = _schedule(support_lead, [orders])
    status = client.get(reverse("status_status_json")).json()["status"]
    assert status == {"indicator": "none", "description": "All systems operational"}
    _post(support_lead, maintenance, "in_progress")
    status = client.get(reverse("status_status_json")).json()["status"]
    assert status == {"indicator": "maintenance", "description": "Planned maintenance in progress"}
    _post(support_lead, maintenance, "completed")
    assert client.get(reverse("status_status_json")).json()["status"]["indicator"] == "none"


def test_something_worse_than_the_maintenance_shows_through(client, support_lead, orders):
    api = Component.objects.create(name="API", position=2)
    maintenance = _schedule(support_lead, [orders])
    _post(support_lead, maintenance, "in_progress")
    incident = incident_open()
    services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=0,
        name="API errors",
        status="investigating",
        impact="minor",
        body="Some calls fail.",
        component_statuses={str(api.pk): "partial_outage"},
    )
    assert client.get(reverse("status_status_json")).json()["status"]["indicator"] == "major"


def test_json_keeps_cjk_emoji_and_right_to_left_names_as_they_are(client, support_lead):
    name = "維護 🛠️ صيانة"
    _schedule(support_lead, name=name)
    response = client.get(reverse("status_maintenances_upcoming_json"))
    assert response.json()["scheduled_maintenances"][0]["name"] == name
    assert name.encode() in response.content  # not \u-escaped


def test_a_new_maintenance_shows_at_once_despite_the_cache(client, support_lead, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert client.get(reverse("status_summary_json")).json()["scheduled_maintenances"] == []
    _schedule(support_lead)
    assert len(client.get(reverse("status_summary_json")).json()["scheduled_maintenances"]) == 1


def _queries(client, name) -> int:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cache.clear()
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse(name)).status_code == 200
    return len(captured)


@pytest.mark.parametrize("name", ["status_summary_json", "status_page"])
def test_the_public_surfaces_take_as_many_queries_for_one_maintenance_as_for_five(
    client, support_lead, orders, name
):
    _post(support_lead, _schedule(support_lead, [orders], name="W0"), "in_progress")
    one = _queries(client, name)
    for number in range(1, 5):
        _post(support_lead, _schedule(support_lead, [orders], name=f"W{number}"), "in_progress")
    assert _queries(client, name) == one
