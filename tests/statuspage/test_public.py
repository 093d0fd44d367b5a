"""The public page, summary.json, status.json and the Atom feed: no login, the Atlassian
Statuspage v2 shape, only published text, and nothing executable."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents import services as incident_services
from statuspage import services
from tests.factories import incident_open
from tests.statuspage.test_markup import XSS_PAYLOADS, assert_inert

pytestmark = pytest.mark.django_db

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
ATOM = "{http://www.w3.org/2005/Atom}"


def _publish(actor, incident, *, version=0, **overrides):
    fields = {
        "name": "Checkout problems",
        "status": "investigating",
        "impact": "major",
        "body": "We are looking into **failed payments**.",
        "component_statuses": {},
    }
    fields.update(overrides)
    return services.draft_publish(incident=incident, actor=actor, version=version, **fields)


def _iso_or_none(value):
    return value is None or bool(ISO.match(value))


@pytest.mark.parametrize(
    "name",
    [
        "status_page",
        "status_summary_json",
        "status_status_json",
        "status_components_json",
        "status_history_atom",
    ],
)
def test_public_surfaces_need_no_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 200


def test_summary_json_has_the_statuspage_v2_shape_field_by_field(
    client, support_lead, checkout_component, search_component
):
    incident = incident_open()
    _publish(
        support_lead,
        incident,
        component_statuses={str(checkout_component.pk): "partial_outage"},
    )
    _publish(
        support_lead,
        incident,
        version=1,
        status="identified",
        body="Cause found.",
        component_statuses={str(checkout_component.pk): "major_outage"},
    )
    response = client.get(reverse("status_summary_json"))
    assert response["Content-Type"] == "application/json"
    summary = response.json()
    assert set(summary) == {"page", "components", "incidents", "scheduled_maintenances", "status"}

    page = summary["page"]
    assert set(page) == {"id", "name", "url", "time_zone", "updated_at"}
    assert isinstance(page["id"], str) and page["name"] == "Backout status"
    assert page["url"] == "http://testserver/status/"
    assert page["time_zone"] == "UTC" and ISO.match(page["updated_at"])

    assert summary["status"] == {"indicator": "critical", "description": "Major system outage"}
    assert summary["scheduled_maintenances"] == []

    assert [c["name"] for c in summary["components"]] == ["Checkout", "Search"]
    component = summary["components"][0]
    assert set(component) == {
        "id", "name", "status", "created_at", "updated_at", "position", "description",
        "showcase", "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
    }  # fmt: skip
    assert component["id"] == str(checkout_component.pk)
    assert component["status"] == "major_outage"
    assert component["position"] == 1 and component["description"] is None
    assert component["showcase"] is True and component["group"] is False
    assert component["only_show_if_degraded"] is False
    assert component["group_id"] is None and component["start_date"] is None
    assert component["page_id"] == page["id"]
    assert ISO.match(component["created_at"]) and ISO.match(component["updated_at"])
    assert summary["components"][1]["status"] == "operational"

    [public] = summary["incidents"]
    assert set(public) == {
        "id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at",
        "impact", "shortlink", "started_at", "page_id", "incident_updates", "components",
    }  # fmt: skip
    assert public["name"] == "Checkout problems"
    assert public["status"] == "identified" and public["impact"] == "major"
    assert public["monitoring_at"] is None and public["resolved_at"] is None
    assert public["shortlink"] == f"http://testserver/status/incidents/{public['id']}"
    assert public["page_id"] == page["id"]
    assert all(_iso_or_none(public[k]) for k in ("created_at", "updated_at", "started_at"))
    assert [c["id"] for c in public["components"]] == [str(checkout_component.pk)]

    newest, oldest = public["incident_updates"]
    assert set(newest) == {
        "id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
        "affected_components", "deliver_notifications", "custom_tweet", "tweet_id",
    }  # fmt: skip
    assert (newest["status"], newest["body"]) == ("identified", "Cause found.")
    assert oldest["body"] == "We are looking into **failed payments**."
    assert newest["incident_id"] == public["id"]
    assert newest["affected_components"] == [
        {
            "code": str(checkout_component.pk),
            "name": "Checkout",
            "old_status": "partial_outage",
            "new_status": "major_outage",
        }
    ]
    assert oldest["affected_components"][0]["old_status"] == "operational"
    assert newest["deliver_notifications"] is False  # published without notifying
    assert newest["custom_tweet"] is None and newest["tweet_id"] is None
    assert all(ISO.match(newest[k]) for k in ("created_at", "updated_at", "display_at"))


def test_status_json_has_page_and_status_only(client):
    body = client.get(reverse("status_status_json")).json()
    assert set(body) == {"page", "status"}
    assert body["status"] == {"indicator": "none", "description": "All systems operational"}


@pytest.mark.parametrize(
    ("component_status", "impact", "indicator"),
    [
        ("operational", "none", "none"),
        ("degraded_performance", "none", "minor"),
        ("partial_outage", "minor", "major"),
        ("major_outage", "minor", "critical"),
        ("operational", "critical", "critical"),
        ("under_maintenance", "none", "minor"),
    ],
)
def test_indicator_is_the_worst_of_components_and_active_incidents(
    client, support_lead, checkout_component, component_status, impact, indicator
):
    _publish(
        support_lead,
        incident_open(),
        impact=impact,
        component_statuses={str(checkout_component.pk): component_status},
    )
    assert client.get(reverse("status_status_json")).json()["status"]["indicator"] == indicator


def test_resolved_incidents_leave_the_summary_and_appear_in_the_history(client, support_lead):
    incident = incident_open()
    _publish(support_lead, incident)
    _publish(support_lead, incident, version=1, status="resolved", body="All fixed.")
    summary = client.get(reverse("status_summary_json")).json()
    assert summary["incidents"] == []
    page = client.get(reverse("status_page")).content.decode()
    assert 'id="history"' in page and "All fixed." in page


def test_the_public_page_shows_components_active_incidents_and_updates(
    client, support_lead, checkout_component
):
    _publish(
        support_lead,
        incident_open(),
        component_statuses={str(checkout_component.pk): "major_outage"},
    )
    page = client.get(reverse("status_page")).content.decode()
    assert "Checkout problems" in page
    assert "<strong>failed payments</strong>" in page
    assert "Major outage" in page
    assert "Major system outage" in page


def test_drafts_internal_titles_and_notes_never_reach_the_public(client, support_lead, roles):
    incident = incident_open(title="Bad deploy v1.5.0 by mallory", summary="secret root cause")
    incident_services.note_add(incident=incident, author=support_lead, body="internal note xyzzy")
    _publish(support_lead, incident, body="Published words.")
    services.draft_save(
        incident=incident,
        actor=support_lead,
        version=1,
        name="Draft name plugh",
        status="identified",
        impact="major",
        body="Unpublished draft words plugh",
        component_statuses={},
    )
    surfaces = "".join(
        client.get(reverse(name)).content.decode()
        for name in ("status_page", "status_summary_json", "status_history_atom")
    )
    assert "Published words." in surfaces
    for secret in ("plugh", "xyzzy", "mallory", "secret root cause", "v1.5.0"):
        assert secret not in surfaces


def test_the_atom_feed_lists_published_revisions(client, support_lead):
    incident = incident_open()
    _publish(support_lead, incident)
    _publish(support_lead, incident, version=1, status="monitoring", body="Fix is out.")
    response = client.get(reverse("status_history_atom"))
    assert response["Content-Type"] == "application/atom+xml; charset=utf-8"
    feed = ET.fromstring(response.content)
    entries = feed.findall(f"{ATOM}entry")
    assert [e.find(f"{ATOM}title").text for e in entries] == [
        "Checkout problems: Monitoring",
        "Checkout problems: Investigating",
    ]
    assert "<p>Fix is out.</p>" in entries[0].find(f"{ATOM}summary").text


def test_xss_payloads_typed_into_the_editor_are_inert_on_the_page_json_and_feed(
    client, support_lead, checkout_component
):
    incident = incident_open()
    client.force_login(support_lead)
    for version, payload in enumerate(XSS_PAYLOADS):
        response = client.post(
            reverse("status_draft", args=[incident.pk]),
            {
                "version": version,
                "name": f"Outage {payload}"[:200],
                "status": "investigating",
                "impact": "minor",
                "body": f"Before {payload} after",
                f"component_{checkout_component.pk}": "degraded_performance",
                "action": "publish",
            },
        )
        assert response.status_code == 302, response.content[:300]
    client.logout()

    page = client.get(reverse("status_page")).content.decode()
    main = page[page.index("<main>") : page.index('aria-label="Components"')]
    assert_inert(main)
    assert main.count("Before") == len(XSS_PAYLOADS)

    summary = client.get(reverse("status_summary_json")).json()
    [public] = summary["incidents"]
    assert len(public["incident_updates"]) == len(XSS_PAYLOADS)
    for update in public["incident_updates"]:
        assert_inert(update["body"])
        assert "javascript:" not in "".join(update["body"].split()).lower()
    assert_inert(public["name"])

    feed = ET.fromstring(client.get(reverse("status_history_atom")).content)
    for entry in feed.findall(f"{ATOM}entry"):
        assert_inert(entry.find(f"{ATOM}summary").text)
        assert_inert(entry.find(f"{ATOM}title").text)


def test_the_public_page_forbids_scripts_by_content_security_policy(client):
    response = client.get(reverse("status_page"))
    assert "script-src 'none'" in response["Content-Security-Policy"]


def test_the_public_page_answers_in_a_constant_number_of_queries(
    client, support_lead, checkout_component, django_assert_max_num_queries
):
    for _ in range(5):
        _publish(support_lead, incident_open())
    # Components, incidents with their revisions and components, and the maintenances.
    with django_assert_max_num_queries(5):
        client.get(reverse("status_summary_json"))


def test_the_public_surfaces_are_served_from_the_cache_until_a_publish(
    client, support_lead, django_assert_num_queries
):
    incident = incident_open()
    _publish(support_lead, incident, name="Checkout problems")
    for name in ("status_page", "status_summary_json", "status_status_json"):
        client.get(reverse(name))  # rendered once, then kept
        with django_assert_num_queries(0):
            again = client.get(reverse(name))
        assert again.status_code == 200
    assert "Checkout problems" in client.get(reverse("status_page")).content.decode()

    _publish(support_lead, incident, version=1, name="Checkout fixed")

    assert "Checkout fixed" in client.get(reverse("status_page")).content.decode()
    summary = client.get(reverse("status_summary_json")).json()
    assert summary["incidents"][0]["name"] == "Checkout fixed"


def test_an_incidents_times_read_in_order_and_start_with_the_impact(client, support_lead):
    started = timezone.now() - timedelta(minutes=42)
    incident = incident_open(started_at=started, detected_at=started + timedelta(minutes=3))
    _publish(support_lead, incident)

    [published] = client.get(reverse("status_summary_json")).json()["incidents"]

    created = datetime.fromisoformat(published["created_at"].replace("Z", "+00:00"))
    updated = datetime.fromisoformat(published["updated_at"].replace("Z", "+00:00"))
    impact = datetime.fromisoformat(published["started_at"].replace("Z", "+00:00"))
    assert updated >= created
    assert abs(impact - started) < timedelta(seconds=1)
    assert impact < created
