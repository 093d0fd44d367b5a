"""A parallel group handed out in batches: several steps per message, claimed in one
transaction and run side by side on the worker's step threads."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import rollbacks.services
from incidents.models import TimelineEntry, TimelineKind
from rollbacks import tasks
from rollbacks.engine.batches import steps_execute
from rollbacks.engine.claims import claim_pending
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.heartbeats import heartbeats
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory
from tests.rollbacks.engine_fixtures import (
    live_image,
    parallel_run,
    patches_to,
    seed_deployment,
    step_ids,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _started(run: Run) -> list[TimelineEntry]:
    return list(TimelineEntry.objects.filter(incident=run.incident, kind=TimelineKind.STEP_STARTED))


def test_a_batch_claims_its_steps_together_and_runs_them_side_by_side(commander, kube):
    kube.set_status_delay(0.3)
    run = parallel_run(commander, kube, "a", "b", "c")

    outcomes = steps_execute(step_ids(run), dispatcher=InlineDispatcher())

    steps = list(run.steps.all())
    assert sorted(outcomes.values()) == ["succeeded"] * 3
    assert len({step.started_at for step in steps}) == 1  # one claim, one instant
    assert len({step.claim_token for step in steps}) == 3  # yet each its own fence
    assert max(step.started_at for step in steps) < min(step.finished_at for step in steps)
    assert [live_image(kube, name) for name in "abc"] == ["a:1", "b:1", "c:1"]
    assert len(_started(run)) == 3


def test_a_batch_delivered_twice_applies_each_step_once(commander, kube):
    run = parallel_run(commander, kube, "a", "b")
    patches = {name: patches_to(kube, name) for name in "ab"}

    tasks.steps_execute(step_ids(run))
    tasks.steps_execute(step_ids(run))

    assert {name: patches_to(kube, name) - patches[name] for name in "ab"} == {"a": 1, "b": 1}
    assert all(step.attempts == 1 for step in run.steps.all())
    assert len(_started(run)) == 2
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED


def test_a_batch_leaves_the_steps_of_a_paused_run_pending(commander, kube):
    run = parallel_run(commander, kube, "a", "b")
    rollbacks.services.run_pause(run=run, actor=commander)

    assert steps_execute(step_ids(run), dispatcher=InlineDispatcher()) == {}

    assert {step.state for step in run.steps.all()} == {StepState.PENDING}
    assert _started(run) == []


def test_the_dispatcher_hands_a_group_out_in_messages_of_steps_per_message(
    commander, kube, settings, monkeypatch
):
    settings.ROLLBACK_STEPS_PER_MESSAGE = 2
    sent: list[tuple[str, Any, dict[str, Any]]] = []
    for task in (tasks.step_execute, tasks.steps_execute):
        monkeypatch.setattr(
            task,
            "apply_async",
            lambda args, name=task.name, **options: sent.append((name, args[0], options)),
        )

    run = parallel_run(commander, kube, "a", "b", "c", "d", "e", enqueue=True)

    ids = step_ids(run)
    timeout = run.steps.first().timeout_seconds
    assert [(name.rsplit(".", 1)[1], ids) for name, ids, _ in sent] == [
        ("steps_execute", ids[0:2]),
        ("steps_execute", ids[2:4]),
        ("step_execute", ids[4]),
    ]
    assert {options["soft_time_limit"] for _, _, options in sent} == {timeout + 120}


def test_a_retryable_error_in_a_batch_sends_that_step_back_alone_as_its_first_retry(
    commander, kube, monkeypatch
):
    run = parallel_run(commander, kube, "a", "b")
    kube.fail_next(1, status=503, path="/deployments/b$")
    retries: list[tuple[int, dict[str, Any]]] = []
    monkeypatch.setattr(
        tasks.step_execute,
        "apply_async",
        lambda args, **options: retries.append((args[0], options)),
    )

    tasks.steps_execute(step_ids(run))

    a, b = run.steps.order_by("position")
    assert a.state == StepState.SUCCEEDED
    assert b.state == StepState.PENDING and b.error_retryable and "503" in b.error
    assert [(step_id, options["retries"]) for step_id, options in retries] == [(b.pk, 1)]
    assert retries[0][1]["countdown"] > 0
    assert live_image(kube, "b") == "b:2"  # nothing applied yet: the retry will


def test_a_batch_records_the_apply_start_with_its_claim_so_a_successor_takes_care(commander, kube):
    run = parallel_run(commander, kube, "a", "b")

    claims = claim_pending(step_ids(run), "a worker that dies next", mark_apply=True)

    steps = list(run.steps.all())
    assert all(claim.apply_marked for claim in claims)
    assert {step.apply_started_at for step in steps} == {steps[0].started_at}
    assert all(step.applied_at is None for step in steps)


def test_a_dry_run_batch_records_no_apply_start(commander, kube):
    for name in "ab":
        seed_deployment(kube, name, [f"{name}:1", f"{name}:2"])
    specs = [StepSpec(service=KubeServiceFactory(name=n), previous=True, group=1) for n in "ab"]
    run = rollbacks.services.run_create(
        incident=IncidentFactory(), steps=specs, actor=commander, dry_run=True
    )
    run = rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=False
    )

    claims = claim_pending(step_ids(run), "worker", mark_apply=True)

    assert len(claims) == 2 and not any(claim.apply_marked for claim in claims)
    assert all(step.apply_started_at is None for step in run.steps.all())


def test_a_retry_in_a_batch_goes_out_before_its_slower_siblings_finish(
    commander, kube, monkeypatch
):
    kube.set_status_delay(0.8)
    run = parallel_run(commander, kube, "a", "b")
    kube.fail_next(1, status=503, path="/deployments/b$")
    sent_at: list[Any] = []
    monkeypatch.setattr(
        tasks.step_execute, "apply_async", lambda args, **options: sent_at.append(timezone.now())
    )

    tasks.steps_execute(step_ids(run))

    a = run.steps.get(position=1)
    assert a.state == StepState.SUCCEEDED
    assert len(sent_at) == 1 and sent_at[0] < a.finished_at


def test_a_batch_step_that_ends_before_applying_leaves_no_apply_start_behind(commander, kube):
    run = parallel_run(commander, kube, "a", "b")
    broken = run.steps.get(position=2).service
    broken.target_config = {"namespace": "shop"}  # names no Deployment: the backend refuses
    broken.save()

    steps_execute(step_ids(run), dispatcher=InlineDispatcher())

    b = run.steps.get(position=2)
    assert b.state == StepState.FAILED and "deployment" in b.error
    assert b.apply_started_at is None


def test_a_step_past_its_deadline_and_the_time_limit_margin_stops_beating(commander, kube):
    run = parallel_run(commander, kube, "a")
    (claim,) = claim_pending(step_ids(run), "a worker whose thread hangs")
    long_ago = timezone.now() - timedelta(hours=1)
    Step.objects.filter(pk=claim.step.pk).update(deadline=long_ago, heartbeat_at=long_ago)

    heartbeats.register(claim.token, claim.step.pk, long_ago)
    try:
        time.sleep(0.6)  # the tests beat every 0.2 s
    finally:
        heartbeats.unregister(claim.token)

    assert Step.objects.get(pk=claim.step.pk).heartbeat_at == long_ago


def test_a_started_run_sends_its_steps_before_telling_other_apps(commander, kube, monkeypatch):
    """The run_started receivers (the status page's notice, the watches) do work of their
    own after the commit; the steps' messages go out first and never wait for it (with
    workers: in eager mode the steps would run inside the send, so the receivers go first)."""
    from rollbacks.signals import run_started

    order: list[str] = []
    monkeypatch.setattr(tasks.CeleryDispatcher, "runs_elsewhere", True)  # as with workers
    monkeypatch.setattr(
        tasks.steps_execute, "apply_async", lambda *args, **options: order.append("steps")
    )

    def told(**kwargs: Any) -> None:
        order.append("run_started")

    run_started.connect(told, dispatch_uid="test-order")
    try:
        parallel_run(commander, kube, "a", "b", enqueue=True)
    finally:
        run_started.disconnect(dispatch_uid="test-order")

    assert order == ["steps", "run_started"]


def test_a_step_message_the_broker_refuses_is_logged_and_the_run_still_told(
    commander, kube, monkeypatch, caplog
):
    """A broker that refuses the steps' message after the commit: the run stays running with
    its steps pending for the recovery sweep, and run_started's receivers are still told."""
    from rollbacks.signals import run_started

    def refuse(*args: Any, **options: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.steps_execute, "apply_async", refuse)
    told: list[int] = []

    def heard(*, run_id: int, **kwargs: Any) -> None:
        told.append(run_id)

    run_started.connect(heard, dispatch_uid="test-refused")
    try:
        run = parallel_run(commander, kube, "a", "b", enqueue=True)
    finally:
        run_started.disconnect(dispatch_uid="test-refused")

    assert told == [run.pk]
    run.refresh_from_db()
    assert run.state == RunState.RUNNING
    assert {step.state for step in run.steps.all()} == {StepState.PENDING}
    assert "the recovery sweep sends the steps again" in caplog.text


