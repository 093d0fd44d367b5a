"""The decision helper reads its signals from a real Prometheus: each service's queries,
the worst service per signal (a p99 with its own baseline), how long the error rate has been
above the watch level and its trend; failures leave the signal blank and say why."""

from __future__ import annotations

import uuid

import pytest
from django.urls import reverse

from incidents.decisions.readings import above_and_trend, clean_queries, signals_read
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def metrics(signals_exporter, signals_prometheus, settings):
    exporter, prometheus = signals_exporter, signals_prometheus
    settings.PROMETHEUS_URL = prometheus.url
    name = f"app_{uuid.uuid4().hex[:10]}"
    values = {
        ("errors", "checkout"): 12.5,
        ("errors", "cart"): 3.0,
        ("p99", "checkout"): 400.0,
        ("base", "checkout"): 300.0,
        ("p99", "cart"): 900.0,
        ("base", "cart"): 300.0,
        ("mem", "checkout"): 71.0,
    }
    for (kind, service), value in values.items():
        exporter.set(f"{name}_{kind}", value, {"service": service})
    prometheus.wait_for_value(f'{name}_mem{{service="checkout"}}', 71.0)
    prometheus.wait_for_value(f'{name}_base{{service="cart"}}', 300.0)
    return name


def service_reading(name: str, service: str) -> dict[str, str]:
    return {
        "error_rate": f'{name}_errors{{service="{service}"}}',
        "p99_ms": f'{name}_p99{{service="{service}"}}',
        "p99_baseline_ms": f'{name}_base{{service="{service}"}}',
        "memory_percent": f'{name}_mem{{service="{service}"}}',
    }


def test_the_worst_service_gives_each_signal(metrics):
    checkout = ServiceFactory(name="checkout", signal_queries=service_reading(metrics, "checkout"))
    cart = ServiceFactory(name="cart", signal_queries=service_reading(metrics, "cart"))
    reading = signals_read([checkout, cart], watch_level=5)
    assert reading.values["error_rate"] == 12.5 and reading.sources["error_rate"] == "checkout"
    # cart's p99 is 3× its baseline, checkout's 1.3×: the pair comes from cart.
    assert (reading.values["p99_ms"], reading.values["p99_baseline_ms"]) == (900.0, 300.0)
    assert reading.sources["p99_ms"] == "cart"
    assert reading.values["memory_percent"] == 71.0
    assert reading.minutes_above is not None and reading.minutes_above >= 0
    assert reading.problems == ["cart memory_percent: no sample"]


def test_a_query_that_fails_or_a_prometheus_that_is_down_leaves_it_blank(metrics, settings):
    broken = ServiceFactory(
        name="checkout", signal_queries={"error_rate": "sum(", "memory_percent": "nope_metric"}
    )
    reading = signals_read([broken], watch_level=5)
    assert reading.values == {}
    assert any("error_rate: ValueError" in problem for problem in reading.problems)
    assert "checkout memory_percent: no sample" in reading.problems
    settings.PROMETHEUS_URL = "http://127.0.0.1:1"
    down = signals_read([broken], watch_level=5)
    assert down.values == {} and "ConnectionError" in " ".join(down.problems)
    assert signals_read([ServiceFactory()], watch_level=5).problems == [
        "no service of this incident names Prometheus queries"
    ]


@pytest.mark.parametrize(
    ("values", "minutes", "trend"),
    [
        ([1, 2, 6, 7, 8, 9, 9, 9, 9, 9, 9, 12, 14], 5.0, "rising"),
        ([9] * 20, 9.5, "steady"),
        ([20] * 10 + [12] * 10, 9.5, "falling"),
        ([9, 9, 2], 0.0, "steady"),  # not five minutes of history yet
        ([], 0.0, "steady"),
    ],
)
def test_how_long_above_and_the_trend_come_from_the_history(values, minutes, trend):
    points = [(1000.0 + 30 * i, float(v)) for i, v in enumerate(values)]
    assert above_and_trend(points, 5) == (minutes, trend)


@pytest.mark.parametrize(
    ("queries", "says"),
    [
        ({"latency": "x"}, "latency: not a signal"),
        ({"error_rate": "x" * 2001}, "error_rate: a query is at most 2000"),
        ({"error_rate": "up\x00"}, "error_rate: a query is at most"),
    ],
)
def test_queries_are_checked_by_signal(queries, says):
    with pytest.raises(ValueError, match=says):
        clean_queries(queries)


def test_the_room_reads_the_signals_into_the_helper(client, roles, metrics):
    checkout = ServiceFactory(name="checkout", signal_queries=service_reading(metrics, "checkout"))
    incident = incident_open(services=[checkout], severity="P2")
    client.force_login(UserFactory(roles=["Incident Commander"]))
    response = client.get(
        reverse("incident_decision_read", args=[incident.pk]), HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert response.status_code == 200 and "Read from Prometheus at" in page
    assert 'value="12.5"' in page and "error_rate from checkout" in page
    assert "If recorded now" in page  # the helper's verdict on what was read


def test_a_commander_sets_the_queries_on_the_service_page(client, roles):
    service = ServiceFactory(name="checkout")
    url = reverse("service_releases", args=[service.pk])
    client.force_login(UserFactory(roles=["Viewer"]))
    assert client.post(url, {"action": "signals", "error_rate": "up"}).status_code == 403
    client.force_login(UserFactory(roles=["Incident Commander"]))
    saved = client.post(url, {"action": "signals", "error_rate": ' rate(x{s="結帳"}[5m]) '})
    assert saved.status_code == 302
    service.refresh_from_db()
    assert service.signal_queries == {"error_rate": 'rate(x{s="結帳"}[5m])'}
    too_long = client.post(url, {"action": "signals", "memory_percent": "x" * 2001})
    assert too_long.status_code == 400


def test_infinite_or_undefined_answers_leave_the_signal_blank(metrics):
    service = ServiceFactory(
        name="checkout",
        signal_queries={
            "error_rate": "vector(1/0)",
            "pods_failing": "vector(-1/0)",
            "p99_ms": "vector(0/0)",
            "p99_baseline_ms": "1/0",
            "memory_percent": "2 * 35",
        },
    )
    reading = signals_read([service], watch_level=5)
    assert reading.values == {"memory_percent": 70.0}
    assert reading.initial()["memory_percent"] == 70.0
    assert {"checkout error_rate: no sample", "checkout pods_failing: no sample"} <= set(
        reading.problems
    )
