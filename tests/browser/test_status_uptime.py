"""The uptime bars in Chromium: hovering a day and reaching it from the keyboard both show
that day's incident, and its link leads to the incident's own page, all without a script
(the public page allows none) and without breaking its Content-Security-Policy."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect

from statuspage import services
from statuspage.models import Component
from statuspage.status_changes import component_history_start, component_status_set
from tests.factories import UserFactory, incident_open

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _tip_width(page: Page, day_selector: str) -> float:
    box = page.locator(f"{day_selector} .uptime-tip").bounding_box()
    assert box is not None
    return float(box["width"])


def test_a_days_incident_shows_on_hover_and_focus_and_links_to_its_page(live_server, page, roles):
    lead = UserFactory(username="sam", roles=["Support Lead"])
    checkout = Component.objects.create(
        name="Checkout", created_at=timezone.now() - timedelta(days=10)
    )
    component_history_start(checkout)
    # Noon of the day three days back: the slow hour stays within that one day whatever
    # the time of the run (from 23:00 it would have spilled into the next day).
    slow = timezone.localtime().replace(hour=12, minute=0, second=0) - timedelta(days=3)
    component_status_set(checkout, "degraded_performance", at=slow)
    component_status_set(checkout, "operational", at=slow + timedelta(hours=1))
    services.draft_publish(
        incident=incident_open(),
        actor=lead,
        version=0,
        name="Card payments failing",
        status="identified",
        impact="major",
        body="We found the **faulty release**.",
        component_statuses={str(checkout.pk): "major_outage"},
    )
    violations: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(message.text)

    page.on("console", collect)
    page.goto(f"{live_server.url}/status/")
    bars = page.locator(f"#uptime-{checkout.pk}")
    expect(bars.locator(".uptime-percent")).to_contain_text("%")
    today = f"#uptime-{checkout.pk} .uptime-day:last-child"
    yesterday = f"#uptime-{checkout.pk} .uptime-day:nth-last-child(2)"
    slow_day = f"#uptime-{checkout.pk} .uptime-day:nth-last-child(4)"
    expect(page.locator(today)).to_have_class("uptime-day uptime-major_outage")
    expect(page.locator(slow_day)).to_have_class("uptime-day uptime-degraded_performance")
    expect(bars.locator(".uptime-summary")).to_contain_text("1 day with incidents")
    expect(page.locator(".uptime-legend")).to_contain_text("Partial outage")
    assert _tip_width(page, today) <= 1  # hidden from sight until asked for

    page.hover(today)
    expect(page.locator(today).get_by_role("link", name="Card payments failing")).to_be_visible()
    assert _tip_width(page, today) > 50
    tip = page.locator(f"{today} .uptime-tip").bounding_box()
    assert tip is not None and tip["x"] + tip["width"] <= page.viewport_size["width"]

    # An operational day without incidents is read out and shown on hover, not a tab stop.
    page.hover(yesterday)
    expect(page.locator(yesterday)).to_contain_text("Operational, no incidents")
    assert _tip_width(page, yesterday) > 50
    expect(page.locator(yesterday)).not_to_have_attribute("tabindex", "0")

    page.mouse.move(0, 0)
    page.locator(slow_day).focus()
    assert _tip_width(page, today) <= 1
    expect(page.locator(slow_day)).to_contain_text("Degraded performance, no incidents")
    assert _tip_width(page, slow_day) > 50
    ring = page.locator(slow_day).evaluate("e => getComputedStyle(e).boxShadow")
    assert "rgb(31, 35, 40)" in ring or "rgb(240, 246, 252)" in ring  # two-tone, not blue
    page.keyboard.press("Tab")  # the next day with trouble: today
    expect(page.locator(today)).to_be_focused()
    assert _tip_width(page, today) > 50
    page.keyboard.press("Tab")  # into today's incident link
    link = page.locator(today).get_by_role("link", name="Card payments failing")
    expect(link).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text("Card payments failing")
    expect(page.locator(".rendered strong")).to_have_text("faulty release")
    expect(page.locator("#affected-components")).to_contain_text("Checkout")
    assert re.fullmatch(rf"{re.escape(live_server.url)}/status/incidents/\d+", page.url)

    page.goto(f"{live_server.url}/status/")
    page.hover(today)
    page.locator(today).get_by_role("link", name="Card payments failing").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Card payments failing")
    page.get_by_role("link", name="Incident history").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Incident history")
    expect(page.get_by_role("link", name="Card payments failing")).to_be_visible()
    assert violations == []
