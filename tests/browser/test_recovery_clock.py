"""The recovery clock ticks in Chromium from static/js/recovery-clock.js, with no server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from playwright.sync_api import expect

from incidents.decisions.clock import recovery_clock, recovery_phases
from incidents.models import Incident

pytestmark = pytest.mark.browser

SCRIPT = Path(settings.BASE_DIR) / "static" / "js" / "recovery-clock.js"


def _show(page, incident, *, server_now):
    html = render_to_string(
        "incidents/_recovery.html",
        {
            "incident": incident,
            "recovery_clock": recovery_clock(incident, now=server_now),
            "recovery_phases": recovery_phases(incident, now=server_now),
        },
    )
    page.set_content(f"<!doctype html><html><body>{html}</body></html>")
    page.add_script_tag(path=str(SCRIPT))


def _incident(detected_ago: timedelta, **instants):
    detected = timezone.now() - detected_ago
    return Incident(
        pk=1,
        severity="P1",
        started_at=detected - timedelta(minutes=1),
        detected_at=detected,
        rto=timedelta(minutes=15),
        **instants,
    )


def _seconds(text: str) -> int:
    minutes, seconds = text.split(":")
    return int(minutes) * 60 + int(seconds)


def _readings(page):
    """Elapsed, remaining and the running decide phase, read at one instant."""
    return page.evaluate(
        """() => [
          document.querySelector("[data-clock-elapsed]").textContent,
          document.querySelector("[data-clock-remaining]").textContent,
          document.querySelector('[data-phase="time_to_decide"] [data-running-since]').textContent,
        ]"""
    )


def test_clock_ticks_each_second_and_turns_close_near_the_rto(page):
    incident = _incident(timedelta(minutes=11, seconds=58))
    _show(page, incident, server_now=timezone.now())
    badge = page.locator("[data-recovery-clock] [data-clock-state]")

    expect(badge).to_have_text("close to RTO", timeout=5000)
    expect(badge).to_have_class("state state-running")
    first, left, deciding = _readings(page)
    assert _seconds(first) >= 12 * 60
    assert left.endswith(" left") and _seconds(first) + _seconds(left[:-5]) == 15 * 60
    assert deciding == first  # deciding started at detection and ticks with the clock
    page.wait_for_timeout(2100)
    later = _readings(page)[0]
    assert 2 <= _seconds(later) - _seconds(first) <= 4


def test_clock_counts_from_the_server_time_when_the_browser_clock_is_off(page):
    # The server's clock is 30 minutes ahead of the browser's: 3 minutes have passed for it.
    server_now = timezone.now() + timedelta(minutes=30)
    incident = _incident(timedelta(minutes=-27))
    _show(page, incident, server_now=server_now)

    page.wait_for_timeout(1100)
    assert 3 * 60 + 1 <= _seconds(_readings(page)[0]) <= 3 * 60 + 10
    expect(page.locator("[data-clock-state]")).to_have_text("within RTO")


def test_stopped_clock_stays_still(page):
    incident = _incident(timedelta(minutes=20))
    incident.restored_at = incident.detected_at + timedelta(minutes=16, seconds=5)
    _show(page, incident, server_now=timezone.now())

    page.wait_for_timeout(1500)
    assert page.locator("[data-clock-elapsed]").text_content() == "16:05"
    expect(page.locator("[data-clock-state]")).to_have_text("over RTO")
    expect(page.locator("[data-clock-remaining]")).to_have_text("1:05 over")
