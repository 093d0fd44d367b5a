"""The recovery sweep sends a stalled step again only when its previous send may be lost:
not on every sweep while that send waits in the queue behind busy workers."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import rollbacks.services
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.recovery import recover_stalled, resend_after_seconds
from rollbacks.models import Run, Step, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def started_run(commander: Any, service: Any) -> Run:
    """A confirmed, running one-step run whose execution is left to the test."""
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True)],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=False
    )


def worker_died(step: Step, *, silent_for: timedelta) -> None:
    """Leave `step` running as a worker that stopped beating `silent_for` ago left it."""
    last_beat = timezone.now() - silent_for
    Step.objects.filter(pk=step.pk).update(
        state=StepState.RUNNING,
        attempts=1,
        started_at=last_beat,
        deadline=timezone.now() + timedelta(minutes=10),
        heartbeat_at=last_beat,
        claim_token="dead-worker",
        worker="dead-host:1",
    )


def sweep() -> list[int]:
    """One recovery sweep; the ids of the steps it sent."""
    dispatcher = InlineDispatcher()
    recover_stalled(dispatcher=dispatcher)
    return dispatcher.take_steps()


def test_a_dead_workers_step_is_sent_once_while_that_send_waits_in_the_queue(
    commander, kube_service
):
    step = started_run(commander, kube_service).steps.get()
    worker_died(step, silent_for=timedelta(minutes=1))

    assert sweep() == [step.pk]
    # The workers are busy: nothing took the step over, and later sweeps send nothing more.
    assert sweep() == []
    assert sweep() == []


def test_a_dead_workers_step_is_sent_again_once_its_send_counts_as_lost(
    commander, kube_service, settings
):
    settings.ROLLBACK_STALE_AFTER_SECONDS = 0.25  # sent again after 1 s
    step = started_run(commander, kube_service).steps.get()
    worker_died(step, silent_for=timedelta(seconds=5))
    assert sweep() == [step.pk]
    assert sweep() == []

    time.sleep(resend_after_seconds() + 0.2)

    assert sweep() == [step.pk]


def test_a_step_whose_second_worker_died_too_is_sent_at_once(commander, kube_service):
    step = started_run(commander, kube_service).steps.get()
    worker_died(step, silent_for=timedelta(minutes=2))
    assert sweep() == [step.pk]
    # A worker took the step over (beating from then on) and died as well.
    worker_died(step, silent_for=timedelta(minutes=1))

    assert sweep() == [step.pk]


def test_a_pending_step_queued_behind_busy_workers_is_not_sent_again(commander, kube_service):
    run = started_run(commander, kube_service)
    stale = timedelta(seconds=30)
    a_while_ago = timezone.now() - 2 * stale  # stale, but well within the resend bound
    Run.objects.filter(pk=run.pk).update(started_at=a_while_ago)
    Step.objects.filter(run=run).update(enqueued_at=a_while_ago)

    assert recover_stalled(dispatcher=InlineDispatcher()) == {"steps": 0, "runs": 0}


def test_a_pending_step_sent_long_ago_is_sent_again_once_by_two_sweeps(commander, kube_service):
    run = started_run(commander, kube_service)
    long_ago = timezone.now() - timedelta(seconds=resend_after_seconds() + 60)
    Run.objects.filter(pk=run.pk).update(started_at=long_ago)
    Step.objects.filter(run=run).update(enqueued_at=long_ago)

    assert sweep() == [run.steps.get().pk]
    assert sweep() == []
