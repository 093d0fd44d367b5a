"""Real Celery workers against Redis: a worker killed in the middle of a step, and a new
worker finishing the run without applying anything twice or losing a timeline entry."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

import rollbacks.services
from incidents.models import TimelineEntry, TimelineKind
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.engine_fixtures import deployment_revision, live_image, patches_to, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


def _confirmed_run(commander: Any, service: Any) -> Run:
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True, timeout_seconds=60)],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")


def _step_is(run: Run, **fields: Any) -> Callable[[], bool]:
    return lambda: Step.objects.filter(run=run, **fields).exists()


def _assert_timeline_whole(run: Run) -> None:
    entries = list(TimelineEntry.objects.filter(incident=run.incident).order_by("id"))
    kinds = Counter(entry.kind for entry in entries)
    step = run.steps.get()
    assert kinds[TimelineKind.STEP_STARTED] == 1
    assert kinds[TimelineKind.STEP_FINISHED] == 1
    assert kinds[TimelineKind.CHECK_RESULT] == 1 and len(step.check_results) >= 3
    takeovers = [entry for entry in entries if "taken over" in entry.body]
    assert len(takeovers) == 1
    run_bodies = [entry.body for entry in entries if entry.kind == TimelineKind.RUN]
    assert sum("started" in body for body in run_bodies) == 1
    assert sum("succeeded" in body for body in run_bodies) == 1
    bodies = Counter(entry.body for entry in entries)
    assert [body for body, count in bodies.items() if count > 1] == []
    # In order: started, (applied,) taken over, checks, finished, run succeeded (then the
    # instants it stamps and the completion notice it sends).
    after_the_run = (TimelineKind.INSTANT_RECORDED, TimelineKind.COMMS_SENT)
    order = [entry.kind for entry in entries if entry.kind not in after_the_run]
    assert order.index(TimelineKind.STEP_STARTED) < order.index(TimelineKind.STEP_FINISHED)
    assert order[-1] == TimelineKind.RUN


def test_a_worker_killed_while_a_step_waits_is_replaced_and_the_step_applied_once(
    commander, kube, kube_service, start_worker
):
    kube.set_status_delay(3.0)  # the rollout takes 3 s after the apply
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")
    first = start_worker("first")

    run = _confirmed_run(commander, kube_service)
    wait_for(_step_is(run, state=StepState.RUNNING, applied_at__isnull=False), 20, "the apply")
    first.kill()
    start_worker("second")
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 40, "the run to finish")

    run.refresh_from_db()
    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert step.state == StepState.SUCCEEDED and step.attempts == 1
    assert step.worker.startswith("second@")
    assert patches_to(kube, "web") == patches + 1
    assert deployment_revision(kube, "web") == revision + 1
    assert live_image(kube, "web") == "registry.local/web:v1"
    _assert_timeline_whole(run)


def test_a_worker_killed_during_the_apply_is_replaced_and_the_change_made_once(
    commander, kube, kube_service, start_worker
):
    revision = deployment_revision(kube, "web")
    # The apply's PATCH is held 3 s by the server: the worker dies waiting for the answer.
    kube.hang_next(1, seconds=3.0, method="PATCH", path="/deployments/web$")
    first = start_worker("first")

    run = _confirmed_run(commander, kube_service)
    wait_for(
        _step_is(run, state=StepState.RUNNING, apply_started_at__isnull=False), 20, "the apply"
    )
    time.sleep(0.3)  # the PATCH is on its way
    first.kill()
    start_worker("second")
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, 40, "the run to finish")
    run.refresh_from_db()
    step = run.steps.get()
    # Whatever the held PATCH does once released (it carries a stale resourceVersion), it
    # has done it 3 s after the apply began.
    held_until = step.apply_started_at + timedelta(seconds=3.5)
    time.sleep(max(0.0, (held_until - timezone.now()).total_seconds()))
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    assert step.attempts == 1 and step.worker.startswith("second@")
    assert deployment_revision(kube, "web") == revision + 1
    assert live_image(kube, "web") == "registry.local/web:v1"
    _assert_timeline_whole(run)
