"""Two people watch one incident in Chromium while a real worker rolls two Deployments back
on the Kubernetes stand-in; the console is served by uvicorn, as in production."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect

import rollbacks.services
from incidents import selectors
from incidents.models import TimelineEntry, TimelineKind
from rollbacks.models import Run, RunState
from rollbacks.services import StepSpec
from tests.chromium import log_in
from tests.factories import UserFactory
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import seed_deployment

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]


def watch(browser: Browser, base_url: str, username: str, incident_id: int) -> Page:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    log_in(page, base_url, username, "watch-it-live")
    page.goto(f"{base_url}/incidents/{incident_id}/")
    expect(page.locator("#live-status")).to_have_text("Live")
    return page


def shown_entry_ids(page: Page) -> list[int]:
    ids = page.locator("#timeline-rows > tr").evaluate_all("rows => rows.map(row => row.id)")
    return [int(row_id.removeprefix("entry-")) for row_id in ids]


def test_two_watchers_see_every_step_finish_and_lose_nothing_when_the_stream_drops(
    asgi_server, browser, kube, start_worker, settings
):
    settings.LIVE_RESYNC_SECONDS = 0.5
    kube.set_status_delay(2.0)  # each rollout settles 2 s after its change
    commander = UserFactory(
        username="ic", password="watch-it-live", roles=["Incident Commander", "Viewer"]
    )
    UserFactory(username="vic", password="watch-it-live", roles=["Viewer"])
    services = []
    for name in ("web", "api"):
        seed_deployment(kube, name, [f"registry.local/{name}:v1", f"registry.local/{name}:v2"])
        services.append(KubeServiceFactory(name=name))
    incident = IncidentFactory(title="Checkout errors after v2")
    incident.services.set(services)
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=s, previous=True, group=1, timeout_seconds=60) for s in services],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    assert run.state == RunState.APPROVED
    start_worker("live-room")

    commanding = watch(browser, asgi_server.url, "ic", incident.pk)
    watching = watch(browser, asgi_server.url, "vic", incident.pk)

    commanding.get_by_label("Confirmation").fill(run.expected_confirmation())
    commanding.get_by_role("button", name="Start rollback").click()
    for page in (commanding, watching):
        expect(page.locator("#runs .step-running").first).to_be_visible()

    # Drop every stream mid-run, as a server restart does; the pages reconnect by themselves.
    asgi_server.stop()
    for page in (commanding, watching):
        expect(page.locator("#live-status")).to_contain_text("interrupted")
    asgi_server.start()

    deadline = time.monotonic() + 60
    while Run.objects.get(pk=run.pk).state == RunState.RUNNING:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    # The run's finished notice is written by a task of its own, just after the run ends.
    while not TimelineEntry.objects.filter(
        incident=incident, kind=TimelineKind.COMMS_SENT, body__contains="finished"
    ).exists():
        assert time.monotonic() < deadline, "the finished notice was not written"
        time.sleep(0.2)
    written = [entry.pk for entry in selectors.incident_timeline(incident)]
    for page in (commanding, watching):
        expect(page.locator("#live-status")).to_have_text("Live")
        expect(page.locator(f"#run-{run.pk}")).to_have_class(re.compile(r"run-succeeded"))
        for step in run.steps.all():
            expect(page.locator(f"#step-{step.pk}")).to_have_class(re.compile(r"step-succeeded"))
            # Log lines kept streaming after the commander's own click re-rendered the room.
            expect(page.locator(f"#log-{step.pk}")).to_contain_text("rolled out")
        expect(page.locator(f"#entry-{written[-1]}")).to_be_visible()
        assert shown_entry_ids(page) == written
        page.context.close()


def test_the_rollback_panel_keeps_following_the_stream_after_its_first_update(
    asgi_server, browser, kube, start_worker, settings
):
    kube.set_status_delay(1.5)
    UserFactory(username="ic", password="watch-it-live", roles=["Incident Commander", "Viewer"])
    UserFactory(username="vic", password="watch-it-live", roles=["Viewer"])
    seed_deployment(kube, "web", ["registry.local/web:v1", "registry.local/web:v2"])
    service = KubeServiceFactory(name="web")
    incident = IncidentFactory(title="Checkout errors after v2")
    commander = get_user_model().objects.get(username="ic")
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=service, previous=True, timeout_seconds=60)],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    start_worker("live-panel")
    watching = watch(browser, asgi_server.url, "vic", incident.pk)

    rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")

    # Several panel updates arrive one after another, with no reload and no reconnection.
    expect(watching.locator(f"#run-{run.pk}")).to_have_class(re.compile(r"run-running"))
    expect(watching.locator("#runs .step-running")).to_be_visible()
    expect(watching.locator(f"#run-{run.pk}")).to_have_class(re.compile(r"run-succeeded"))
    watching.context.close()
