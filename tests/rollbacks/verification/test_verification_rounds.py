"""Verification rounds as rows: a round and its checks are VerificationRound and
VerificationCheck rows, written with the timeline entries that tell of them, and how a round
ends is its row's state. The checks run for real against an HTTP server thread."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import IntegrityError, connections

import rollbacks.services
from devinfra.processes import free_port
from incidents.models import TimelineEntry, TimelineKind
from rollbacks import verification
from rollbacks.engine.advance import run_advance
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.execution import step_execute
from rollbacks.engine.inline import run_inline
from rollbacks.models import (
    Run,
    RunState,
    VerificationCheck,
    VerificationCheckStatus,
    VerificationOutcome,
    VerificationRound,
    VerificationState,
    VerificationTrigger,
)
from tests.rollbacks.verification.builders import started_run, web_service

pytestmark = pytest.mark.django_db(transaction=True)


def health_check(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "name": "web health",
        "url": url,
        "json_field": "version",
        "expect": "{version}",
        "retries": 0,
        **extra,
    }


def steps_done(run: Run) -> str:
    """Execute the run's steps; return the key of the round they started, not yet run."""
    dispatcher = InlineDispatcher()
    run_advance(run.pk, dispatcher=dispatcher)
    for step_id in dispatcher.take_steps():
        step_execute(step_id, dispatcher=dispatcher)
    ((run_id, round_key),) = dispatcher.take_verifications()
    assert run_id == run.pk
    return round_key


def verification_entries(run: Run, kind: str) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(
            incident=run.incident, kind=kind, payload__phase="verification"
        ).order_by("id")
    )


def test_a_started_round_lists_its_checks_pending_under_the_key_its_entry_carries(
    commander, kube, health
):
    run = started_run(commander, web_service(kube, [health_check(health.url)]))

    round_key = steps_done(run)

    round_ = VerificationRound.objects.get(run=run)
    (started,) = verification_entries(run, TimelineKind.RUN)
    assert (round_.key, round_.number) == (round_key, 1)
    assert (started.payload["round"], started.payload["number"]) == (round_key, 1)
    assert (round_.state, round_.outcome, round_.finished_at) == ("running", "", None)
    assert round_.trigger == VerificationTrigger.STEPS_DONE
    (check,) = round_.checks.all()
    assert (check.index, check.name, check.kind, check.service) == (0, "web health", "http", "web")
    assert (check.status, check.recorded_at, check.ticks) == ("pending", None, "http_health")
    assert check.step_id == run.steps.get().pk


def test_a_passing_round_is_a_passed_row_with_its_check_result(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [health_check(health.url)]))

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    round_ = VerificationRound.objects.get(run=run)
    concluded = verification_entries(run, TimelineKind.RUN)[-1]
    assert (round_.state, round_.outcome) == (VerificationState.PASSED, "passed")
    assert round_.summary == concluded.body == f"Run #{run.pk} verified: all 1 check(s) passed"
    assert round_.finished_at is not None and round_.finished_at >= round_.started_at
    (check,) = round_.checks.all()
    (result,) = verification_entries(run, TimelineKind.CHECK_RESULT)
    assert check.status == VerificationCheckStatus.PASSED == result.payload["outcome"]
    assert (check.observed, check.threshold) == ("200, version=v1", "200, version=v1")
    assert check.message == result.payload["message"]
    assert check.recorded_at is not None


def test_a_failing_round_is_a_failed_row_and_its_check_says_why(commander, kube, health):
    health.script((200, {"version": "v2"}))
    run = started_run(commander, web_service(kube, [health_check(health.url)]))

    run = run_inline(run.pk)

    assert run.state == RunState.FAILED
    round_ = VerificationRound.objects.get(run=run)
    assert (round_.state, round_.outcome) == (VerificationState.FAILED, "failed")
    assert round_.summary.startswith(f"Run #{run.pk} failed: verification failed: web health")
    (check,) = round_.checks.all()
    assert check.status == VerificationCheckStatus.FAILED
    assert "version='v2' (want 'v1')" in check.message


