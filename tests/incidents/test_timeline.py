import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, InternalError, connection, transaction

from incidents import services
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import channel_for
from tests.conftest import TEST_REDIS_URL
from tests.factories import UserFactory, incident_open

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_timeline_entry_cannot_be_changed_through_the_orm():
    entry = incident_open().timeline.get()
    entry.body = "rewritten"
    with pytest.raises(ValidationError, match="append-only"):
        entry.save()


def test_timeline_entry_cannot_be_deleted_through_the_orm():
    entry = incident_open().timeline.get()
    with pytest.raises(ValidationError, match="append-only"):
        entry.delete()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE incidents_timelineentry SET body = 'rewritten' WHERE id = %s",
        "DELETE FROM incidents_timelineentry WHERE id = %s",
    ],
)
def test_database_refuses_to_change_or_delete_a_timeline_entry(statement):
    entry = incident_open().timeline.get()
    with (
        pytest.raises((IntegrityError, InternalError), match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [entry.pk])
    assert TimelineEntry.objects.get(pk=entry.pk).body == entry.body


def test_queryset_update_of_timeline_is_refused_by_the_database():
    incident = incident_open()
    with pytest.raises((IntegrityError, InternalError)), transaction.atomic():
        incident.timeline.update(body="rewritten")


def test_timeline_is_read_back_in_the_order_it_was_written():
    incident = incident_open()
    commander = UserFactory(roles=["Incident Commander"])
    for text in ["first", "second", "third"]:
        services.note_add(incident=incident, author=commander, body=text)
    bodies = list(incident.timeline.order_by("id").values_list("body", flat=True))
    assert bodies[1:] == ["first", "second", "third"]


def test_new_entry_is_announced_on_the_incident_channel_after_commit(
    redis_listener, django_capture_on_commit_callbacks
):
    incident = incident_open()
    redis_listener.subscribe(channel_for(incident.pk))
    redis_listener.get_message(timeout=1)
    commander = UserFactory(roles=["Incident Commander"])
    with django_capture_on_commit_callbacks(execute=True):
        entry = services.note_add(incident=incident, author=commander, body="rolling back web")
    message = redis_listener.get_message(timeout=2)
    assert message is not None
    assert json.loads(message["data"]) == {"entry": entry.pk}


def test_nothing_is_announced_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    incident = incident_open()
    commander = UserFactory(roles=["Incident Commander"])
    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                services.note_add(incident=incident, author=commander, body="never kept")
                raise RuntimeError("abort")
        except RuntimeError:
            pass
    assert callbacks == []
    assert not incident.timeline.filter(kind=TimelineKind.NOTE).exists()


ANNOUNCE_THEN_EXIT = """
import django
django.setup()
from incidents import timeline
for n in range(200):
    timeline.announce(424242, {"entry": n})
"""


def test_announcements_queued_when_a_process_exits_are_sent_and_the_exit_does_not_hang(
    redis_listener,
):
    redis_listener.subscribe(channel_for(424242))
    redis_listener.get_message(timeout=1)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "REDIS_URL": TEST_REDIS_URL}

    subprocess.run(
        [sys.executable, "-c", ANNOUNCE_THEN_EXIT], env=env, timeout=30, check=True, cwd=ROOT
    )

    received = []
    while (message := redis_listener.get_message(timeout=1)) is not None:
        received.append(json.loads(message["data"])["entry"])
    assert received == list(range(200))
