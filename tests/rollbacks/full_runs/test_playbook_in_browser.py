"""The database recovery playbook, run in Chromium as the people who run it: the commander
fills its parameters in the room, previews and asks for approval; the on-call engineer and
the DBA approve from their own browsers; the commander types the confirmation and watches
the five groups go through on a real worker — writers scaled to zero on the Kubernetes
stand-in, the RDS snapshot restored on moto and the secret switched, writers restarted and
scaled back, the data checked by a registered command — to Succeeded."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Browser, Page, expect

from devinfra.demo_services import seed_commands, seed_database
from playbooks.models import Playbook
from playbooks.services import playbook_save
from rollbacks.models import Run, RunState
from tests.chromium import log_in
from tests.factories import UserFactory
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import NAMESPACE, seed_deployment, wait_for
from tests.rollbacks.full_runs.conftest import BUILTIN, assert_secret_switched, console_service

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("policies"),
]

WRITERS = ("orders-api", "orders-worker")


def approve_as(browser: Browser, base_url: str, username: str, incident_id: int) -> None:
    """Sign in as `username` in a browser of their own and press Approve."""
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        log_in(page, base_url, username, "approve-it-well")
        page.goto(f"{base_url}/incidents/{incident_id}/")
        approvals = page.locator("#approvals")
        approvals.get_by_role("button", name="Approve").click()
        expect(approvals).to_contain_text(f"{username} approved")
    finally:
        context.close()


def replicas(kube, name: str) -> int:
    deployment = kube.get("deployments", NAMESPACE, name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_the_database_recovery_playbook_runs_to_succeeded_in_the_browser(
    live_server,
    page: Page,
    browser: Browser,
    kube,
    infra,
    health,
    worker,
    orders_database,
    settings,
    tmp_path,
):
    commander = UserFactory(
        username="ic", password="run-it-well", roles=["Incident Commander", "Viewer"]
    )
    UserFactory(username="oncall", password="approve-it-well", roles=["Approver", "On-call"])
    UserFactory(username="dba", password="approve-it-well", roles=["Approver", "DBA"])
    if not Playbook.objects.filter(name="database-recovery").exists():
        source = (BUILTIN / "database-recovery.yaml").read_text()
        playbook_save(source=source, actor=commander)
    for name in WRITERS:
        seed_deployment(kube, name, [f"registry.local/{name}:v1"], replicas=3)
        KubeServiceFactory(name=name)
    database = console_service(seed_database(infra), health.url)
    commands_file = tmp_path / "commands.json"
    _, integrity = seed_commands(orders_database, commands_file)
    settings.REGISTERED_COMMANDS = json.loads(commands_file.read_text())
    console_service(integrity, health.url)
    incident = IncidentFactory(title="Order totals wrong since migration 42", severity="P2")
    incident.services.set([database])
    worker(REGISTERED_COMMANDS_FILE=str(commands_file))
    page.set_default_timeout(20_000)

    log_in(page, live_server.url, "ic", "run-it-well")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    card = page.locator("#playbook-card")
    card.get_by_label("Playbook").select_option("database-recovery")
    card.get_by_label("Database to restore").select_option("orders-db")
    card.get_by_label("Services that write to it").select_option(list(WRITERS))
    card.get_by_label("Restore from").fill("snapshot")
    card.get_by_label("Snapshot", exact=True).fill("orders-db-schema-41")
    card.get_by_label("Integrity check").select_option("orders-integrity")
    card.get_by_role("button", name="Draft plan").click()

    runs = page.locator("#runs")
    expect(runs).to_contain_text(re.compile(r"Playbook database-recovery v\d"))
    for label in ("Stop the writes", "Restart the writers on the restored database"):
        expect(runs.get_by_text(label)).to_have_count(1)  # once per group, not per step
    page.get_by_role("button", name="Preview (dry run)").click()
    expect(runs).to_contain_text("replicas: 3 → 0")
    page.get_by_role("button", name="Request approval").click()
    expect(page.locator("#approvals")).to_contain_text("still missing")
    for approver in ("oncall", "dba"):
        approve_as(browser, live_server.url, approver, incident.pk)

    run = Run.objects.get(incident=incident)
    wait_for(lambda: Run.objects.get(pk=run.pk).state == RunState.APPROVED, 20, "approval")
    page.reload()
    page.get_by_label("Confirmation").fill(run.expected_confirmation())
    page.get_by_role("button", name="Start rollback").click()
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 120, "the run to finish")

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    expect(page.locator(f"#run-{run.pk}")).to_have_class(re.compile("run-succeeded"))
    assert [replicas(kube, name) for name in WRITERS] == [3, 3]
    assert_secret_switched(infra)
    states = list(run.steps.order_by("position").values_list("group", "state"))
    assert [group for group, _ in states] == [1, 1, 2, 3, 3, 4, 5, 5]
    assert {state for _, state in states} == {"succeeded"}
