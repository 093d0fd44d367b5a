"""The support lead's path in a real browser: draft → live preview → publish → visible on
the public page to a visitor who is not logged in."""

import pytest
from playwright.sync_api import expect

from statuspage.models import Component, Revision
from tests.chromium import log_in
from tests.factories import ServiceFactory, UserFactory, incident_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_support_lead_drafts_previews_and_publishes_to_the_public_page(
    live_server, browser, page, roles
):
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    service = ServiceFactory(name="checkout")
    component = Component.objects.create(name="Checkout", position=1)
    component.services.set([service])
    incident = incident_open(title="Checkout errors after v2.4.0", services=[service])

    log_in(page, live_server.url, "sam", "tell-them-early")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    page.get_by_role("link", name="Status page & comms").click()
    expect(page.get_by_role("heading", name="Status page & comms")).to_be_visible()

    page.get_by_label("Public name").fill("Payments failing at checkout")
    page.get_by_label("Public status").select_option("identified")
    page.get_by_label("Checkout").select_option("partial_outage")
    body = page.get_by_label("Update (Markdown)")
    body.fill("")
    body.press_sequentially("We found the **faulty release** and are rolling it back.")
    preview = page.locator("#preview")
    expect(preview.locator("strong")).to_have_text("faulty release")
    expect(preview).to_contain_text("Payments failing at checkout")

    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#desk-flash")).to_contain_text("Revision 1 is live")
    expect(page.locator("#revision-1")).to_contain_text("by sam")
    assert Revision.objects.get().status == "identified"

    visitor = browser.new_context()
    public = visitor.new_page()
    public.goto(f"{live_server.url}/status/")
    expect(public.get_by_role("heading", name="Payments failing at checkout")).to_be_visible()
    expect(public.locator(".public-update .rendered strong")).to_have_text("faulty release")
    expect(public.locator(f"#component-{component.pk}")).to_contain_text("Partial outage")
    expect(public.locator("#overall")).to_have_text("Partial system outage")
    visitor.close()


def test_two_support_leads_editing_at_once_see_the_conflict_instead_of_overwriting(
    live_server, browser, page, roles
):
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    UserFactory(username="alex", password="tell-them-often", roles=["Support Lead"])
    incident = incident_open(title="Search is slow")
    desk = f"{live_server.url}/incidents/{incident.pk}/status-page/"

    other_context = browser.new_context()
    other = other_context.new_page()
    log_in(other, live_server.url, "alex", "tell-them-often")
    log_in(page, live_server.url, "sam", "tell-them-early")
    other.goto(desk)
    page.goto(desk)  # both editors start from the same (unsaved) draft

    other.get_by_label("Update (Markdown)").fill("Alex: search results are delayed.")
    other.get_by_role("button", name="Save draft").click()
    expect(other.locator("#desk-flash")).to_contain_text("Draft saved (version 1)")

    page.get_by_label("Update (Markdown)").fill("Sam: we are looking into search.")
    page.get_by_role("button", name="Save draft").click()
    conflict = page.locator("#conflict")
    expect(conflict).to_contain_text("Saved meanwhile by alex")
    expect(conflict).to_contain_text("Alex: search results are delayed.")
    expect(page.get_by_label("Update (Markdown)")).to_have_value("Sam: we are looking into search.")
    other_context.close()
