"""Faults on the way to the Kubernetes API: server errors, conflicts, throttling, hung
requests and rollouts that never finish."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import rollbacks.services
from executors.kubernetes.backend import KubernetesDeploymentBackend
from incidents.models import TimelineEntry, TimelineKind
from rollbacks.engine.inline import run_inline
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.engine_fixtures import deployment_revision, live_image, patches_to

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOYMENT = "/deployments/web$"


def _run(commander: Any, service: Any, **spec: Any) -> Run:
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, previous=True, **spec)],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    run = rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation="web", enqueue=False
    )
    return run_inline(run.pk)


def _step(run: Run) -> Step:
    return run.steps.get()


def _outputs(run: Run) -> list[str]:
    return list(
        TimelineEntry.objects.filter(
            incident=run.incident, kind=TimelineKind.STEP_OUTPUT
        ).values_list("body", flat=True)
    )


def test_a_server_error_is_retried_and_the_step_succeeds(commander, kube, kube_service):
    revision = deployment_revision(kube, "web")
    kube.fail_next(1, status=500, method="PATCH", path=DEPLOYMENT)

    run = _run(commander, kube_service)

    step = _step(run)
    assert run.state == RunState.SUCCEEDED
    assert step.attempts == 2
    assert deployment_revision(kube, "web") == revision + 1
    retry = next(body for body in _outputs(run) if "retryable error" in body)
    assert "attempt 1" in retry and "HTTP 500" in retry
    started = TimelineEntry.objects.filter(incident=run.incident, kind=TimelineKind.STEP_STARTED)
    assert [entry.payload["attempt"] for entry in started] == [1, 2]
    # The first attempt's line went in before its claim was released, numbered before the
    # second attempt's.
    logged = list(step.log_lines.order_by("seq").values_list("seq", "line"))
    assert [seq for seq, _ in logged] == list(range(1, len(logged) + 1))
    plan = "shop/web: revision 2 (registry.local/web:v2) → revision 1 (registry.local/web:v1)"
    assert [line for _, line in logged].count(plan) == 2
    assert logged[0][1] == plan


def test_a_conflict_is_resolved_by_reading_again_within_the_attempt(commander, kube, kube_service):
    kube.fail_next(1, status=409, method="PATCH", path=DEPLOYMENT)

    run = _run(commander, kube_service)

    step = _step(run)
    assert run.state == RunState.SUCCEEDED
    assert step.attempts == 1
    lines = list(step.log_lines.values_list("line", flat=True))
    assert any("changed by someone else meanwhile; re-reading" in line for line in lines)
    assert live_image(kube, "web") == "registry.local/web:v1"


def test_endless_conflicts_fail_the_step_as_retryable_and_a_retry_then_succeeds(
    commander, kube, kube_service, settings
):
    settings.ROLLBACK_STEP_MAX_RETRIES = 1
    kube.fail_next(100, status=409, method="PATCH", path=DEPLOYMENT)

    run = _run(commander, kube_service)

    step = _step(run)
    assert run.state == RunState.FAILED
    assert step.state == StepState.FAILED and step.error_retryable
    assert step.attempts == 2
    assert "still conflicting" in step.error
    assert live_image(kube, "web") == "registry.local/web:v2"
    finished = TimelineEntry.objects.filter(kind=TimelineKind.STEP_FINISHED).last()
    assert "(retryable: retry the step)" in finished.body

    kube.clear_faults()
    rollbacks.services.step_retry(step=step, actor=commander)  # Celery runs eagerly in tests

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert live_image(kube, "web") == "registry.local/web:v1"


def test_throttling_is_retried_after_the_servers_retry_after(commander, kube, kube_service):
    kube.fail_next(1, status=429, method="PATCH", path=DEPLOYMENT, retry_after=1)

    started = time.monotonic()
    run = _run(commander, kube_service)

    assert time.monotonic() - started >= 1.0
    assert run.state == RunState.SUCCEEDED
    assert _step(run).attempts == 2
    retry = next(body for body in _outputs(run) if "retryable error" in body)
    assert "HTTP 429" in retry and "the server asked for 1 s" in retry


def test_a_rollout_that_does_not_finish_by_the_deadline_fails_the_step(
    commander, kube, kube_service
):
    kube.set_status_delay(30)

    started = time.monotonic()
    run = _run(commander, kube_service, timeout_seconds=1)

    assert time.monotonic() - started < 10
    step = _step(run)
    assert run.state == RunState.FAILED
    assert step.state == StepState.FAILED and not step.error_retryable
    assert step.applied_at is not None  # applied, then the wait ran out of time
    assert "deadline passed" in step.error
    assert "waiting for the spec update" in step.error or "replicas" in step.error
    assert "deadline passed" in run.failure_reason


def test_a_hung_request_times_out_is_retried_and_applies_once(commander, kube, kube_service):
    revision, patches = deployment_revision(kube, "web"), patches_to(kube, "web")
    # The first PATCH hangs past the client's 2 s timeout, then reaches the server anyway.
    kube.hang_next(1, seconds=3, method="PATCH", path=DEPLOYMENT)

    run = _run(commander, kube_service)

    step = _step(run)
    assert run.state == RunState.SUCCEEDED
    assert step.attempts == 2
    assert any("timed out" in body.lower() for body in _outputs(run))
    # Let the hung PATCH through: it carries the resourceVersion it read, now stale.
    hung_until = step.started_at + timedelta(seconds=3.3)
    time.sleep(max(0.0, (hung_until - timezone.now()).total_seconds()))
    assert patches_to(kube, "web") == patches + 2
    assert deployment_revision(kube, "web") == revision + 1
    assert live_image(kube, "web") == "registry.local/web:v1"


def test_a_step_that_runs_past_its_deadline_before_applying_fails_without_applying(
    commander, kube, kube_service, settings
):
    settings.ROLLBACK_RETRY_BACKOFF_SECONDS = 1.5
    kube.fail_next(1, status=503, method="PATCH", path=DEPLOYMENT)

    run = _run(commander, kube_service, timeout_seconds=1)

    step = _step(run)
    assert step.state == StepState.FAILED
    assert "deadline passed before attempt 2 could apply" in step.error
    assert live_image(kube, "web") == "registry.local/web:v2"


def test_an_unexpected_error_is_recorded_by_its_type_never_its_text(
    commander, kube, kube_service, monkeypatch
):
    # An encoding error holds the whole text it was encoding: here, a header with a token.
    def apply(self, target, *, log):
        raise UnicodeEncodeError("latin-1", "Bearer s3cr3t-t0ken-€", 20, 21, "not Latin-1")

    monkeypatch.setattr(KubernetesDeploymentBackend, "apply", apply)

    run = _run(commander, kube_service)

    step = _step(run)
    assert (run.state, step.state, step.error_retryable) == (RunState.FAILED, "failed", False)
    assert step.error == "internal error (UnicodeEncodeError); the worker's log has the details"
    recorded = " ".join(
        TimelineEntry.objects.filter(incident=run.incident).values_list("body", flat=True)
    )
    assert "internal error (UnicodeEncodeError)" in recorded
    assert "s3cr3t" not in recorded + run.failure_reason + step.error
