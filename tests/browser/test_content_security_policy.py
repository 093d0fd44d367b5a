"""Every console page is served under a Content-Security-Policy that allows nothing but the
console itself, and nothing on them breaks it: Chromium reports no violation while a
commander walks the dashboard, the room (plan builder, a drafted plan previewed through
htmx, the live stream), the status desk, the post-mortem, the playbooks and the admin."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, expect

from tests.chromium import log_in
from tests.factories import UserFactory, ensure_default_records
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]


def test_no_console_page_breaks_the_policy(live_server, page, kube, roles):
    ensure_default_records()
    UserFactory(
        username="ic",
        password="strict-policy",
        roles=["Incident Commander", "Support Lead", "Viewer"],
        is_staff=True,
        is_superuser=True,
    )
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    web = KubeServiceFactory(name="web")
    incident = IncidentFactory(title="Checkout down")
    incident.services.set([web])
    violations: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", collect)
    log_in(page, live_server.url, "ic", "strict-policy")
    room = f"{live_server.url}/incidents/{incident.pk}/"
    response = page.goto(room)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    expect(page.locator(f"#version-{web.pk}")).to_contain_text("registry.local/web:v2")
    page.get_by_label("web", exact=True).select_option(label="previous revision")
    page.get_by_role("button", name="Draft plan").click()
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(page.locator("#runs")).to_contain_text("registry.local/web:v1")
    for path in (
        "/",
        "/incidents/",
        f"/incidents/{incident.pk}/status-page/",
        f"/incidents/{incident.pk}/postmortem/",
        "/playbooks/",
        f"/services/{web.pk}/releases",
        "/account/api-tokens/",
        "/api/v1/docs",
        "/status/",
        "/admin/",
        f"/admin/incidents/service/{web.pk}/change/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")

    assert violations == []
