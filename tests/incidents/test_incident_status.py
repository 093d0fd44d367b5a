from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incidents import services
from incidents.errors import DomainError, PermissionDenied
from incidents.models import STATUS_TRANSITIONS, IncidentStatus, TimelineKind
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def commander(roles):
    return UserFactory(roles=["Incident Commander"])


def _incident_in(status, commander):
    incident = incident_open()
    incident.status = status
    incident.save(update_fields=["status"])
    return incident


ALL_MOVES = [(a, b) for a in IncidentStatus.values for b in IncidentStatus.values if a != b]


@pytest.mark.parametrize(("from_status", "to_status"), ALL_MOVES)
def test_status_change_follows_the_state_machine(commander, from_status, to_status):
    incident = _incident_in(from_status, commander)
    if to_status in STATUS_TRANSITIONS[from_status]:
        changed = services.incident_change_status(
            incident=incident, to_status=to_status, actor=commander
        )
        assert changed.status == to_status
    else:
        with pytest.raises(DomainError, match="cannot go from"):
            services.incident_change_status(incident=incident, to_status=to_status, actor=commander)
        incident.refresh_from_db()
        assert incident.status == from_status


def test_status_change_writes_its_timeline_entry(commander):
    incident = incident_open()
    services.incident_change_status(
        incident=incident, to_status="identified", actor=commander, reason="bad release v1.5.0"
    )
    entry = incident.timeline.filter(kind=TimelineKind.STATUS_CHANGE).get()
    assert entry.actor == commander
    assert entry.payload["from"] == "investigating"
    assert entry.payload["to"] == "identified"
    assert "bad release v1.5.0" in entry.body


def test_refused_status_change_writes_nothing(commander):
    incident = incident_open()
    before = incident.timeline.count()
    with pytest.raises(DomainError):
        services.incident_change_status(incident=incident, to_status="monitoring", actor=commander)
    assert incident.timeline.count() == before


def test_responder_cannot_change_status(roles):
    responder = UserFactory(roles=["Responder"])
    incident = incident_open()
    with pytest.raises(PermissionDenied):
        services.incident_change_status(incident=incident, to_status="identified", actor=responder)


def test_entering_mitigating_stamps_the_decision_instant_once(commander):
    incident = incident_open()
    services.incident_change_status(incident=incident, to_status="mitigating", actor=commander)
    incident.refresh_from_db()
    decided = incident.decided_at
    assert decided is not None
    services.incident_change_status(incident=incident, to_status="identified", actor=commander)
    services.incident_change_status(incident=incident, to_status="mitigating", actor=commander)
    incident.refresh_from_db()
    assert incident.decided_at == decided


def test_resolving_stamps_resolved_and_reopening_clears_it(commander):
    incident = incident_open()
    services.incident_change_status(incident=incident, to_status="resolved", actor=commander)
    incident.refresh_from_db()
    assert incident.resolved_at is not None
    services.incident_change_status(incident=incident, to_status="investigating", actor=commander)
    incident.refresh_from_db()
    assert incident.resolved_at is None


def test_severity_change_is_recorded(commander):
    incident = incident_open(severity="P2")
    services.incident_change_severity(incident=incident, severity="P0", actor=commander)
    entry = incident.timeline.filter(kind=TimelineKind.SEVERITY_CHANGE).get()
    assert entry.payload == {"from": "P2", "to": "P0", "reason": ""}


def test_commander_must_hold_the_commander_role(commander, roles):
    viewer = UserFactory(roles=["Viewer"])
    with pytest.raises(DomainError, match="does not hold"):
        services.incident_assign_commander(
            incident=incident_open(), commander=viewer, actor=commander
        )


def test_instant_before_detection_is_refused(commander):
    incident = incident_open()
    with pytest.raises(DomainError, match="before the incident was detected"):
        services.incident_record_instant(
            incident=incident,
            instant="verified_at",
            at=incident.detected_at - timedelta(seconds=1),
            actor=commander,
        )


def test_instant_in_the_future_is_refused(commander):
    with pytest.raises(DomainError, match="future"):
        services.incident_record_instant(
            incident=incident_open(),
            instant="restored_at",
            at=timezone.now() + timedelta(hours=1),
            actor=commander,
        )


def test_incident_cannot_be_detected_before_it_started():
    now = timezone.now()
    with pytest.raises(DomainError, match="cannot start after"):
        incident_open(started_at=now, detected_at=now - timedelta(minutes=1))


def test_opening_an_incident_attaches_the_default_checklists():
    incident = incident_open()
    kinds = list(incident.checklists.values_list("kind", flat=True))
    assert kinds == ["pre_rollback", "post_rollback", "post_incident"]
    assert incident.checklists.get(kind="pre_rollback").items.count() == 8
    post = incident.checklists.get(kind="post_rollback")
    assert "http_health" in set(post.items.values_list("check_key", flat=True))


def test_filling_instants_records_the_unset_ones_in_one_update_and_one_insert(commander):
    incident = incident_open()
    decided = incident.detected_at + timedelta(minutes=1)
    services.incident_record_instant(
        incident=incident, instant="decided_at", at=decided, actor=commander
    )
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        filled, refused = services.incident_fill_instants(
            incident=incident,
            instants={"decided_at": now, "rollback_started_at": now, "restored_at": now},
            actor=commander,
        )

    assert refused == {}
    assert (filled.decided_at, filled.rollback_started_at, filled.restored_at) == (
        decided,  # already set: kept
        now,
        now,
    )
    writes = [
        q["sql"].split()[0]
        for q in queries.captured_queries
        if "incidents_incident" in q["sql"] or "timelineentry" in q["sql"]
    ]
    assert writes == ["SELECT", "UPDATE", "INSERT"]
    entries = incident.timeline.filter(kind=TimelineKind.INSTANT_RECORDED).order_by("pk")
    assert [entry.payload["instant"] for entry in entries] == [
        "decided_at",
        "rollback_started_at",
        "restored_at",
    ]
    assert all(entry.actor == commander for entry in entries)


def test_filling_instants_records_the_rest_when_one_is_refused(commander):
    incident = incident_open()
    now = timezone.now()
    filled, refused = services.incident_fill_instants(
        incident=incident,
        instants={"verified_at": incident.detected_at - timedelta(seconds=1), "restored_at": now},
        actor=None,
        actor_label="engine",
    )

    assert refused == {"verified_at": "That instant would come before the incident was detected."}
    filled.refresh_from_db()
    assert (filled.verified_at, filled.restored_at) == (None, now)
    entry = incident.timeline.get(kind=TimelineKind.INSTANT_RECORDED)
    assert (entry.actor, entry.actor_label) == (None, "engine")


def test_filling_instants_needs_the_commander_role_for_a_person(roles):
    viewer = UserFactory(roles=["Viewer"])
    with pytest.raises(PermissionDenied):
        services.incident_fill_instants(
            incident=incident_open(), instants={"decided_at": timezone.now()}, actor=viewer
        )
