"""Alerts in: Alertmanager's webhook payload (version 4) and Grafana's, turned into
incidents and timeline entries, idempotent, all or nothing, every refusal a 400 naming
the field."""

from __future__ import annotations

import copy
import json

import pytest
from django.test import TestCase

from alerts.models import Alert, AlertNotification
from alerts.signals import alert_fired
from incidents.models import Incident, IncidentStatus, TimelineKind
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db
PATH = "/alerts/alertmanager"


def alert(name="HighErrorRate", service="checkout", status="firing", fingerprint="a1", **more):
    return {
        "status": status,
        "labels": {"alertname": name, "service": service, "severity": "critical", **more},
        "annotations": {"summary": "5xx above 5% for 2 minutes", "description": "p99 ×3"},
        "startsAt": "2026-12-04T03:00:00.000Z",
        "endsAt": "2026-12-04T03:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=rate",
        "fingerprint": fingerprint,
    }


def notification(*alerts, status="firing", group='{}:{alertname="HighErrorRate"}'):
    return {
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "backout",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@pytest.fixture
def checkout():
    return ServiceFactory(name="checkout")


@pytest.fixture
def sender(api_as):
    return api_as(["Incident Commander"], "alerts:write")


def entries(incident, kind=TimelineKind.ALERT_RECEIVED):
    return list(incident.timeline.filter(kind=kind).order_by("order"))


def test_a_firing_alert_opens_an_incident_with_its_signal(sender, checkout):
    response = sender.call("post", PATH, notification(alert()))
    assert response.status_code == 200, response.content
    incident = Incident.objects.get()
    assert response.json()["opened"] == [incident.pk]
    assert incident.severity == "P1" and list(incident.services.all()) == [checkout]
    assert incident.title == "HighErrorRate: 5xx above 5% for 2 minutes"
    assert incident.timeline.get(kind=TimelineKind.INCIDENT_OPENED).actor_label == "alertmanager"
    (signal,) = entries(incident)
    assert "Alert firing on checkout" in signal.body
    assert signal.payload["labels"]["severity"] == "critical"
    assert signal.payload["fingerprint"] == "a1"


def test_the_same_notification_twice_counts_once(sender, checkout):
    body = notification(alert())
    sender.call("post", PATH, body)
    again = sender.call("post", PATH, body)
    assert again.json()["duplicate"] is True
    assert Incident.objects.count() == 1 and AlertNotification.objects.count() == 1
    # Alertmanager repeats a firing group with another group state: nothing new either.
    repeat = copy.deepcopy(body)
    repeat["truncatedAlerts"] = 1
    assert sender.call("post", PATH, repeat).json()["joined"] == []
    assert len(entries(Incident.objects.get())) == 1


def test_alerts_join_the_open_incident_and_resolve_on_it(sender, checkout):
    sender.call("post", PATH, notification(alert()))
    incident = Incident.objects.get()
    joined = sender.call("post", PATH, notification(alert("Latency", fingerprint="b2")))
    assert joined.json()["joined"] == [incident.pk] and Incident.objects.count() == 1

    resolved = sender.call("post", PATH, notification(alert(status="resolved"), status="resolved"))
    assert resolved.json()["resolved"] == ["HighErrorRate"]
    row = Alert.objects.get(fingerprint="a1")
    assert row.status == "resolved" and row.ends_at is not None
    assert [e.body.split(":")[0] for e in entries(incident)] == [
        "Alert firing on checkout",
        "Alert firing on checkout",
        "Alert resolved on checkout",
    ]

    # Firing again later (a new start): the same open incident, by fingerprint.
    refire = alert()
    refire["startsAt"] = "2026-12-04T03:30:00Z"
    assert sender.call("post", PATH, notification(refire)).json()["joined"] == [incident.pk]


def test_after_the_incident_is_resolved_a_new_one_opens(sender, checkout):
    sender.call("post", PATH, notification(alert()))
    Incident.objects.update(status=IncidentStatus.RESOLVED)
    refire = alert()
    refire["startsAt"] = "2026-12-04T04:00:00Z"
    opened = sender.call("post", PATH, notification(refire)).json()["opened"]
    assert len(opened) == 1 and Incident.objects.count() == 2


def test_an_alert_naming_no_known_service_is_recorded_unmatched(sender, checkout):
    response = sender.call(
        "post", PATH, notification(alert(service="nope"), alert(service="", fingerprint="b"))
    )
    assert response.json()["unmatched"] == ["HighErrorRate", "HighErrorRate"]
    assert not Incident.objects.exists() and Alert.objects.count() == 2


def test_grafanas_webhook_is_read_as_well(sender, checkout):
    grafana = notification(alert(fingerprint="c0ffee"))
    grafana.update(version="1", orgId=1, state="alerting", title="[FIRING:1] HighErrorRate")
    grafana["alerts"][0].update(values={"B": 0.07}, valueString="[ var='B' value=0.07 ]")
    response = sender.call("post", PATH, grafana)
    assert response.status_code == 200 and len(response.json()["opened"]) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda n: n.update(version="3"), "version"),
        (lambda n: n.update(status="pending"), "status"),
        (lambda n: n["alerts"][0].update(status="weird"), "alerts.0.status"),
        (lambda n: n["alerts"][0].pop("startsAt"), "body.alerts.0.startsAt"),
        (lambda n: n["alerts"][0]["labels"].update(team={"a": 1}), "body.alerts.0.labels.team"),
        (lambda n: n["alerts"][0]["labels"].update(x="\x00"), "body"),
        (lambda n: n["alerts"][0]["annotations"].update(summary="x" * 10_001), "alerts.0"),
        (lambda n: n.update(alerts=[alert(fingerprint=str(i)) for i in range(1001)]), "detail"),
    ],
)
def test_a_bad_notification_is_refused_whole_and_names_why(sender, checkout, change, field):
    body = notification(alert(), alert("Second", fingerprint="b2"))
    change(body)
    response = sender.call("post", PATH, body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert field == "detail" or field in answer.get("errors", {}), answer
    assert not AlertNotification.objects.exists() and not Alert.objects.exists()
    assert not Incident.objects.exists()


def test_long_and_non_latin_text_is_kept_within_the_incidents_limits(sender, checkout):
    long_alert = alert(name="結帳エラー🔥")
    long_alert["annotations"] = {"summary": "שגיאה " * 1500, "description": "<b>x</b>" * 1200}
    response = sender.call("post", PATH, notification(long_alert))
    assert response.status_code == 200, response.content
    incident = Incident.objects.get()
    assert incident.title.startswith("結帳エラー🔥: שגיאה") and len(incident.title) == 200
    assert len(entries(incident)[0].body) <= 5000


def test_sending_alerts_needs_the_alerts_scope(api_as, checkout):
    reader = api_as(["Incident Commander"], "read", "incidents:write")
    assert reader.call("post", PATH, notification(alert())).status_code == 403
    assert not Incident.objects.exists()


def test_a_resolved_alert_never_seen_firing_is_recorded_without_an_incident(sender, checkout):
    body = notification(alert(status="resolved"), status="resolved")
    assert sender.call("post", PATH, json.loads(json.dumps(body))).status_code == 200
    assert not Incident.objects.exists()
    assert Alert.objects.get().status == "resolved"


def test_a_start_time_without_an_offset_is_taken_as_utc(sender, checkout):
    naive = alert()
    naive["startsAt"], naive["endsAt"] = "2026-12-04T03:00:00", "2026-12-04T03:10:00"
    response = sender.call("post", PATH, notification(naive))
    assert response.status_code == 200, response.content
    assert Alert.objects.get().starts_at.isoformat() == "2026-12-04T03:00:00+00:00"


def test_one_notification_tells_the_automation_once_per_incident_and_service(sender, checkout):
    heard = []

    def hear(**kwargs):
        heard.append((kwargs["incident_id"], kwargs["service_id"]))

    alert_fired.connect(hear)
    try:
        many = [alert(name=f"Alert{i}", fingerprint=f"f{i}") for i in range(5)]
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert sender.call("post", PATH, notification(*many)).status_code == 200
    finally:
        alert_fired.disconnect(hear)
    assert heard == [(Incident.objects.get().pk, checkout.pk)]
