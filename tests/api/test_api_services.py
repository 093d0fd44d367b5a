"""A service's automatic rollback policy and signal queries over the API: read with `read`,
changed with `services:write` by an Incident Commander, through the page's forms and
services; a change is kept whole or not at all, and every refusal names its field."""

from __future__ import annotations

from typing import Any

import pytest

from api.tokens import token_create
from incidents.models import Service
from tests.api.conftest import ApiClient
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db
IC = ["Incident Commander"]
POLICY = {"enabled": True, "severities": ["P1", "P2"], "max_release_age_hours": 6, "start": False}
ERRORS_QUERY = 'sum(rate(http_errors_total{service="checkout"}[5m])) * 100'


@pytest.fixture
def checkout(roles) -> Service:
    return ServiceFactory(
        name="checkout", auto_rollback=POLICY, signal_queries={"error_rate": ERRORS_QUERY}
    )


def saved(service: Service) -> tuple[Any, Any]:
    service.refresh_from_db()
    return service.auto_rollback, service.signal_queries


def test_a_viewer_reads_the_policy_and_the_queries(api_as, checkout):
    response = api_as(["Viewer"], "read").call("get", "/services/checkout")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["auto_rollback"] == POLICY and body["auto_rollback_ignored"] == ""
    assert body["signal_queries"] == {"error_rate": ERRORS_QUERY}
    assert body["url"].endswith(f"/services/{checkout.pk}/releases")


def test_a_change_sets_the_fields_given_and_keeps_the_others(api_as, checkout):
    api = api_as(IC, "services:write")
    change = {
        "auto_rollback": {"severities": ["P0"], "start": True},
        "signal_queries": {"error_rate": "", "p99_ms": "histogram_quantile(0.99, 決済 🚀)"},
    }
    response = api.call("patch", "/services/checkout", change)
    assert response.status_code == 200, response.content
    policy, queries = saved(checkout)
    assert policy == {**POLICY, "severities": ["P0"], "start": True}
    assert queries == {"p99_ms": "histogram_quantile(0.99, 決済 🚀)"}
    assert response.json()["auto_rollback"] == policy
    assert response.json()["signal_queries"] == queries


def test_a_query_at_the_forms_limit_and_in_any_script_is_kept(api_as, checkout):
    query = ('errors{team="מחלקה\u202e",region="東京"} ' * 100)[:2000]
    api = api_as(IC, "services:write")
    response = api.call(
        "patch", "/services/checkout", {"signal_queries": {"memory_percent": query}}
    )
    assert response.status_code == 200, response.content
    assert saved(checkout)[1]["memory_percent"] == query.strip()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"auto_rollback": {"severities": ["P9"]}}, "auto_rollback.severities"),
        ({"auto_rollback": {"severities": ["重大"]}}, "auto_rollback.severities"),
        ({"auto_rollback": {"max_release_age_hours": 0}}, "auto_rollback.max_release_age_hours"),
        ({"auto_rollback": {"max_release_age_hours": 721}}, "auto_rollback.max_release_age_hours"),
        ({"auto_rollback": {"max_release_age_hours": "6"}}, "body.auto_rollback"),
        ({"auto_rollback": {"max_release_age_hours": 1.5}}, "body.auto_rollback"),
        ({"auto_rollback": {"enabled": "yes"}}, "body.auto_rollback.enabled"),
        ({"auto_rollback": "on"}, "body.auto_rollback"),
        ({"signal_queries": {"error_rate": "x" * 2001}}, "signal_queries.error_rate"),
        ({"signal_queries": {"errors 🚨": "up"}}, "signal_queries"),
        ({"signal_queries": {"error_rate\u202e": "up"}}, "signal_queries"),
        ({"signal_queries": {"error_rate": "up\x00"}}, "body"),
        ({"signal_queries": {"error_rate": 5}}, "body.signal_queries.error_rate"),
        ({}, "input"),
        # Both at once: the good half is not saved either.
        ({"auto_rollback": {"enabled": False}, "signal_queries": {"p99": "up"}}, "signal_queries"),
        (
            {"auto_rollback": {"severities": ["P5"]}, "signal_queries": {"p99_ms": "up"}},
            "auto_rollback.severities",
        ),
    ],
)
def test_a_change_it_cannot_take_names_the_field_and_saves_nothing(api_as, checkout, change, field):
    before = saved(checkout)
    response = api_as(IC, "services:write").call("patch", "/services/checkout", change)
    assert response.status_code == 400, response.content
    assert any(key.startswith(field) for key in response.json()["errors"]), response.json()
    assert saved(checkout) == before


def test_a_policy_stored_against_the_rules_is_shown_ignored_and_must_be_mended(api_as, checkout):
    Service.objects.filter(pk=checkout.pk).update(
        auto_rollback={"enabled": True, "severities": "P1"}
    )
    api = api_as(IC, "services:write", "read")
    shown = api.call("get", "/services/checkout").json()
    assert shown["auto_rollback"]["enabled"] is False
    assert "severities" in shown["auto_rollback_ignored"]
    kept_bad = api.call("patch", "/services/checkout", {"auto_rollback": {"start": True}})
    assert kept_bad.status_code == 400 and "auto_rollback.severities" in kept_bad.json()["errors"]
    mended = api.call("patch", "/services/checkout", {"auto_rollback": {"severities": ["P1"]}})
    assert mended.status_code == 200, mended.content
    assert mended.json()["auto_rollback_ignored"] == ""
    assert saved(checkout)[0] == {**POLICY, "severities": ["P1"]}


def test_changing_needs_the_scope_and_a_commander(api_as, checkout):
    change = {"auto_rollback": {"enabled": False}}
    before = saved(checkout)
    assert api_as(IC, "read").call("patch", "/services/checkout", change).status_code == 403
    responder = api_as(IC, "services:write").demote("Responder")
    denied = responder.call("patch", "/services/checkout", change)
    assert denied.status_code == 403 and "role" in denied.json()["detail"]
    assert api_as(IC, "services:write").call("get", "/services/checkout").status_code == 403
    # Staff may hold the scope (they import services), not set policies without the role.
    _, text = token_create(user=UserFactory(is_staff=True), name="infra", scopes=["services:write"])
    assert ApiClient(text).call("patch", "/services/checkout", change).status_code == 403
    assert saved(checkout) == before


@pytest.mark.parametrize(
    "path",
    [
        "/services/nope",
        "/services/checkout?environment=staging",
        "/services/checkout?environment=moon",
        "/services/%E7%B5%90%E5%B8%B3",
        "/services/" + "c" * 300,
    ],
)
def test_an_unknown_service_is_404(api_as, checkout, path):
    api = api_as(IC, "services:write", "read")
    assert api.call("get", path).status_code == 404
    change = {"auto_rollback": {"enabled": False}}
    assert api.call("patch", path, change).status_code == 404


def test_the_openapi_document_describes_services_discovery_and_the_watch(client):
    spec = client.get("/api/v1/openapi.json").json()
    for path, methods in {
        "/api/v1/services/{service}": {"get", "patch"},
        "/api/v1/discovery/{source}": {"get"},
        "/api/v1/discovery/{source}/import": {"post"},
    }.items():
        assert methods <= set(spec["paths"][path]), path
    schemas = spec["components"]["schemas"]
    assert "watch" in schemas["RunOut"]["properties"]
    assert {"auto_rollback", "signal_queries"} <= set(schemas["ServiceChange"]["properties"])
