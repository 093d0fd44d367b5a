"""The real chain: a Prometheus rule fires on a metric this test serves, a real Alertmanager
groups it and calls the console's webhook over HTTP with its token, and an incident opens
with the signal on its timeline; when the metric recovers, the resolved alert lands too."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from alerts.models import Alert
from api.tokens import token_create
from devinfra.alertmanager import start_alertmanager
from devinfra.prometheus import MetricsExporter, start_prometheus
from incidents.models import Incident, TimelineKind
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

RULE = {
    "alert": "HighErrorRate",
    "expr": "http_requests_error_ratio > 0.05",
    "for": "0s",
    "labels": {"severity": "critical"},
    "annotations": {"summary": "error ratio {{ $value }} on {{ $labels.service }}"},
}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} did not happen within {timeout:g} s")


def test_a_prometheus_rule_firing_through_alertmanager_opens_an_incident(
    asgi_server, roles, tmp_path
):
    ServiceFactory(name="checkout")
    sender = UserFactory(username="alertmanager", roles=["Incident Commander"])
    _, token = token_create(user=sender, name="alertmanager", scopes=["alerts:write"])
    exporter = MetricsExporter.start()
    exporter.set("http_requests_error_ratio", 0.12, {"service": "checkout"})
    manager = start_alertmanager(
        f"{asgi_server.url}/api/v1/alerts/alertmanager", token, log_file=tmp_path / "am.log"
    )
    prometheus = start_prometheus(
        [exporter.target],
        rules=[RULE],
        alertmanagers=[manager.target],
        log_file=tmp_path / "prometheus.log",
    )
    try:
        wait_until(Incident.objects.exists, "an incident opened by the alert")
        incident = Incident.objects.get()
        assert incident.severity == "P1" and incident.services.get().name == "checkout"
        assert incident.title.startswith("HighErrorRate: error ratio 0.12 on checkout")
        signal = incident.timeline.get(kind=TimelineKind.ALERT_RECEIVED)
        assert signal.payload["labels"]["service"] == "checkout"
        assert "/graph?" in signal.payload["generator_url"]  # back to the rule's query

        exporter.set("http_requests_error_ratio", 0.01, {"service": "checkout"})
        wait_until(lambda: Alert.objects.filter(status="resolved").exists(), "the resolved alert")
        bodies = list(
            incident.timeline.filter(kind=TimelineKind.ALERT_RECEIVED)
            .order_by("order")
            .values_list("body", flat=True)
        )
        assert bodies[0].startswith("Alert firing on checkout")
        assert bodies[-1].startswith("Alert resolved on checkout")
        assert Incident.objects.count() == 1
    finally:
        prometheus.stop()
        manager.stop()
        exporter.stop()
