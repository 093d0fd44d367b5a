"""A commander in Chromium adds a service by search, opens a row's options read from the
Kubernetes stand-in, drafts a scale to zero, previews it and runs it on a real worker."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from rollbacks.models import Run, RunState
from tests.chromium import log_in
from tests.factories import UserFactory
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import NAMESPACE, seed_deployment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]


def row(page: Page, service_id: int):
    return page.locator(f"#version-{service_id}")


def test_a_commander_scales_a_service_found_by_search_through_its_options(
    live_server, page, kube, start_worker
):
    UserFactory(username="ic", password="plan-it-well", roles=["Incident Commander", "Viewer"])
    for name in ("web", "orders-api"):
        seed_deployment(kube, name, [f"registry.local/{name}:v1", f"registry.local/{name}:v2"])
    web = KubeServiceFactory(name="web")
    orders = KubeServiceFactory(name="orders-api", description="Writes to orders-db")
    incident = IncidentFactory(title="Orders corrupted", severity="P3")
    incident.services.set([web])
    start_worker("plan-builder")
    page.set_default_timeout(20_000)

    log_in(page, live_server.url, "ic", "plan-it-well")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    expect(row(page, web.pk)).to_contain_text("registry.local/web:v2")  # asked live
    expect(row(page, orders.pk)).to_have_count(0)

    page.get_by_label("Add a service").fill("orders-db")
    page.locator("#plan-search-results").get_by_role("button", name="Add").click()
    expect(row(page, orders.pk)).to_contain_text("registry.local/orders-api:v2")
    expect(page.locator("#plan-search-results")).to_contain_text("No other service matches")

    orders_row = row(page, orders.pk)
    orders_row.locator("summary", has_text="Options").click()
    expect(orders_row.get_by_label("Revision")).to_contain_text("revision 2 (running)")
    orders_row.get_by_label("Operation", exact=True).select_option("scale")
    orders_row.get_by_label(re.compile("^Replicas")).fill("0")
    orders_row.get_by_label("orders-api").select_option(label="as the options say")
    row(page, web.pk).get_by_label("web").select_option("")
    page.get_by_role("button", name="Draft plan").click()

    run_card = page.locator("#runs")
    expect(run_card).to_contain_text("scale, replicas 0")
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(run_card).to_contain_text("replicas: 2 → 0")
    page.get_by_role("button", name="Request approval").click()
    page.get_by_label("Confirmation").fill("orders-api")
    page.get_by_role("button", name="Start rollback").click()

    run = Run.objects.get(incident=incident)
    deadline = time.monotonic() + 60
    while Run.objects.get(pk=run.pk).state in (RunState.APPROVED, RunState.RUNNING):
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    deployment = kube.get("deployments", NAMESPACE, "orders-api")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    expect(page.locator(f"#run-{run.pk}")).to_have_class(re.compile("run-succeeded"))