def test_a_run_with_every_step_skipped_is_told_started_before_finished(commander, kube):
    """Skipped before the confirmation, no step is left to run: the run ends at its start,
    and the other apps hear of its start first."""
    from rollbacks.signals import run_finished, run_started

    seed_deployment(kube, "a", ["a:1", "a:2"])
    service = KubeServiceFactory(name="a")
    spec = StepSpec(service=service, previous=True)
    run = rollbacks.services.run_create(incident=IncidentFactory(), steps=[spec], actor=commander)
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    rollbacks.services.step_skip(step=run.steps.get(), actor=commander, reason="done by hand")
    heard: list[str] = []

    def started(**kwargs: Any) -> None:
        heard.append("started")

    def finished(**kwargs: Any) -> None:
        heard.append("finished")

    run_started.connect(started, dispatch_uid="test-skipped-started")
    run_finished.connect(finished, dispatch_uid="test-skipped-finished")
    try:
        rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation=run.expected_confirmation(), enqueue=True
        )
    finally:
        run_started.disconnect(dispatch_uid="test-skipped-started")
        run_finished.disconnect(dispatch_uid="test-skipped-finished")

    run.refresh_from_db()
    assert run.state in (RunState.SUCCEEDED, RunState.FAILED)
    assert heard == ["started", "finished"]


def test_a_batch_is_claimed_with_one_lock_and_one_update_of_the_steps(commander, kube):
    run = parallel_run(commander, kube, "a", "b", "c")

    with CaptureQueriesContext(connection) as queries:
        claims = claim_pending(step_ids(run), "worker", mark_apply=True)

    statements = [query["sql"] for query in queries.captured_queries]
    step_table = f'"{Step._meta.db_table}"'
    assert len(claims) == 3 and all(claim.apply_marked for claim in claims)
    assert sum(sql.startswith(f"UPDATE {step_table}") for sql in statements) == 1
    locks = [sql for sql in statements if "FOR NO KEY UPDATE" in sql]
    assert len(locks) == 1 and locks[0].endswith(f"FOR NO KEY UPDATE OF {step_table}")
