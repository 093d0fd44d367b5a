"""Rollback steps travel on a queue of their own (console/settings.py, docs/deploy.md):
messages are sent to the engine tests' Redis broker and looked for in its lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Task
from django.conf import settings

from console.celery import app as celery_app
from rollbacks import tasks
from rollbacks.models import Step
from tests.celery_conf import celery_conf_set

# Each with arguments it takes: Celery checks them when sending.
STEP_TASKS = {
    tasks.step_execute: (1,),
    tasks.steps_execute: ([1, 2],),
    tasks.run_advance: (1,),
    tasks.steps_recover: (),
}


@pytest.fixture
def sent(broker: redis.Redis, isolated_celery: Any) -> Iterator[redis.Redis]:
    """Tasks are sent to the (emptied) broker rather than run."""
    celery_conf_set(isolated_celery, task_always_eager=False)
    yield broker


def queued(broker: redis.Redis) -> dict[str, int]:
    return {queue: int(broker.llen(queue)) for queue in ("steps", "celery")}


@pytest.mark.parametrize("task", STEP_TASKS, ids=lambda task: task.name)
def test_a_task_that_moves_a_rollback_goes_to_the_steps_queue_alone(
    task: Task, sent: redis.Redis
) -> None:
    task.apply_async(STEP_TASKS[task])

    assert queued(sent) == {"steps": 1, "celery": 0}


def test_a_step_sent_back_for_a_retry_stays_on_the_steps_queue(sent: redis.Redis) -> None:
    tasks.CeleryDispatcher().retry_step(Step(pk=1, timeout_seconds=60), delay=30)

    assert queued(sent) == {"steps": 1, "celery": 0}


def test_every_other_task_goes_to_the_default_queue(sent: redis.Redis) -> None:
    celery_app.loader.import_default_modules()  # every app's tasks registered
    steps = {task.name for task in STEP_TASKS}
    others = sorted(name for name in celery_app.tasks if name.partition(".")[0] != "celery")
    others = [name for name in others if name not in steps]
    for name in others:
        celery_app.send_task(name, (1,))

    assert queued(sent) == {"steps": 0, "celery": len(others)}
    assert {
        "statuspage.tasks.notice_deliver",
        "statuspage.tasks.run_notice",
        "rollbacks.tasks.run_verify",
        "rollbacks.tasks.watches_sweep",
        "rollbacks.tasks.auto_rollback_consider",
    } <= set(others)


def test_what_beat_sends_goes_to_the_default_queue(sent: redis.Redis) -> None:
    schedule = settings.CELERY_BEAT_SCHEDULE
    for entry in schedule.values():
        celery_app.send_task(entry["task"])

    assert queued(sent) == {"steps": 0, "celery": len(schedule)}


def test_a_worker_given_no_queues_consumes_every_queue() -> None:
    # What `celery -A console worker` without --queues listens to (bin/demo's worker, the
    # tests' workers): every configured queue, so no message is left without a consumer.
    assert sorted(celery_app.amqp.queues.consume_from) == ["celery", "steps"]
