"""A flag set off "for 30 minutes": the options say so, and once the 30 minutes are over the
incident's timeline is reminded, once, however many sweeps run."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

import rollbacks.services
from incidents.models import TimelineEntry
from rollbacks.models import RunState, StepState
from rollbacks.reminders import reminders_due, reminders_send
from rollbacks.services import StepSpec
from rollbacks.services.step_options import StepOptionError
from tests.factories import ServiceFactory
from tests.rollbacks.engine_factories import IncidentFactory, RunFactory, StepFactory

FLAG_CONFIG = {"store": "redis", "flag": "new-checkout", "key_prefix": "test:flags:"}


def flag_step(minutes_ago: float, for_minutes: int | None = 30):
    flag = ServiceFactory(name="new-checkout", backend="feature_flag", target_config=FLAG_CONFIG)
    run = RunFactory(state=RunState.SUCCEEDED)
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    params = {"state": "off"} | ({"for_minutes": for_minutes} if for_minutes else {})
    return StepFactory(
        run=run,
        service=flag,
        backend="feature_flag",
        to_previous=False,
        params=params,
        state=StepState.SUCCEEDED,
        started_at=finished - timedelta(seconds=2),
        finished_at=finished,
    )


def reminders(step) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(incident=step.run.incident, payload__reminder_for_step=step.pk)
    )


@pytest.mark.django_db
def test_a_flag_set_for_a_while_is_called_back_once_its_time_is_up():
    step = flag_step(minutes_ago=31)
    assert reminders_send() == 1
    (entry,) = reminders(step)
    assert entry.body.startswith("Reminder: new-checkout was set off at ")
    assert "for 30 min" in entry.body and "set it back" in entry.body
    assert entry.actor_label == "rollback engine"
    assert reminders_send() == 0
    assert len(reminders(step)) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("minutes_ago", "for_minutes"), [(10, 30), (60, None), (60 * 24 * 9, 30)])
def test_nothing_is_due_before_its_time_without_a_time_or_long_after(minutes_ago, for_minutes):
    flag_step(minutes_ago=minutes_ago, for_minutes=for_minutes)
    assert reminders_due() == []


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_remind_once():
    step = flag_step(minutes_ago=45)
    barrier = threading.Barrier(2)
    written: list[int] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            written.append(reminders_send())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(written) == [0, 1]
    assert len(reminders(step)) == 1


@pytest.mark.django_db
def test_the_flag_options_are_validated_when_drafted(commander, settings):
    flag = ServiceFactory(name="new-checkout", backend="feature_flag", target_config=FLAG_CONFIG)
    incident = IncidentFactory()
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[StepSpec(service=flag, params={"for_minutes": "30"})],
        actor=commander,
    )
    assert run.steps.get().params == {"state": "off", "for_minutes": 30}
    for bad in ({"for_minutes": "0"}, {"for_minutes": "10081"}, {"state": "maybe"}):
        with pytest.raises(StepOptionError):
            rollbacks.services.run_create(
                incident=incident, steps=[StepSpec(service=flag, params=bad)], actor=commander
            )
