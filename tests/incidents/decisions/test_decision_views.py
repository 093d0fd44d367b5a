"""Recording a decision from the room's form, previewing one, and refusing bad input."""

from __future__ import annotations

import json

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from incidents import services
from incidents.decisions.rules import Signals
from incidents.decisions.selectors import room_context
from incidents.decisions.services import decision_record
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import channel_for
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def commander(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


def _signals(**overrides):
    data = {
        "error_rate": "12.5",
        "error_trend": "rising",
        "minutes_above": "2",
        "p99_ms": "",
        "p99_baseline_ms": "",
        "pods_failing": "",
        "pods_total": "",
        "memory_percent": "",
        "hotfix_minutes": "",
    }
    data.update(overrides)
    return data


def _decisions(incident):
    return list(TimelineEntry.objects.filter(incident=incident, kind=TimelineKind.DECISION))


def test_commander_records_a_decision_on_the_timeline(
    client, commander, redis_listener, django_capture_on_commit_callbacks
):
    incident = incident_open(severity="P2")
    redis_listener.subscribe(channel_for(incident.pk))
    redis_listener.get_message(timeout=1)  # the subscription itself

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("incident_decision", args=[incident.pk]), _signals(), **HTMX)

    assert response.status_code == 200
    [entry] = _decisions(incident)
    assert entry.actor == commander
    assert entry.payload["verdict"] == "watch"
    assert entry.payload["rule"] == "error-rate-investigate"
    assert entry.payload["signals"]["error_rate"] == 12.5
    assert entry.payload["severity"] == "P2"
    assert "12.5 %" in entry.body
    # The partial comes back with the recorded verdict and the form refilled with the signals.
    html = response.content.decode()
    assert 'id="decision"' in html
    assert "investigate for 3 min more" in html
    assert 'value="12.5"' in html
    message = redis_listener.get_message(timeout=2)
    assert message is not None and json.loads(message["data"])["entry"] == entry.pk


def test_recording_without_htmx_goes_back_to_the_room(client, commander):
    incident = incident_open(severity="P1")
    response = client.post(reverse("incident_decision", args=[incident.pk]), _signals())
    assert response.status_code == 302
    assert response["Location"] == reverse("incident_room", args=[incident.pk]) + "#decision"
    assert _decisions(incident)[0].payload["verdict"] == "roll back"


def test_viewer_cannot_record_a_decision(client, roles):
    client.force_login(UserFactory(roles=["Viewer"]))
    incident = incident_open()
    response = client.post(reverse("incident_decision", args=[incident.pk]), _signals(), **HTMX)
    assert response.status_code == 403
    assert _decisions(incident) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"error_rate": "lots"}, "Enter a number."),
        ({"error_rate": "nan"}, "Enter a number."),
        ({"error_rate": "120"}, "less than or equal to 100"),
        ({"error_rate": "-1"}, "greater than or equal to 0"),
        ({"error_trend": "sideways"}, "Select a valid choice."),
        ({"error_rate": "7", "minutes_above": ""}, "how many minutes the error rate"),
        ({"p99_ms": "900"}, "Give the p99 baseline"),
        ({"p99_ms": "900", "p99_baseline_ms": "0"}, "Give the p99 baseline"),
        ({"pods_failing": "3"}, "Give the number of pods"),
        ({"pods_failing": "12", "pods_total": "10"}, "More pods failing (12) than in total (10)"),
        ({"pods_total": "0"}, "greater than or equal to 1"),
        ({"memory_percent": "1e400"}, "Enter a number."),
        ({"hotfix_minutes": "soon"}, "Enter a number."),
    ],
)
def test_bad_signals_answer_400_with_the_message_and_record_nothing(
    client, commander, overrides, message
):
    incident = incident_open()
    response = client.post(
        reverse("incident_decision", args=[incident.pk]), _signals(**overrides), **HTMX
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert _decisions(incident) == []


def test_bad_signals_without_htmx_answer_a_full_page(client, commander):
    incident = incident_open()
    response = client.post(
        reverse("incident_decision", args=[incident.pk]), _signals(error_rate="lots")
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "<html" in html and "Enter a number." in html
    assert reverse("incident_room", args=[incident.pk]) in html


def test_a_resolved_incident_takes_no_decision(client, commander):
    incident = incident_open()
    services.incident_change_status(incident=incident, to_status="resolved", actor=commander)
    response = client.post(reverse("incident_decision", args=[incident.pk]), _signals(), **HTMX)
    assert response.status_code == 400
    assert "resolved" in response.content.decode()
    assert _decisions(incident) == []


def test_unknown_incident_is_404(client, commander):
    response = client.post(reverse("incident_decision", args=[999999]), _signals(), **HTMX)
    assert response.status_code == 404


def test_preview_says_what_the_helper_would_decide_without_recording(client, commander):
    incident = incident_open(severity="P2")
    response = client.post(
        reverse("incident_decision_preview", args=[incident.pk]),
        _signals(memory_percent="93"),
        **HTMX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="decision-verdict"' in html
    assert "If recorded now" in html and "roll back" in html and "93 %" in html
    assert _decisions(incident) == []


def test_preview_of_bad_signals_answers_400(client, commander):
    incident = incident_open()
    response = client.post(
        reverse("incident_decision_preview", args=[incident.pk]), _signals(p99_ms="5"), **HTMX
    )
    assert response.status_code == 400
    assert "Give the p99 baseline" in response.content.decode()


def test_form_starts_from_the_last_recorded_signals(client, commander):
    incident = incident_open()
    client.post(
        reverse("incident_decision", args=[incident.pk]),
        _signals(error_rate="3", memory_percent="71"),
        **HTMX,
    )
    form = room_context(incident)["decision_form"]
    assert form.initial["memory_percent"] == 71
    assert form.initial["error_rate"] == 3


def test_viewer_sees_the_recorded_decision_but_no_form(client, roles):
    commander = UserFactory(roles=["Incident Commander"])
    incident = incident_open()
    decision_record(incident=incident, signals=Signals(memory_percent=97), actor=commander)
    client.force_login(UserFactory(roles=["Viewer"]))
    html = render_to_string(
        "incidents/_decision.html",
        {"incident": incident, "can_command": False} | room_context(incident),
    )
    assert "Memory at 97 %" in html
    assert f"by {commander.username}" in html
    assert "<form" not in html
