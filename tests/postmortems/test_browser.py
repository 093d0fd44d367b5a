"""The post-mortem page in headless Chromium: htmx star toggles and the written report."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from postmortems.models import TimelineStar
from tests.chromium import log_in
from tests.factories import UserFactory
from tests.postmortems.builders import finished_run, resolved_incident

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Set to a folder to keep screenshots of the pages (for looking at the layout).
SHOTS = os.environ.get("POSTMORTEM_SCREENSHOTS", "")


def test_a_responder_starts_writes_and_stars_in_the_browser(live_server, page, roles):  # noqa: F811
    commander = UserFactory(username="ines", roles=["Incident Commander"])
    UserFactory(username="rosa", password="write-it-down", roles=["Responder"])
    incident = resolved_incident(by=commander)
    finished_run(incident)

    log_in(page, live_server.url, "rosa", "write-it-down")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/")
    page.get_by_role("link", name="Post-mortem").click()
    page.get_by_role("button", name="Start the post-mortem").click()
    page.get_by_label("Root cause").fill("A unit mismatch between checkout and payments.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name="History (2 revisions)")).to_be_visible()
    expect(page.locator("#pm-error")).to_be_empty()

    note = incident.timeline.filter(kind="note").first()
    row = page.locator(f"#entry-{note.pk}")
    row.get_by_role("button", name="☆").click()
    expect(row.get_by_role("button", name="★")).to_be_visible()
    expect(row).to_have_class(re.compile(r"\bstarred\b"))
    assert TimelineStar.objects.filter(entry=note).exists()

    page.reload()
    expect(page.get_by_label("Root cause")).to_have_value(
        "A unit mismatch between checkout and payments."
    )
    if SHOTS:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.screenshot(path=f"{SHOTS}/postmortem.png", full_page=True)
        page.goto(f"{live_server.url}/reports/metrics/")
        page.screenshot(path=f"{SHOTS}/metrics.png", full_page=True)
        page.goto(f"{live_server.url}/reports/postmortems/")
        page.screenshot(path=f"{SHOTS}/list.png", full_page=True)