def test_an_inconclusive_round_pauses_the_run_and_resuming_starts_a_second_round(commander, kube):
    nowhere = f"http://127.0.0.1:{free_port()}"
    check = {"kind": "prometheus", "url": nowhere, "query": "up", "threshold": 1}
    run = started_run(commander, web_service(kube, [check]))

    run = run_inline(run.pk)
    rollbacks.services.run_resume(run=run, actor=commander)  # Celery runs eagerly here

    rounds = list(VerificationRound.objects.filter(run=run).order_by("number"))
    assert [(r.number, r.trigger, r.state) for r in rounds] == [
        (1, "steps_done", "inconclusive"),
        (2, "resumed", "inconclusive"),
    ]
    run.refresh_from_db()
    assert run.state == RunState.PAUSED
    assert verification.pause_reason(run) == rounds[1].summary
    assert rounds[1].summary == verification_entries(run, TimelineKind.RUN)[-1].body


def test_a_round_reaching_a_paused_run_is_recorded_as_not_run(commander, kube, health):
    run = started_run(commander, web_service(kube, [health_check(health.url)]))
    round_key = steps_done(run)
    rollbacks.services.run_pause(run=run, actor=commander)

    assert verification.verification_execute(run.pk, round_key) == "recorded"

    round_ = VerificationRound.objects.get(run=run)
    assert (round_.state, round_.outcome) == (
        VerificationState.RECORDED,
        VerificationOutcome.NOT_RUN,
    )
    assert [check.status for check in round_.checks.all()] == ["pending"]
    verification.attach_to_runs([run])
    assert run.verification.outcome == "not run"  # type: ignore[attr-defined]


def test_a_round_delivered_again_after_it_concluded_writes_nothing(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [health_check(health.url)]))
    round_key = steps_done(run)
    assert verification.verification_execute(run.pk, round_key) == "passed"
    recorded = VerificationCheck.objects.get(round__run=run)

    assert verification.verification_execute(run.pk, round_key) == ""

    again = VerificationCheck.objects.get(round__run=run)
    assert (again.pk, again.recorded_at) == (recorded.pk, recorded.recorded_at)
    assert VerificationRound.objects.filter(run=run).count() == 1
    assert len(verification_entries(run, TimelineKind.CHECK_RESULT)) == 1


def test_a_round_delivered_twice_at_once_records_its_check_row_once(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [health_check(health.url)]))
    round_key = steps_done(run)
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            verification.verification_execute(run.pk, round_key)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (check,) = VerificationCheck.objects.filter(round__run=run)
    assert check.status == VerificationCheckStatus.PASSED
    assert VerificationRound.objects.get(run=run).state == VerificationState.PASSED
    assert len(verification_entries(run, TimelineKind.CHECK_RESULT)) == 1


def test_a_run_cannot_have_two_rounds_running(commander, kube, health):
    run = started_run(commander, web_service(kube, [health_check(health.url)]))
    steps_done(run)

    with pytest.raises(IntegrityError, match="verification_one_running_round"):
        VerificationRound.objects.create(
            run=run, key="another", number=2, trigger=VerificationTrigger.RESUMED
        )


def test_a_concluded_round_must_say_what_it_found(commander, kube, health):
    run = started_run(commander, web_service(kube, [health_check(health.url)]))
    steps_done(run)

    with pytest.raises(IntegrityError, match="verification_round_concluded_has_outcome"):
        VerificationRound.objects.filter(run=run).update(state=VerificationState.RECORDED)


def test_a_check_failing_unexpectedly_is_inconclusive_naming_its_type_only(
    commander, kube, health, monkeypatch
):
    def broken(spec, **kwargs):
        raise UnicodeEncodeError("latin-1", "token=s3cr3t-€", 13, 14, "not Latin-1")

    monkeypatch.setattr(verification, "run_check", broken)
    run = started_run(commander, web_service(kube, [health_check(health.url)]))

    run = run_inline(run.pk)

    (check,) = VerificationRound.objects.get(run=run).checks.all()
    (result,) = verification_entries(run, TimelineKind.CHECK_RESULT)
    assert check.status == VerificationCheckStatus.INCONCLUSIVE
    assert (
        check.message
        == result.payload["message"]
        == ("internal error (UnicodeEncodeError); the worker's log has the details")
    )
    assert "s3cr3t" not in result.body + check.message
