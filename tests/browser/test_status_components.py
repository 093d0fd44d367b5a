"""The support lead lays out the public page's components in a real browser: a group, a
component fed by two services, a refusal shown beside its field, a move and a delete,
then a visitor who is not signed in sees the group with its component."""

import pytest
from playwright.sync_api import expect

from statuspage.models import Component
from tests.chromium import log_in
from tests.factories import ServiceFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_support_lead_lays_out_groups_and_components_for_customers(
    live_server, browser, page, roles
):
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    ServiceFactory(name="checkout")
    ServiceFactory(name="payments-api")
    Component.objects.create(name="Search", position=1)

    log_in(page, live_server.url, "sam", "tell-them-early")
    page.get_by_role("link", name="Components").click()
    expect(page.get_by_role("heading", name="Status page components")).to_be_visible()

    group_form = page.locator("form").filter(has=page.get_by_role("button", name="Add group"))
    group_form.get_by_label("Name").fill("Online store")
    group_form.get_by_role("button", name="Add group").click()
    expect(page.locator("#components-flash")).to_contain_text("Group Online store added.")

    form = page.locator("form").filter(has=page.get_by_role("button", name="Add component"))
    form.get_by_label("Name").fill("Check\u2028out")  # a line separator: refused
    form.get_by_role("button", name="Add component").click()
    expect(page.locator("#components-error")).to_contain_text("Name: control characters")
    assert not Component.objects.filter(name__startswith="Check").exists()

    form = page.locator("form").filter(has=page.get_by_role("button", name="Add component"))
    form.get_by_label("Name").fill("Checkout")
    form.get_by_label("Description").fill("Basket and card payments")
    form.get_by_label("Group").select_option(label="Online store")
    form.get_by_label("checkout").check()
    form.get_by_label("payments-api").check()
    form.get_by_role("button", name="Add component").click()
    expect(page.locator("#components-flash")).to_contain_text("Component Checkout added.")

    page.get_by_role("button", name="Move Online store up").click()
    expect(page.locator("#components-flash")).to_contain_text("Online store moved up.")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Search").click()
    expect(page.locator("#components-flash")).to_contain_text("Search is no longer")

    checkout = Component.objects.get(name="Checkout")
    assert checkout.group.name == "Online store"
    assert sorted(checkout.services.values_list("name", flat=True)) == ["checkout", "payments-api"]

    visitor = browser.new_page()
    visitor.goto(f"{live_server.url}/status/")
    group = visitor.locator("tbody.component-group")
    expect(group.get_by_role("rowheader")).to_contain_text("Online store")
    expect(group).to_contain_text("Basket and card payments")
    expect(visitor.locator("body")).not_to_contain_text("Search")
    visitor.close()
