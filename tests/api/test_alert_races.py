"""Notifications arriving at the same moment, in transactions of their own: alert groups
firing together for one service open one incident, and the same alert sent in two groups
is stored once, with no error for either sender."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from alerts import services
from alerts.models import Alert
from alerts.services import IncomingAlert, notification_receive
from incidents.models import Incident
from tests.factories import ServiceFactory

pytestmark = pytest.mark.django_db(transaction=True)
STARTED = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def firing(name: str, fingerprint: str, service: str = "checkout") -> IncomingAlert:
    labels = {"alertname": name, "service": service, "severity": "critical"}
    return IncomingAlert("firing", labels, {}, STARTED, fingerprint=fingerprint)


def at_once(monkeypatch, *bodies: tuple[bytes, IncomingAlert]) -> list[object]:
    """Each notification in its own thread; both wait for the other just before they handle
    their alerts (up to a second: a sender queued behind a lock never gets there)."""
    meet = threading.Barrier(len(bodies), timeout=1)
    handle = services.handle_alert

    def handle_together(alert, outcome):
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        handle(alert, outcome)

    monkeypatch.setattr(services, "handle_alert", handle_together)
    results: list[object] = [None] * len(bodies)

    def send(index: int, body: bytes, alert: IncomingAlert) -> None:
        try:
            results[index] = notification_receive(
                body=body, status="firing", receiver="r", group_key=body.decode(), alerts=[alert]
            )
        except Exception as error:  # noqa: BLE001  (the test reports it)
            results[index] = error
        finally:
            connection.close()

    threads = [
        threading.Thread(target=send, args=(index, body, alert))
        for index, (body, alert) in enumerate(bodies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_alert_groups_firing_at_once_open_one_incident(monkeypatch):
    ServiceFactory(name="checkout")
    results = at_once(
        monkeypatch,
        (b"group one", firing("HighErrorRate", "a1")),
        (b"group two", firing("HighLatency", "b2")),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Incident.objects.count() == 1
    assert set(Alert.objects.values_list("incident", flat=True)) == {Incident.objects.get().pk}


def test_one_alert_in_two_groups_at_once_is_stored_once(monkeypatch):
    results = at_once(
        monkeypatch,
        (b"group one", firing("Unowned", "same", service="nobody")),
        (b"group two", firing("Unowned", "same", service="nobody")),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Alert.objects.count() == 1
