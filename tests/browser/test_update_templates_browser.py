"""The support lead keeps update templates and starts an update from one in a real browser:
a template added on the templates page (a typo in a placeholder refused beside its field
first), then chosen on an incident's desk, which fills the draft from the incident."""

from importlib import import_module

import pytest
from django.apps import apps
from playwright.sync_api import expect

from statuspage.models import Component, Draft, UpdateTemplate
from tests.chromium import log_in
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_support_lead_adds_a_template_and_starts_the_draft_from_it(live_server, page, roles):
    # A transactional test before this one may have emptied the tables the migrations fill.
    import_module("statuspage.migrations.0002_default_texts").add_texts(apps, None)
    import_module("statuspage.migrations.0007_update_templates_from_defaults").templates_from_texts(
        apps, None
    )
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    checkout = Component.objects.create(name="Checkout", position=1)
    checkout.services.add(ServiceFactory(name="checkout"))
    incident = incident_open(services=list(checkout.services.all()), severity="P1")

    log_in(page, live_server.url, "sam", "tell-them-early")
    page.get_by_role("link", name="Templates").click()
    expect(page.get_by_role("heading", name="Update templates")).to_be_visible()
    form = page.locator("form").filter(has=page.get_by_role("button", name="Add template"))
    form.get_by_label("Name").fill("Payments slow")
    form.get_by_label("Public title").fill("Slow payments: {components}")
    form.get_by_label("Update (Markdown)").fill("Payments are slow since {startde_at}.")
    form.get_by_label("Public status").select_option("identified")
    form.get_by_role("button", name="Add template").click()
    expect(page.locator("#templates-error")).to_contain_text("unknown placeholder {startde_at}")
    assert not UpdateTemplate.objects.filter(name="Payments slow").exists()

    form = page.locator("form").filter(has=page.get_by_role("button", name="Add template"))
    form.get_by_label("Update (Markdown)").fill("Payments are slow since {started_at}.")
    form.get_by_label("Checkout").check()
    form.get_by_label("Their state").select_option("degraded_performance")
    form.get_by_role("button", name="Add template").click()
    expect(page.locator("#templates-flash")).to_contain_text("Template Payments slow added.")

    page.goto(f"{live_server.url}/incidents/{incident.pk}/status-page/")
    page.get_by_label("Start the draft from the template").select_option(
        label="Payments slow (identified)"
    )
    page.get_by_role("button", name="Start from template").click()
    expect(page.locator("#desk-flash")).to_contain_text("from the template Payments slow")
    expect(page.get_by_label("Public name")).to_have_value("Slow payments: Checkout")
    draft = Draft.objects.get(incident=incident)
    assert draft.status == "identified" and draft.body.startswith("Payments are slow since ")
    assert draft.component_statuses == {str(checkout.pk): "degraded_performance"}
