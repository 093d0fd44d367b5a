"""The demo shows verification: its health endpoints and metrics follow the Kubernetes
stand-in's live state, two services carry checks (one of them an automatic rollback policy
and a short bake time), and rolling storefront-web back to its
known-good release passes them (with a real Prometheus when one is installed, as bin/test
makes sure)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

import rollbacks.services
from devinfra.demo import DemoInfrastructure, environment, start_demo_infrastructure
from devinfra.demo_seeding import demo_alert_rules, with_verification
from incidents.demo import demo_load
from incidents.models import ChecklistItem, TimelineEntry, TimelineKind
from rollbacks.engine.inline import run_inline
from rollbacks.models import RunState
from rollbacks.services import StepSpec
from tests.conftest import TEST_REDIS_URL
from tests.factories import ensure_default_records, post_rollback_checklist_add
from tests.rollbacks.engine_factories import IncidentFactory

# Every test in one database group, so they run in this order: the last one rolls back.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfrastructure]:
    folder = tmp_path_factory.mktemp("demo")
    infrastructure = start_demo_infrastructure(
        state_file=folder / "demo-infra.json", status_delay=0.2, redis_url=TEST_REDIS_URL
    )
    with environment(infrastructure.hosted.env() if infrastructure.hosted else {}):
        yield infrastructure
    infrastructure.stop()


def _service(demo: DemoInfrastructure, name: str) -> dict[str, Any]:
    state = json.loads(Path(demo.state_file).read_text())
    return next(service for service in state["services"] if service["name"] == name)


def test_the_demo_gives_two_services_health_pod_and_error_rate_checks(demo):
    kinds = {
        name: [check["kind"] for check in _service(demo, name)["target_config"]["checks"]]
        for name in ("storefront-web", "payments-api")
    }

    assert kinds == {
        "storefront-web": ["http", "kubernetes_pods", "prometheus"],
        "payments-api": ["http", "kubernetes_pods", "prometheus"],
    }
    assert "checks" not in _service(demo, "checkout")["target_config"]
    # payments-api rolls back by itself on its alert and bakes releases into known-good.
    payments = _service(demo, "payments-api")
    assert payments["auto_rollback"]["enabled"] and payments["known_good_bake_minutes"] == 2
    assert _service(demo, "storefront-web")["known_good_bake_minutes"] == 0


def test_every_demo_query_and_alert_rule_names_a_series_the_demo_exports(demo):
    exported = set(re.findall(r'service="([^"]+)"', demo.health.metrics()))
    asked = [rule["expr"] for rule in demo_alert_rules()]
    for name in ("storefront-web", "payments-api"):
        service = _service(demo, name)
        asked += list(service["signal_queries"].values())
        asked += [c["query"] for c in service["target_config"]["checks"] if "query" in c]
    assert len(asked) == 6
    for query in asked:
        assert set(re.findall(r'service="([^"]+)"', query)) <= exported, query


def test_without_prometheus_the_demo_leaves_the_error_rate_check_out(demo):
    services = with_verification(demo.services, demo.health, None)

    web = next(service for service in services if service.name == "storefront-web")
    assert [check["kind"] for check in web.target_config["checks"]] == ["http", "kubernetes_pods"]


def test_the_demo_health_endpoint_reports_degraded_while_the_bad_release_crash_loops(demo):
    answer = requests.get(demo.health.health_url("storefront", "web"), timeout=5)

    assert answer.status_code == 503
    assert answer.json()["status"] == "degraded" and answer.json()["version"] == "v2.4.1"
    assert demo.prometheus is not None
    assert demo.prometheus.wait_for_value(
        'demo_http_error_ratio{service="storefront-web"}', 0.31, timeout=30
    )


def test_rolling_storefront_web_back_in_the_demo_passes_its_verification(demo, settings):
    settings.KUBE_HOST = demo.kube.url
    ensure_default_records()  # the checklist templates demo_load expects
    loaded = demo_load(infra_file=demo.state_file, password="demo-password")
    web = next(service for service in loaded.services if service.name == "storefront-web")
    incident = IncidentFactory()
    post_rollback_checklist_add(incident)
    commander = loaded.incident.commander
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=web, release=web.releases.get(version="v2.4.0"))],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    run = rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation="storefront-web", enqueue=False
    )

    run = run_inline(run.pk)

    results = {
        entry.payload["check"]: (entry.payload["outcome"], entry.payload["observed"])
        for entry in TimelineEntry.objects.filter(
            incident=incident, kind=TimelineKind.CHECK_RESULT, payload__phase="verification"
        )
    }
    assert run.state == RunState.SUCCEEDED, (run.failure_reason, results)
    assert results == {
        "health endpoint": ("passed", "200, version=v2.4.0"),
        "pods ready": ("passed", "3/3 ready, most restarts 0"),
        "error rate": ("passed", 0.004),
    }
    ticked = set(
        ChecklistItem.objects.filter(
            checklist__incident=incident, done_automatically=True
        ).values_list("check_key", flat=True)
    )
    assert ticked == {"http_health", "pods_healthy", "error_rate"}
