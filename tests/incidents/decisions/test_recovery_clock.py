"""The recovery clock: time since detection against the RTO, and the recovery figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from incidents.decisions.clock import recovery_clock, recovery_phases
from incidents.decisions.selectors import room_context
from incidents.models import Incident, IncidentStatus
from tests.factories import UserFactory, incident_open

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RTO = timedelta(minutes=15)


def _incident(**minutes_after_detection):
    instants = {name: T0 + timedelta(minutes=m) for name, m in minutes_after_detection.items()}
    return Incident(
        pk=7,
        title="Checkout errors",
        severity="P1",
        started_at=T0 - timedelta(minutes=2),
        detected_at=T0,
        created_at=T0 + timedelta(minutes=1),
        rto=RTO,
        **instants,
    )


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("minutes", "state"),
    [
        (0, "within"),
        (11.99, "within"),
        (12, "close"),  # 80 % of the 15-minute RTO
        (15, "close"),  # exactly the RTO still meets it
        (15.01, "over"),
        (90, "over"),
    ],
)
def test_clock_state_follows_elapsed_time_against_the_rto(minutes, state):
    clock = recovery_clock(_incident(), now=_at(minutes))
    assert clock.elapsed == timedelta(minutes=minutes)
    assert clock.state == state
    assert clock.since_label == "detection"
    assert clock.running


def test_clock_says_how_much_is_left_or_how_far_over():
    assert recovery_clock(_incident(), now=_at(4)).remaining == timedelta(minutes=11)
    assert recovery_clock(_incident(), now=_at(20)).overrun == timedelta(minutes=5)


def test_clock_stops_when_service_is_restored():
    clock = recovery_clock(_incident(restored_at=9), now=_at(40))
    assert not clock.running
    assert clock.elapsed == timedelta(minutes=9)
    assert clock.state == "within"
    assert clock.stopped_label == "service restored"


def test_clock_stops_at_resolution_when_restoration_was_not_recorded():
    clock = recovery_clock(_incident(resolved_at=16), now=_at(40))
    assert clock.elapsed == timedelta(minutes=16)
    assert clock.state == "over"
    assert clock.stopped_label == "resolved"


def test_clock_counts_from_opening_when_no_detection_was_recorded():
    incident = _incident()
    incident.detected_at = None
    clock = recovery_clock(incident, now=_at(5))
    assert clock.since_label == "opening"
    assert clock.elapsed == timedelta(minutes=4)


def test_close_share_comes_from_settings(settings):
    settings.RECOVERY_CLOCK_CLOSE_SHARE = 0.5
    assert recovery_clock(_incident(), now=_at(8)).state == "close"


def test_the_phase_under_way_runs_and_finished_phases_have_values():
    rows = {
        row["name"]: row
        for row in recovery_phases(_incident(decided_at=1, rollback_started_at=2), now=_at(6))
    }
    assert rows["time_to_detect"]["value"] == timedelta(minutes=2)
    assert rows["time_to_decide"]["value"] == timedelta(minutes=1)
    assert rows["time_to_rollback"]["running"] == timedelta(minutes=4)
    assert rows["time_to_rollback"]["running_since"] == _at(2)
    assert rows["time_to_verify"]["running"] is None  # not begun: nothing restored yet
    assert rows["total_recovery"]["running"] == timedelta(minutes=8)


def test_nothing_runs_once_the_incident_is_resolved():
    incident = _incident(resolved_at=20)
    incident.status = IncidentStatus.RESOLVED
    assert all(row["running"] is None for row in recovery_phases(incident, now=_at(30)))


def _render(incident, now):
    context = {
        "incident": incident,
        "recovery_clock": recovery_clock(incident, now=now),
        "recovery_phases": recovery_phases(incident, now=now),
    }
    return render_to_string("incidents/_recovery.html", context)


@pytest.mark.parametrize(
    ("minutes", "shown", "badge", "left"),
    [
        (4, "4:00", 'state-succeeded">within RTO', "11:00 left"),
        (13.5, "13:30", 'state-running">close to RTO', "1:30 left"),
        (17, "17:00", 'state-failed">over RTO', "2:00 over"),
    ],
)
def test_partial_shows_elapsed_time_against_the_rto(minutes, shown, badge, left):
    html = _render(_incident(), _at(minutes))
    assert f"data-clock-elapsed>{shown}</strong>" in html
    assert badge in html
    assert left in html
    assert f'datetime="{T0.isoformat()}"' in html
    assert "since detection at" in html
    assert 'data-rto-seconds="900"' in html and 'data-close-seconds="720"' in html
    assert "data-stopped" not in html
    assert "js/recovery-clock.js" in html


def test_partial_refreshes_itself_on_the_live_streams_timeline_entries():
    html = _render(_incident(), _at(3))
    assert 'hx-get="/incidents/7/recovery"' in html
    assert 'hx-trigger="sse:entry throttle:2s"' in html


def test_partial_of_a_stopped_clock_does_not_tick():
    html = _render(_incident(restored_at=9, decided_at=1), _at(30))
    assert "data-stopped" in html
    assert "stopped when service restored" in html
    assert "RTO met" in html


def test_partial_fills_in_figures_as_instants_are_recorded():
    before = _render(_incident(), _at(3))
    after = _render(_incident(decided_at=1.5, rollback_started_at=2, restored_at=8), _at(9))
    assert 'data-phase="time_to_decide"' in before
    assert "data-running-since" in before  # deciding is under way
    row = after.split('data-phase="time_to_decide"')[1].split("</tr>")[0]
    assert "1:30" in row and "data-running-since" not in row
    row = after.split('data-phase="time_to_rollback"')[1].split("</tr>")[0]
    assert "6:00" in row and "target 10:00" in row


@pytest.mark.django_db
def test_recovery_panel_refreshes_for_anyone_who_may_view(client, roles):
    client.force_login(UserFactory(roles=["Viewer"]))
    incident = incident_open()
    response = client.get(reverse("incident_recovery", args=[incident.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="recovery"' in html and "within RTO" in html


@pytest.mark.django_db
def test_room_context_costs_a_constant_number_of_queries(django_assert_max_num_queries):
    incident = incident_open()
    with django_assert_max_num_queries(1):
        context = room_context(incident)
    assert set(context) == {
        "recovery_clock",
        "recovery_phases",
        "decision_latest",
        "decision_form",
        "decision_thresholds",
    }
