"""The engine executing runs: parallel groups, failures stopping dependants, retry and
skip, pause and cancel, and steps delivered more than once."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

import rollbacks.services
from executors.base import RollbackTarget
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import channel_for
from rollbacks import tasks
from rollbacks.engine.backends import backend_for
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.execution import step_execute
from rollbacks.engine.inline import run_inline
from rollbacks.engine.recovery import recover_stalled
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import (
    deployment_revision,
    live_image,
    patches_to,
    seed_deployment,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _start(commander: Any, specs: list[StepSpec], **kwargs: Any) -> Run:
    """A confirmed, running run whose execution is left to the test."""
    run = rollbacks.services.run_create(
        incident=IncidentFactory(), steps=specs, actor=commander, **kwargs
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=False
    )


def _services(kube: Any, *names: str) -> list[Any]:
    for name in names:
        seed_deployment(kube, name, [f"{name}:1", f"{name}:2"])
    return [KubeServiceFactory(name=name) for name in names]


def _steps(run: Run) -> dict[str, Step]:
    return {step.service.name: step for step in run.steps.select_related("service")}


def _entries(run: Run, kind: str) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident=run.incident, kind=kind))


def test_groups_run_in_order_and_steps_of_a_group_run_together(commander, kube):
    kube.set_status_delay(0.4)
    a, b, c = _services(kube, "a", "b", "c")
    run = _start(
        commander,
        [
            StepSpec(service=a, previous=True, group=1),
            StepSpec(service=b, previous=True, group=1),
            StepSpec(service=c, previous=True, group=2),
        ],
    )

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    steps = _steps(run)
    first_group = [steps["a"], steps["b"]]
    assert all(step.state == StepState.SUCCEEDED for step in steps.values())
    # a and b overlapped; c started only after both had finished.
    assert max(s.started_at for s in first_group) < min(s.finished_at for s in first_group)
    assert steps["c"].started_at >= max(s.finished_at for s in first_group)
    assert [live_image(kube, name) for name in "abc"] == ["a:1", "b:1", "c:1"]


def test_a_failed_step_stops_later_groups_and_fails_the_run_with_the_reason(commander, kube):
    a, c = _services(kube, "a", "c")
    missing = KubeServiceFactory(name="missing")  # no such Deployment
    run = _start(
        commander,
        [
            StepSpec(service=a, previous=True, group=1),
            StepSpec(service=missing, previous=True, group=1),
            StepSpec(service=c, previous=True, group=2),
        ],
    )

    run = run_inline(run.pk)

    steps = _steps(run)
    assert run.state == RunState.FAILED
    assert steps["a"].state == StepState.SUCCEEDED  # same group: not a dependant
    assert steps["missing"].state == StepState.FAILED
    assert "404" in steps["missing"].error and not steps["missing"].error_retryable
    assert steps["c"].state == StepState.CANCELLED
    assert steps["c"].blocked_by == steps["missing"]
    assert steps["c"].skip_reason == "not started: step 2 (missing) failed"
    assert "step 2 (missing) failed" in run.failure_reason
    assert live_image(kube, "c") == "c:2"
    final = _entries(run, TimelineKind.RUN)[-1]
    assert final.body.startswith(f"Run #{run.pk} failed")
    assert "1 later step(s) not started" in final.body


def test_retrying_the_failed_step_reopens_the_run_and_finishes_it(commander, kube):
    (a,) = _services(kube, "a")
    late = KubeServiceFactory(name="late")
    run = _start(
        commander,
        [StepSpec(service=late, previous=True), StepSpec(service=a, previous=True)],
    )
    run = run_inline(run.pk)
    assert run.state == RunState.FAILED
    seed_deployment(kube, "late", ["late:1", "late:2"])  # the Deployment is back

    rollbacks.services.step_retry(step=_steps(run)["late"], actor=commander)  # runs eagerly

    run.refresh_from_db()
    steps = _steps(run)
    assert run.state == RunState.SUCCEEDED
    assert steps["late"].state == StepState.SUCCEEDED and steps["late"].attempts == 2
    assert steps["a"].state == StepState.SUCCEEDED and steps["a"].blocked_by is None
    assert live_image(kube, "late") == "late:1"
    assert any("reopened to retry step 1" in e.body for e in _entries(run, TimelineKind.RUN))


def test_skipping_the_failed_step_lets_the_later_groups_run(commander, kube):
    (a,) = _services(kube, "a")
    missing = KubeServiceFactory(name="missing")
    run = _start(
        commander,
        [StepSpec(service=missing, previous=True), StepSpec(service=a, previous=True)],
    )
    run = run_inline(run.pk)

    rollbacks.services.step_skip(
        step=_steps(run)["missing"], actor=commander, reason="decommissioned last week"
    )

    run.refresh_from_db()
    steps = _steps(run)
    assert run.state == RunState.SUCCEEDED
    assert steps["missing"].state == StepState.SKIPPED
    assert steps["a"].state == StepState.SUCCEEDED
    assert "1 skipped" in _entries(run, TimelineKind.RUN)[-1].body


def _run_in_background(run_id: int) -> threading.Thread:
    def target() -> None:
        try:
            run_inline(run_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_pausing_lets_the_running_step_finish_and_starts_nothing_until_resumed(commander, kube):
    kube.set_status_delay(0.5)
    a, b = _services(kube, "a", "b")
    run = _start(
        commander, [StepSpec(service=a, previous=True), StepSpec(service=b, previous=True)]
    )
    thread = _run_in_background(run.pk)
    _wait_for(lambda: Step.objects.filter(run=run, state=StepState.RUNNING).exists())

    rollbacks.services.run_pause(run=run, actor=commander, reason="checking the dashboards")
    thread.join(timeout=10)

    run.refresh_from_db()
    steps = _steps(run)
    assert run.state == RunState.PAUSED
    assert steps["a"].state == StepState.SUCCEEDED
    assert steps["b"].state == StepState.PENDING
    assert live_image(kube, "b") == "b:2"

    rollbacks.services.run_resume(run=run, actor=commander)  # Celery runs eagerly in tests

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert live_image(kube, "b") == "b:1"


def test_cancelling_stops_pending_steps_and_lets_the_running_one_report(commander, kube):
    kube.set_status_delay(0.5)
    a, b = _services(kube, "a", "b")
    run = _start(
        commander, [StepSpec(service=a, previous=True), StepSpec(service=b, previous=True)]
    )
    thread = _run_in_background(run.pk)
    _wait_for(lambda: Step.objects.filter(run=run, state=StepState.RUNNING).exists())

    rollbacks.services.run_cancel(run=run, actor=commander, reason="wrong service")
    thread.join(timeout=10)

    run.refresh_from_db()
    steps = _steps(run)
    assert run.state == RunState.CANCELLED
    assert steps["a"].state == StepState.SUCCEEDED  # it was already applying
    assert steps["b"].state == StepState.CANCELLED
    assert "wrong service" in steps["b"].skip_reason
    assert live_image(kube, "b") == "b:2"
    assert _entries(run, TimelineKind.RUN)[-1].body.startswith(f"Run #{run.pk} cancelled")


def test_a_step_delivered_twice_is_applied_once(commander, kube, kube_service):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    step = run.steps.get()
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")

    tasks.step_execute(step.pk)
    tasks.step_execute(step.pk)

    step.refresh_from_db()
    assert step.state == StepState.SUCCEEDED and step.attempts == 1
    assert deployment_revision(kube, "web") == revision + 1
    assert patches_to(kube, "web") == patches + 1
    assert len(_entries(run, TimelineKind.STEP_STARTED)) == 1
    assert len(_entries(run, TimelineKind.STEP_FINISHED)) == 1


def test_two_deliveries_at_the_same_time_claim_the_step_once(commander, kube, kube_service):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    step = run.steps.get()
    patches = patches_to(kube, "web")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            outcomes.append(step_execute(step.pk, dispatcher=InlineDispatcher()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(outcomes) == ["", "succeeded"]
    assert patches_to(kube, "web") == patches + 1
    assert len(_entries(run, TimelineKind.STEP_STARTED)) == 1


def _crash_after_apply(step: Step, *, recorded: bool) -> None:
    """Leave `step` as a worker that died after applying leaves it: running, heartbeat
    stale, the change made (and recorded in applied_at when `recorded`)."""
    backend = backend_for(step.service)
    backend.apply(RollbackTarget(previous=True))
    long_ago = timezone.now() - timedelta(minutes=5)
    Step.objects.filter(pk=step.pk).update(
        state=StepState.RUNNING,
        attempts=1,
        started_at=long_ago,
        deadline=timezone.now() + timedelta(minutes=5),
        apply_started_at=long_ago,
        applied_at=long_ago if recorded else None,
        heartbeat_at=long_ago,
        claim_token="dead-worker",
        worker="dead-host:1",
    )


def test_a_delivery_after_a_crash_past_the_apply_only_waits_and_checks(
    commander, kube, kube_service
):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    step = run.steps.get()
    _crash_after_apply(step, recorded=True)
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")

    dispatcher = InlineDispatcher()
    assert recover_stalled(dispatcher=dispatcher) == {"steps": 1, "runs": 0}
    (step_id,) = dispatcher.take_steps()
    assert step_execute(step_id, dispatcher=dispatcher) == StepState.SUCCEEDED

    assert (deployment_revision(kube, "web"), patches_to(kube, "web")) == (revision, patches)
    step.refresh_from_db()
    assert step.attempts == 1 and step.worker != "dead-host:1"
    (takeover,) = [
        entry for entry in _entries(run, TimelineKind.STEP_OUTPUT) if "taken over" in entry.body
    ]
    assert "dead-host:1 stopped responding after applying" in takeover.body
    assert "already applied" in step.log_lines.first().line


def test_a_delivery_after_a_crash_during_the_apply_finds_nothing_left_to_change(
    commander, kube, kube_service
):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    step = run.steps.get()
    _crash_after_apply(step, recorded=False)
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")

    assert step_execute(step.pk, dispatcher=InlineDispatcher()) == "succeeded"

    assert (deployment_revision(kube, "web"), patches_to(kube, "web")) == (revision, patches)
    step.refresh_from_db()
    assert "nothing to do" in step.apply_detail
    assert live_image(kube, "web") == "registry.local/web:v1"


def test_a_live_worker_keeps_its_step(commander, kube, kube_service):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    step = run.steps.get()
    patches = patches_to(kube, "web")
    Step.objects.filter(pk=step.pk).update(
        state=StepState.RUNNING,
        started_at=timezone.now(),
        deadline=timezone.now() + timedelta(minutes=5),
        heartbeat_at=timezone.now(),
        claim_token="alive",
    )

    assert step_execute(step.pk, dispatcher=InlineDispatcher()) == ""
    assert recover_stalled(dispatcher=InlineDispatcher()) == {"steps": 0, "runs": 0}
    assert patches_to(kube, "web") == patches


def test_step_logs_are_kept_in_order_and_bounded(commander, kube, kube_service, settings):
    settings.ROLLBACK_STEP_LOG_MAX_LINES = 1  # a step always logs more than one line
    kube.set_status_delay(0.3)
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])

    run_inline(run.pk)

    lines = list(run.steps.get().log_lines.values_list("seq", "line"))
    assert [seq for seq, _ in lines] == [1, 2]
    assert lines[-1][1].startswith("… ") and "not kept (limit 1 per step)" in lines[-1][1]


def test_steps_whose_messages_were_lost_are_handed_out_again(commander, kube, kube_service):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    long_ago = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=run.pk).update(started_at=long_ago)
    Step.objects.filter(run=run).update(enqueued_at=long_ago)  # dispatched, never delivered
    dispatcher = InlineDispatcher()

    assert recover_stalled(dispatcher=dispatcher) == {"steps": 0, "runs": 1}

    assert dispatcher.take_steps() == [run.steps.get().pk]


def test_every_entry_the_engine_writes_is_announced_on_the_incidents_channel(
    commander, kube, kube_service, redis_listener
):
    run = _start(commander, [StepSpec(service=kube_service, previous=True)])
    redis_listener.subscribe(channel_for(run.incident_id))
    redis_listener.get_message(timeout=1)  # the subscription itself
    first_new = TimelineEntry.objects.order_by("-id").first().pk

    run_inline(run.pk)

    announced, logs = [], set()
    while (message := redis_listener.get_message(timeout=0.5)) is not None:
        body = json.loads(message["data"])
        if "entry" in body:
            announced.append(body["entry"])
        else:
            logs.add(body["log"])  # the step's log grew
    written = list(TimelineEntry.objects.filter(pk__gt=first_new).values_list("pk", flat=True))
    # Each entry once; steps on parallel threads may commit out of id order.
    assert sorted(announced) == written and len(written) >= 4
    assert logs == {run.steps.get().pk}
