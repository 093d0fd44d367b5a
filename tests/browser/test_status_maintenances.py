"""The support lead schedules a maintenance in a real browser (htmx forms), sees a refusal
beside its field, starts it, and a visitor sees it on the public page."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from statuspage.models import Component, Maintenance
from tests.chromium import log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _next_january_10() -> str:
    """The date of the next 10 January (winter in Paris), always less than a year ahead."""
    today = timezone.localdate()
    return f"{today.year + (1 if (today.month, today.day) >= (1, 10) else 0)}-01-10"


def test_support_lead_schedules_and_starts_a_maintenance(live_server, browser, page, roles):
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    orders = Component.objects.create(name="Order history", position=1)

    log_in(page, live_server.url, "sam", "tell-them-early")
    page.get_by_role("link", name="Maintenances").click()
    expect(page.get_by_role("heading", name="Scheduled maintenances")).to_be_visible()

    form = page.locator("form").filter(has=page.get_by_role("button", name="Schedule"))
    form.get_by_label("Name").fill("Database upgrade")
    form.get_by_label("Start (UTC)").fill(f"{_next_january_10()}T02:00")
    form.get_by_label("End (UTC)").fill(f"{_next_january_10()}T01:00")  # before the start: refused
    form.get_by_label("Order history").check()
    form.get_by_label("First update (Markdown)").fill("We upgrade the **orders** database.")
    form.get_by_role("button", name="Schedule").click()
    expect(page.locator("#maintenances-error")).to_contain_text("The end must be after the start")
    assert not Maintenance.objects.exists()

    form = page.locator("form").filter(has=page.get_by_role("button", name="Schedule"))
    form.get_by_label("End (UTC)").fill(f"{_next_january_10()}T03:00")
    form.get_by_role("button", name="Schedule").click()
    expect(page.get_by_role("heading", name="Database upgrade")).to_be_visible()
    expect(page.locator("#maintenance-status")).to_have_text("Scheduled")

    update = page.locator("form").filter(has=page.get_by_role("button", name="Publish update"))
    update.get_by_label("Status").select_option("in_progress")
    update.get_by_label("Update (Markdown)").fill("Work has **started**.")
    update.get_by_role("button", name="Publish update").click()
    expect(page.locator("#maintenance-flash")).to_contain_text("Update published (In progress)")
    expect(page.locator("#maintenance-status")).to_have_text("In progress")
    orders.refresh_from_db()
    assert orders.status == "under_maintenance"

    visitor = browser.new_page()
    visitor.goto(f"{live_server.url}/status/")
    expect(visitor.locator("#overall")).to_have_text("Planned maintenance in progress")
    visitor.get_by_role("link", name="Database upgrade").click()
    expect(visitor.locator("body")).to_contain_text("We upgrade the orders database.")
    visitor.close()
