"""The decision form through htmx in Chromium: previews as it is filled in, records on submit,
and shows a refusal in place."""

from __future__ import annotations

import json

import pytest
from django.template.loader import render_to_string
from playwright.sync_api import expect

from incidents.decisions.selectors import room_context
from incidents.models import TimelineEntry, TimelineKind
from tests.chromium import log_in
from tests.factories import UserFactory, incident_open

# Transactional, so the live server's thread sees the rows; the flush afterwards drops rows that
# migrations seed. test_incident_room.py needs the seeded checklists, so this file sorts after it.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _insert_decision_partial(page, incident):
    # The room's template belongs to another change; any page built on base.html carries htmx
    # and the CSRF header, so the partial is placed into the dashboard as the room will hold it.
    html = render_to_string(
        "incidents/_decision.html",
        {"incident": incident, "can_command": True} | room_context(incident),
    )
    page.evaluate(
        """(html) => {
          const main = document.querySelector("main");
          main.insertAdjacentHTML("beforeend", html);
          htmx.process(document.getElementById("decision"));
        }""",
        html,
    )


def test_commander_previews_then_records_a_decision(live_server, page, roles):
    UserFactory(username="cora", password="decide-quickly", roles=["Incident Commander"])
    incident = incident_open(severity="P2")
    log_in(page, live_server.url, "cora", "decide-quickly")
    _insert_decision_partial(page, incident)

    page.get_by_label("Error rate (%)").fill("7")
    page.get_by_label("Above 5 % for (min)").fill("3")
    verdict = page.locator("#decision-verdict")
    expect(verdict).to_contain_text("If recorded now: watch")
    expect(verdict).to_contain_text("watch for 12 min more")
    assert not TimelineEntry.objects.filter(kind=TimelineKind.DECISION).exists()

    page.get_by_label("Trend").select_option("rising")
    expect(verdict).to_contain_text("If recorded now: roll back")
    page.get_by_role("button", name="Record decision").click()

    expect(page.locator("#decision-verdict")).to_contain_text("Recorded: roll back")
    expect(page.locator("#decision-verdict")).to_contain_text("by cora")
    entry = TimelineEntry.objects.get(kind=TimelineKind.DECISION)
    assert entry.payload["rule"] == "error-rate-watch"
    assert json.dumps(entry.payload["signals"]["error_rate"]) == "7.0"
    # The form comes back holding the recorded signals.
    expect(page.get_by_label("Error rate (%)")).to_have_value("7.0")


def test_refused_signals_show_the_message_in_place(live_server, page, roles):
    UserFactory(username="cora", password="decide-quickly", roles=["Incident Commander"])
    incident = incident_open(severity="P2")
    log_in(page, live_server.url, "cora", "decide-quickly")
    _insert_decision_partial(page, incident)

    page.get_by_label("p99 latency (ms)").fill("900")
    page.get_by_role("button", name="Record decision").click()

    expect(page.locator("#decision-error")).to_contain_text("Give the p99 baseline")
    assert not TimelineEntry.objects.filter(kind=TimelineKind.DECISION).exists()
