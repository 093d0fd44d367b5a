"""Incidents through the JSON API with a token: the same rules, forms and timeline as the
browser, and every refusal a 4xx naming what was wrong."""

from __future__ import annotations

import pytest

from incidents.models import Incident, TimelineKind
from tests.factories import ServiceFactory, incident_open

pytestmark = pytest.mark.django_db
IC = ["Incident Commander"]


def test_a_pipeline_opens_an_incident_as_the_tokens_owner(api_as):
    ServiceFactory(name="checkout")
    api = api_as(IC, "incidents:write", "read")
    response = api.call(
        "post",
        "/incidents",
        {"title": "結帳失敗 after v2.4 🚀", "severity": "P1", "services": ["checkout"]},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    incident = Incident.objects.get(pk=body["id"])
    assert body["services"] == ["checkout"] and body["status"] == "investigating"
    assert body["url"].endswith(f"/incidents/{incident.pk}/")
    opened = incident.timeline.get(kind=TimelineKind.INCIDENT_OPENED)
    assert opened.actor is not None and opened.actor == incident.commander
    assert api.call("get", f"/incidents/{incident.pk}").json()["title"] == "結帳失敗 after v2.4 🚀"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "x" * 201, "severity": "P1"}, "title"),
        ({"title": "ok", "severity": "P9"}, "severity"),
        ({"title": "ok", "severity": "P1", "services": ["nope"]}, "services"),
        ({"title": "nul\x00byte", "severity": "P1"}, "body"),
        ({"title": "ok", "severity": "P1", "rto_minutes": 0}, "rto_minutes"),
        ({"title": "ok", "severity": "P1", "commander": "nobody"}, "commander"),
        ({"severity": "P1"}, "body.title"),
        ({"title": ["list"], "severity": "P1"}, "body.title"),
    ],
)
def test_bad_input_answers_400_naming_the_field_and_saves_nothing(api_as, payload, field):
    api = api_as(IC, "incidents:write")
    response = api.call("post", "/incidents", payload)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not Incident.objects.exists()


def test_a_note_goes_on_the_timeline_at_the_forms_limit(api_as):
    incident = incident_open()
    api = api_as(["Responder"], "incidents:write")
    body = ("שלום <script>alert(1)</script> 🚀 " * 200)[:5000]
    response = api.call("post", f"/incidents/{incident.pk}/notes", {"body": body})
    assert response.status_code == 201, response.content
    assert incident.timeline.filter(kind=TimelineKind.NOTE, body=body.strip()).exists()

    too_long = api.call("post", f"/incidents/{incident.pk}/notes", {"body": "x" * 5001})
    assert too_long.status_code == 400 and "body" in too_long.json()["errors"]


def test_status_and_severity_follow_the_state_machine_and_the_roles(api_as):
    incident = incident_open(severity="P2")
    api = api_as(IC, "incidents:write")
    moved = api.call("patch", f"/incidents/{incident.pk}", {"status": "identified"})
    assert moved.status_code == 200 and moved.json()["status"] == "identified"
    raised = api.call(
        "patch", f"/incidents/{incident.pk}", {"severity": "P1", "reason": "spreading"}
    )
    assert raised.json()["severity"] == "P1"
    refused = api.call("patch", f"/incidents/{incident.pk}", {"status": "investigating-ish"})
    assert refused.status_code == 400 and "to_status" in refused.json()["errors"]

    responder = api_as(["Responder"], "incidents:write")
    denied = responder.call("patch", f"/incidents/{incident.pk}", {"status": "monitoring"})
    assert denied.status_code == 403
    assert "role" in denied.json()["detail"]


def test_a_token_acts_only_within_its_scopes(api_as):
    incident = incident_open()
    reader = api_as(IC, "read")
    assert reader.call("get", f"/incidents/{incident.pk}").status_code == 200
    refused = reader.call("post", f"/incidents/{incident.pk}/notes", {"body": "hi"})
    assert refused.status_code == 403 and "incidents:write" in refused.json()["detail"]
    assert not incident.timeline.filter(kind=TimelineKind.NOTE).exists()


def test_an_unknown_incident_is_404(api_as):
    assert api_as(IC, "read").call("get", "/incidents/999999").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "part"),
    [
        ("post", "/incidents", {"title": "ok", "severity": "P1", "services": ["a\x00"]}, "body"),
        ("post", "/incidents", {"title": "ok", "severity": "P1", "commander": "x\x00"}, "body"),
        ("get", "/services/web%00/releases", None, "path"),
        ("get", "/services/web/releases?environment=prod%00", None, "query"),
        (
            "post",
            "/alerts/alertmanager",
            {"version": "4", "status": "firing", "receiver": "r\x00", "alerts": []},
            "body",
        ),
    ],
)
def test_a_null_character_anywhere_is_a_400_not_a_database_error(api_as, method, path, body, part):
    api = api_as(IC, "incidents:write", "read", "alerts:write")
    response = api.call(method, path, body)
    assert response.status_code == 400, response.content
    assert part in response.json()["errors"]
    assert not Incident.objects.exists()
