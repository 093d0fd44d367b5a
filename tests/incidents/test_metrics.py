from datetime import UTC, datetime, timedelta

from incidents.models import Incident

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _incident(**minutes_after_start):
    instants = {name: T0 + timedelta(minutes=m) for name, m in minutes_after_start.items()}
    return Incident(started_at=T0, **instants)


def test_phase_durations_are_derived_from_the_instants():
    incident = _incident(
        detected_at=3, decided_at=4, rollback_started_at=5, restored_at=11, verified_at=14
    )
    assert incident.time_to_detect == timedelta(minutes=3)
    assert incident.time_to_decide == timedelta(minutes=1)
    assert incident.time_to_rollback == timedelta(minutes=6)
    assert incident.time_to_verify == timedelta(minutes=3)
    assert incident.total_recovery == timedelta(minutes=14)


def test_phase_without_its_instants_has_no_duration():
    incident = _incident(detected_at=3)
    assert incident.time_to_rollback is None
    assert incident.total_recovery is None
    assert incident.rto_met is None


def test_rto_is_met_when_restored_within_it_after_detection():
    assert _incident(detected_at=2, restored_at=17).rto_met is True
    assert _incident(detected_at=2, restored_at=18).rto_met is False


def test_recovery_metrics_compare_each_phase_with_its_runbook_target():
    incident = _incident(
        detected_at=6, decided_at=7, rollback_started_at=7, restored_at=12, verified_at=15
    )
    rows = {row["name"]: row for row in incident.recovery_metrics()}
    assert rows["time_to_detect"]["met"] is False  # 6 min > 5 min target
    assert rows["time_to_decide"]["met"] is True
    assert rows["time_to_rollback"]["met"] is True
    assert rows["total_recovery"]["met"] is True  # exactly 15 min
    assert rows["total_recovery"]["target"] == timedelta(minutes=15)
