"""incidents.json and incidents/unresolved.json in Atlassian Statuspage v2's shape, field by
field (the page, each incident, each incident update, each component), summary.json's
incidents held to the same shape, and each `shortlink` leading to the incident's page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage.models import PublicIncident
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")

PAGE_KEYS = {"id", "name", "url", "time_zone", "updated_at"}
INCIDENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at",
    "impact", "shortlink", "started_at", "page_id", "incident_updates", "components",
}  # fmt: skip
UPDATE_KEYS = {
    "id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
    "affected_components", "deliver_notifications", "custom_tweet", "tweet_id",
}  # fmt: skip
COMPONENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "position", "description",
    "showcase", "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
}  # fmt: skip
COMPONENT_STATUSES = {
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance",
}  # fmt: skip
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}


def _iso_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(ISO.match(value)))


def assert_page_shape(page: dict[str, Any], url: str) -> None:
    assert set(page) == PAGE_KEYS
    assert isinstance(page["id"], str) and page["id"]
    assert page["name"] == "Backout status"
    assert page["url"] == url
    assert page["time_zone"] == "UTC"
    assert ISO.match(page["updated_at"])


def assert_component_shape(component: dict[str, Any], page_id: str) -> None:
    assert set(component) == COMPONENT_KEYS
    assert isinstance(component["id"], str) and isinstance(component["name"], str)
    assert component["status"] in COMPONENT_STATUSES
    assert ISO.match(component["created_at"]) and ISO.match(component["updated_at"])
    assert isinstance(component["position"], int)
    assert component["description"] is None or isinstance(component["description"], str)
    assert component["showcase"] is True and component["start_date"] is None
    assert component["group_id"] is None or isinstance(component["group_id"], str)
    assert component["page_id"] == page_id
    assert component["group"] is False
    assert isinstance(component["only_show_if_degraded"], bool)


def assert_update_shape(update: dict[str, Any], incident_id: str) -> None:
    assert set(update) == UPDATE_KEYS
    assert isinstance(update["id"], str)
    assert update["status"] in INCIDENT_STATUSES
    assert isinstance(update["body"], str) and update["body"]
    assert update["incident_id"] == incident_id
    assert all(ISO.match(update[key]) for key in ("created_at", "updated_at", "display_at"))
    affected = update["affected_components"]
    assert affected is None or isinstance(affected, list)
    for change in affected or []:
        assert set(change) == {"code", "name", "old_status", "new_status"}
        assert isinstance(change["code"], str) and isinstance(change["name"], str)
        assert change["old_status"] in COMPONENT_STATUSES
        assert change["new_status"] in COMPONENT_STATUSES
    assert isinstance(update["deliver_notifications"], bool)
    assert update["custom_tweet"] is None and update["tweet_id"] is None


def assert_incident_shape(incident: dict[str, Any], page_id: str, base_url: str) -> None:
    assert set(incident) == INCIDENT_KEYS
    assert isinstance(incident["id"], str) and isinstance(incident["name"], str)
    assert incident["status"] in INCIDENT_STATUSES
    assert incident["impact"] in {"none", "minor", "major", "critical"}
    assert ISO.match(incident["created_at"]) and ISO.match(incident["updated_at"])
    assert ISO.match(incident["started_at"])
    assert _iso_or_none(incident["monitoring_at"]) and _iso_or_none(incident["resolved_at"])
    assert incident["shortlink"] == f"{base_url}incidents/{incident['id']}"
    assert incident["page_id"] == page_id
    assert isinstance(incident["incident_updates"], list) and incident["incident_updates"]
    for update in incident["incident_updates"]:
        assert_update_shape(update, incident["id"])
    stamps = [update["created_at"] for update in incident["incident_updates"]]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    assert isinstance(incident["components"], list)
    for component in incident["components"]:
        assert_component_shape(component, page_id)


@pytest.fixture
def three_incidents(support_lead, checkout_component, search_component, publish):
    """One investigating, one resolved (after monitoring), one in postmortem."""
    checkout, search = str(checkout_component.pk), str(search_component.pk)
    active = incident_open()
    publish(support_lead, active, component_statuses={checkout: "partial_outage"})
    publish(
        support_lead,
        active,
        version=1,
        status="identified",
        body="Cause found.",
        component_statuses={checkout: "major_outage", search: "degraded_performance"},
    )
    resolved = incident_open()
    publish(
        support_lead,
        resolved,
        name="Search slow",
        component_statuses={search: "degraded_performance"},
    )
    publish(
        support_lead,
        resolved,
        version=1,
        name="Search slow",
        status="monitoring",
        body="Fix deployed.",
    )
    publish(
        support_lead,
        resolved,
        version=2,
        name="Search slow",
        status="resolved",
        body="All good.",
        component_statuses={search: "operational"},
    )
    postmortem = incident_open()
    publish(support_lead, postmortem, name="Old outage", status="postmortem", body="Written up.")
    return {
        name: PublicIncident.objects.get(incident=incident)
        for name, incident in (
            ("active", active),
            ("resolved", resolved),
            ("postmortem", postmortem),
        )
    }


def test_incidents_json_has_the_statuspage_shape_field_by_field(client, three_incidents):
    response = client.get(reverse("status_incidents_json"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"page", "incidents"}
    assert_page_shape(body["page"], "http://testserver/status/")
    assert [i["name"] for i in body["incidents"]] == [
        "Old outage",
        "Search slow",
        "Checkout problems",
    ]
    for incident in body["incidents"]:
        assert_incident_shape(incident, body["page"]["id"], "http://testserver/status/")
    old, search, checkout = body["incidents"]
    assert (old["status"], search["status"], checkout["status"]) == (
        "postmortem",
        "resolved",
        "identified",
    )
    assert search["monitoring_at"] is not None and search["resolved_at"] is not None
    assert [u["status"] for u in search["incident_updates"]] == [
        "resolved",
        "monitoring",
        "investigating",
    ]
    resolving, monitoring, first = search["incident_updates"]
    search_id = str(three_incidents["resolved"].components.get().pk)
    # Its first update set Search degraded, as the other incident had already: no change.
    assert first["affected_components"] is None
    assert monitoring["affected_components"] is None  # it set nothing
    assert resolving["affected_components"] == [
        {
            "code": search_id,
            "name": "Search",
            "old_status": "degraded_performance",
            "new_status": "operational",
        }
    ]
    found, looking = checkout["incident_updates"]
    checkout_id = str(checkout["components"][0]["id"])
    assert looking["affected_components"] == [
        {
            "code": checkout_id,
            "name": "Checkout",
            "old_status": "operational",
            "new_status": "partial_outage",
        }
    ]
    assert sorted(found["affected_components"], key=lambda c: c["name"]) == [
        {
            "code": checkout_id,
            "name": "Checkout",
            "old_status": "partial_outage",
            "new_status": "major_outage",
        },
        {
            "code": search_id,
            "name": "Search",
            "old_status": "operational",
            "new_status": "degraded_performance",
        },
    ]
    assert [c["name"] for c in checkout["components"]] == ["Checkout", "Search"]
    assert checkout["resolved_at"] is None


def test_unresolved_json_holds_only_incidents_neither_resolved_nor_postmortem(
    client, three_incidents
):
    body = client.get(reverse("status_unresolved_json")).json()

    assert set(body) == {"page", "incidents"}
    assert_page_shape(body["page"], "http://testserver/status/")
    [incident] = body["incidents"]
    assert incident["id"] == str(three_incidents["active"].pk)
    assert_incident_shape(incident, body["page"]["id"], "http://testserver/status/")


def test_summary_json_incidents_have_the_same_shape(client, three_incidents):
    summary = client.get(reverse("status_summary_json")).json()

    [incident] = summary["incidents"]
    assert_incident_shape(incident, summary["page"]["id"], "http://testserver/status/")


def test_incidents_json_holds_the_fifty_most_recent(client, support_lead, publish):
    for number in range(52):
        publish(support_lead, incident_open(), name=f"Incident {number}")
    now = timezone.now()
    for offset, public in enumerate(PublicIncident.objects.order_by("pk")):
        PublicIncident.objects.filter(pk=public.pk).update(
            created_at=now - timedelta(hours=52 - offset)
        )

    listed = client.get(reverse("status_incidents_json")).json()["incidents"]

    assert [i["name"] for i in listed] == [f"Incident {n}" for n in range(51, 1, -1)]


@pytest.mark.parametrize("name", ["status_incidents_json", "status_unresolved_json"])
def test_the_incident_lists_carry_the_same_headers_as_summary_json(client, name):
    summary = client.get(reverse("status_summary_json"))
    response = client.get(reverse(name))
    for header in ("Cache-Control", "Access-Control-Allow-Origin", "X-Content-Type-Options"):
        assert response[header] == summary[header]
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("name", ["status_incidents_json", "status_unresolved_json"])
def test_the_incident_lists_are_empty_lists_without_incidents(client, name):
    assert client.get(reverse(name)).json()["incidents"] == []


def test_the_shortlink_opens_the_incidents_page(client, three_incidents):
    [incident] = client.get(reverse("status_summary_json")).json()["incidents"]

    page = client.get(incident["shortlink"])

    assert page.status_code == 200
    assert "Checkout problems" in page.content.decode()


def test_on_the_status_host_shortlinks_point_at_its_root(client, status_host, three_incidents):
    for path in ("/api/v2/incidents.json", "/api/v2/incidents/unresolved.json"):
        body = client.get(path, HTTP_HOST=status_host).json()
        assert body["page"]["url"] == f"http://{status_host}/"
        for incident in body["incidents"]:
            assert incident["shortlink"] == f"http://{status_host}/incidents/{incident['id']}"
            assert (
                client.get(f"/incidents/{incident['id']}", HTTP_HOST=status_host).status_code == 200
            )


def test_a_configured_page_url_makes_the_shortlinks(client, settings, three_incidents):
    settings.STATUS_PAGE_URL = "https://status.example.org/"
    body = client.get(reverse("status_incidents_json")).json()
    assert {i["shortlink"] for i in body["incidents"]} == {
        f"https://status.example.org/incidents/{p.pk}" for p in three_incidents.values()
    }


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("決済の障害", "決済の障害"),
        ("Checkout 💳🔥 down", "Checkout 💳🔥 down"),
        ("الدفع معطل", "الدفع معطل"),
        ('<script>alert(1)</script><b>Checkout</b> & "API"', 'Checkout & "API"'),
    ],
)
def test_names_reach_the_json_as_published_without_markup(
    client, support_lead, name, published, publish
):
    publish(support_lead, incident_open(), name=name)

    response = client.get(reverse("status_unresolved_json"))

    [incident] = response.json()["incidents"]
    assert incident["name"] == published
    # Written as UTF-8, not as \u escapes.
    assert json.dumps(published, ensure_ascii=False) in response.content.decode()


def test_the_lists_are_built_in_a_bounded_number_of_queries(
    client, support_lead, django_assert_max_num_queries, publish
):
    for _ in range(8):
        publish(support_lead, incident_open())
    with django_assert_max_num_queries(8):
        client.get(reverse("status_incidents_json"))
    with django_assert_max_num_queries(6):
        client.get(reverse("status_unresolved_json"))


def test_deliver_notifications_says_whether_subscribers_were_sent_the_update(
    client, support_lead, publish
):
    incident = incident_open()
    publish(support_lead, incident, notify_subscribers=False)
    publish(support_lead, incident, version=1, status="identified", notify_subscribers=True)

    [listed] = client.get(reverse("status_incidents_json")).json()["incidents"]

    assert [u["deliver_notifications"] for u in listed["incident_updates"]] == [True, False]


def test_unresolved_json_lists_the_newest_opened_first_as_incidents_json_does(
    client, support_lead, publish
):
    older, newer = incident_open(), incident_open()
    publish(support_lead, older, name="Older")
    publish(support_lead, newer, name="Newer")
    now = timezone.now()
    PublicIncident.objects.filter(incident=older).update(created_at=now - timedelta(hours=2))
    PublicIncident.objects.filter(incident=newer).update(created_at=now - timedelta(hours=1))
    publish(support_lead, older, version=1, name="Older", status="identified")  # updated last

    for name in ("status_unresolved_json", "status_incidents_json"):
        listed = client.get(reverse(name)).json()["incidents"]
        assert [i["name"] for i in listed] == ["Newer", "Older"], name
