"""Verification after a rollback, through the engine: every service's checks run once the
steps are done, each result lands on the timeline, and the outcome decides the run —
failed fails it, inconclusive pauses it for the commander, passed succeeds it and ticks the
post-rollback checklist. Real parts: an HTTP server thread, a real Prometheus process
scraping a metrics source the test controls, and the Kubernetes stand-in."""

from __future__ import annotations

import itertools
import threading
import time
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse

import rollbacks.services
from devinfra.processes import free_port
from incidents.models import (
    ChecklistItem,
    Incident,
    TimelineEntry,
    TimelineKind,
)
from rollbacks import verification
from rollbacks.engine.advance import run_advance
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.execution import step_execute
from rollbacks.engine.inline import run_inline
from rollbacks.engine.recovery import recover_stalled
from rollbacks.models import Run, RunState
from rollbacks.services import StepSpec
from tests.rollbacks.engine_factories import IncidentFactory, KubeServiceFactory, UserFactory
from tests.rollbacks.engine_fixtures import seed_deployment
from tests.rollbacks.verification.builders import started_run, web_service

pytestmark = pytest.mark.django_db(transaction=True)

# -- helpers ---------------------------------------------------------------------------------


def _check_entries(run: Run) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(
            incident=run.incident, kind=TimelineKind.CHECK_RESULT, payload__phase="verification"
        ).order_by("id")
    )


def _ticked(run: Run) -> dict[str, bool]:
    return {
        item.check_key: item.is_done
        for item in ChecklistItem.objects.filter(checklist__incident=run.incident)
        if item.check_key
    }


def _health_check(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "name": "web health",
        "url": url,
        "json_field": "version",
        "expect": "{version}",
        "retries": 3,
        "backoff": 0.2,
        **extra,
    }


def _prometheus_check(url: str, query: str, threshold: float, **extra: Any) -> dict[str, Any]:
    return {"kind": "prometheus", "url": url, "query": query, "threshold": threshold, **extra}


def _steps_done_round(run: Run) -> tuple[InlineDispatcher, str]:
    """Execute the run's steps and return the verification round they started, not run."""
    dispatcher = InlineDispatcher()
    run_advance(run.pk, dispatcher=dispatcher)
    for step_id in dispatcher.take_steps():
        step_execute(step_id, dispatcher=dispatcher)
    ((run_id, round_id),) = dispatcher.take_verifications()
    assert run_id == run.pk
    return dispatcher, round_id


# -- HTTP health -----------------------------------------------------------------------------


def test_a_health_endpoint_that_recovers_within_its_retries_passes_and_the_run_succeeds(
    commander, kube, health
):
    health.script(
        (503, {"status": "starting"}), (503, {"status": "starting"}), (200, {"version": "v1"})
    )
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    assert len(health.arrivals) == 3
    first_wait, second_wait = (b - a for a, b in itertools.pairwise(health.arrivals))
    assert first_wait >= 0.2 and second_wait >= 0.4  # backoff 0.2 s, then twice that
    (entry,) = _check_entries(run)
    step = run.steps.get()
    assert entry.actor_label == "verification"
    assert entry.payload | {"round": "", "message": ""} == {
        "run": run.pk,
        "phase": "verification",
        "round": "",
        "number": 1,
        "index": 0,
        "check": "web health",
        "kind": "http",
        "service": "web",
        "step": step.pk,
        "outcome": "passed",
        "observed": "200, version=v1",
        "threshold": "200, version=v1",
        "message": "",
        "ticks": "http_health",
    }
    assert "attempt 3 of 4" in entry.payload["message"]


def test_passing_checks_tick_their_checklist_items_as_the_automation(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)

    run = run_inline(run.pk)

    item = ChecklistItem.objects.get(checklist__incident=run.incident, check_key="http_health")
    assert item.is_done and item.done_automatically and item.done_by is None
    assert _ticked(run) == {key: key == "http_health" for key in _ticked(run)}
    tick = TimelineEntry.objects.get(incident=run.incident, kind=TimelineKind.CHECKLIST)
    assert tick.actor_label == "verification"
    assert f"run #{run.pk} verification passed: web health on web" in tick.body


def test_a_verified_run_stamps_the_restored_and_verified_instants(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)

    run = run_inline(run.pk)

    incident = Incident.objects.get(pk=run.incident_id)
    step = run.steps.get()
    assert incident.restored_at == step.finished_at
    assert incident.verified_at is not None and incident.verified_at >= step.finished_at


def test_a_health_endpoint_reporting_another_version_fails_the_run_with_the_reason(
    commander, kube, health
):
    health.script((200, {"version": "v2"}))
    run = started_run(
        commander,
        web_service(kube, [_health_check(health.url, retries=1, backoff=0.05)]),
        checklist=True,
    )

    run = run_inline(run.pk)

    assert run.state == RunState.FAILED
    assert run.failure_reason.startswith("verification failed: web health on web: ")
    assert "version='v2' (want 'v1')" in run.failure_reason
    (entry,) = _check_entries(run)
    assert entry.payload["outcome"] == "failed"
    assert entry.payload["observed"] == "200, version=v2"
    assert not any(_ticked(run).values())
    incident = Incident.objects.get(pk=run.incident_id)
    assert incident.restored_at is None and incident.verified_at is None


# -- Prometheus (a real server) --------------------------------------------------------------


def test_an_error_rate_below_its_threshold_passes_and_ticks_the_error_rate_item(
    commander, kube, prometheus, exporter, metric
):
    exporter.set(metric, 0.01, {"service": "web"})
    prometheus.wait_for_value(metric)
    check = _prometheus_check(
        prometheus.url, f'{metric}{{service="web"}}', 0.05, measures="error_rate"
    )
    run = started_run(commander, web_service(kube, [check]), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    (entry,) = _check_entries(run)
    assert entry.payload["kind"] == "prometheus"
    assert (entry.payload["observed"], entry.payload["threshold"]) == (0.01, 0.05)
    assert _ticked(run)["error_rate"] is True


def test_a_latency_above_its_threshold_fails_the_run_and_ticks_only_what_passed(
    commander, kube, prometheus, exporter, metric, health
):
    exporter.set(metric, 0.9, {"quantile": "0.99"})
    prometheus.wait_for_value(metric)
    health.script((200, {"version": "v1"}))
    checks = [
        _health_check(health.url),
        _prometheus_check(prometheus.url, metric, 0.5, name="p99 latency", measures="latency"),
    ]
    run = started_run(commander, web_service(kube, checks), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.FAILED
    assert "p99 latency on web: not below 0.5" in run.failure_reason
    assert {e.payload["check"]: e.payload["outcome"] for e in _check_entries(run)} == {
        "web health": "passed",
        "p99 latency": "failed",
    }
    ticked = _ticked(run)
    assert ticked["http_health"] is True and ticked["latency"] is False


def test_an_empty_prometheus_result_pauses_the_run_and_resuming_verifies_again(
    commander, kube, prometheus, exporter, metric
):
    check = _prometheus_check(prometheus.url, metric, 0.05, measures="error_rate")
    run = started_run(commander, web_service(kube, [check]), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.PAUSED
    (entry,) = _check_entries(run)
    assert entry.payload["outcome"] == "inconclusive"
    assert "no data" in entry.payload["message"]
    paused = TimelineEntry.objects.filter(incident=run.incident, kind=TimelineKind.RUN).last()
    assert paused.payload["event"] == "inconclusive"
    assert "Missing data is never a pass" in paused.body
    assert _ticked(run)["error_rate"] is False

    exporter.set(metric, 0.02)
    prometheus.wait_for_value(metric)
    rollbacks.services.run_resume(run=run, actor=commander)  # Celery runs eagerly in these tests

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    entries = _check_entries(run)
    assert [(e.payload["number"], e.payload["outcome"]) for e in entries] == [
        (1, "inconclusive"),
        (2, "passed"),
    ]
    assert _ticked(run)["error_rate"] is True


def test_an_unreachable_prometheus_is_inconclusive_and_the_commander_can_cancel(commander, kube):
    nowhere = f"http://127.0.0.1:{free_port()}"
    run = started_run(
        commander, web_service(kube, [_prometheus_check(nowhere, "up", 1)]), checklist=True
    )

    run = run_inline(run.pk)

    assert run.state == RunState.PAUSED
    (entry,) = _check_entries(run)
    assert "Prometheus did not answer" in entry.payload["message"]
    run = rollbacks.services.run_cancel(
        run=run, actor=commander, reason="error rate checked by hand"
    )
    assert run.state == RunState.CANCELLED


# -- Kubernetes pods -------------------------------------------------------------------------


def test_healthy_pods_pass_and_tick_the_pods_item(commander, kube):
    checks = [{"kind": "kubernetes_pods", "namespace": "shop", "selector": "app=web"}]
    run = started_run(commander, web_service(kube, checks), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    (entry,) = _check_entries(run)
    assert entry.payload["observed"] == "2/2 ready, most restarts 0"
    assert _ticked(run)["pods_healthy"] is True


def test_pods_crash_looping_after_the_rollback_fail_the_run(commander, kube):
    seed_deployment(kube, "api", ["registry.local/api:v7"])
    kube.crash_loop_image("registry.local/api:v7")  # web's dependency keeps crashing
    checks = [
        {"kind": "kubernetes_pods", "name": "api pods", "namespace": "shop", "selector": "app=api"}
    ]
    run = started_run(commander, web_service(kube, checks), checklist=True)

    run = run_inline(run.pk)

    assert run.state == RunState.FAILED
    assert "api pods on web: crash-looping" in run.failure_reason
    assert "CrashLoopBackOff" in run.failure_reason
    assert _ticked(run)["pods_healthy"] is False


# -- which runs verify, and deliveries -------------------------------------------------------


def test_a_dry_run_verifies_nothing(commander, kube, health):
    run = started_run(
        commander, web_service(kube, [_health_check(health.url)]), dry_run=True, checklist=True
    )

    run = run_inline(run.pk)

    assert run.state == RunState.SUCCEEDED
    assert _check_entries(run) == [] and health.arrivals == []


def test_a_round_delivered_twice_at_once_records_each_check_once(commander, kube, health):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)
    _, round_id = _steps_done_round(run)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            outcomes.append(verification.verification_execute(run.pk, round_id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["", "passed"]
    assert len(_check_entries(run)) == 1
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED


def test_a_round_reaching_a_paused_run_does_not_run_and_resuming_starts_a_new_one(
    commander, kube, health
):
    health.script((200, {"version": "v1"}))
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)
    _, round_id = _steps_done_round(run)
    rollbacks.services.run_pause(
        run=run, actor=commander, reason="someone is looking at the graphs"
    )

    assert verification.verification_execute(run.pk, round_id) == "recorded"
    assert _check_entries(run) == [] and health.arrivals == []

    rollbacks.services.run_resume(run=run, actor=commander)

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert [e.payload["number"] for e in _check_entries(run)] == [2]


def test_a_lost_round_is_handed_out_again_by_the_recovery_sweep(commander, kube, health, settings):
    run = started_run(commander, web_service(kube, [_health_check(health.url)]), checklist=True)
    _, round_id = _steps_done_round(run)
    settings.VERIFY_TIMEOUT_SECONDS = 0
    settings.ROLLBACK_STALE_AFTER_SECONDS = 0.1
    time.sleep(0.3)
    dispatcher = InlineDispatcher()

    recover_stalled(dispatcher=dispatcher)

    assert dispatcher.take_verifications() == [(run.pk, round_id)]


def test_verification_runs_as_celery_work_when_the_run_is_started_from_the_console(
    commander, kube, health
):
    health.script((200, {"version": "v1"}))
    service = web_service(kube, [_health_check(health.url)])
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, release=service.releases.get(version="v1"))],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)

    rollbacks.services.run_confirm_and_start(run=run, actor=commander, confirmation="web")  # eager

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert [e.payload["outcome"] for e in _check_entries(run)] == ["passed"]


# -- configuration and the room --------------------------------------------------------------


def test_a_service_whose_checks_do_not_validate_cannot_be_saved(kube):
    service = KubeServiceFactory.build(
        name="web",
        target_config={
            "namespace": "shop",
            "deployment": "web",
            "checks": [{"kind": "prometheus", "query": "up"}],
        },
    )

    with pytest.raises(ValidationError, match="checks/0: 'threshold' is a required property"):
        service.clean()


def test_the_room_shows_each_check_with_its_outcome_and_observed_value_against_its_threshold(
    client, commander, kube, health
):
    health.script((200, {"version": "v2"}))
    run = started_run(
        commander, web_service(kube, [_health_check(health.url, retries=0)]), checklist=True
    )
    run_inline(run.pk)
    client.force_login(UserFactory(username="watcher", roles=["Viewer"]))

    response = client.get(reverse("incident_runs", args=[run.incident_id]))

    assert response.status_code == 200
    page = response.content.decode()
    section = page[page.index(f'id="verification-{run.pk}"') :]
    assert "web health" in section
    assert '<span class="state state-failed">failed</span>' in section
    assert "<code>200, version=v2</code>" in section
    assert "<code>200, version=v1</code>" in section
    assert "version=&#x27;v2&#x27; (want &#x27;v1&#x27;)" in section


def test_the_room_reads_every_runs_verification_in_one_query(
    client, commander, kube, health, django_assert_max_num_queries
):
    health.script((200, {"version": "v1"}))
    service = web_service(kube, [_health_check(health.url)])
    first = started_run(commander, service, checklist=True)
    run_inline(first.pk)
    client.force_login(commander)
    url = reverse("incident_runs", args=[first.incident_id])
    client.get(url)  # warm the session and permission caches
    with django_assert_max_num_queries(100) as one_run:
        client.get(url)
    second = rollbacks.services.run_create(
        incident=first.incident,
        steps=[StepSpec(service=service, previous=True)],
        actor=commander,
    )
    second = rollbacks.services.run_request_approval(run=second, actor=commander)
    second = rollbacks.services.run_confirm_and_start(
        run=second, actor=commander, confirmation="web", enqueue=False
    )
    run_inline(second.pk)

    with django_assert_max_num_queries(len(one_run.captured_queries)):
        response = client.get(url)

    assert response.content.decode().count('class="verification"') == 2


def test_the_terminal_command_says_an_inconclusive_verification_paused_the_run(commander, kube):
    nowhere = f"http://127.0.0.1:{free_port()}"
    web_service(kube, [_prometheus_check(nowhere, "up", 1, name="error rate")])
    incident = IncidentFactory()
    out = StringIO()

    with pytest.raises(CommandError, match="paused: verification inconclusive") as refusal:
        call_command(
            "rollback",
            "web",
            "--to",
            "v1",
            "--incident",
            str(incident.pk),
            "--as",
            "ic",
            "--yes",
            stdout=out,
            stderr=StringIO(),
        )

    assert "error rate on web: Prometheus did not answer" in str(refusal.value)
    assert Run.objects.get(incident=incident).state == RunState.PAUSED


def test_an_error_rate_still_high_at_first_passes_once_it_settles_below_the_threshold(
    prometheus, exporter, metric
):
    from executors.base import CheckStatus, Connections
    from executors.checks import VerificationDefaults, run_check

    exporter.set(metric, 0.3)
    prometheus.wait_for_value(metric, 0.3)
    recovery = threading.Timer(1.0, lambda: exporter.set(metric, 0.01))
    recovery.start()
    spec = {
        "kind": "prometheus",
        "name": "error rate",
        "url": prometheus.url,
        "query": metric,
        "threshold": 0.05,
        "settle_seconds": 20,
    }
    try:
        result = run_check(
            spec, version=None, connections=Connections(), defaults=VerificationDefaults()
        )
    finally:
        recovery.cancel()
    assert (result.status, result.observed) == (CheckStatus.PASSED, 0.01)


def test_an_error_rate_that_stays_high_fails_once_it_has_had_time_to_settle(
    prometheus, exporter, metric
):
    from executors.base import CheckStatus, Connections
    from executors.checks import VerificationDefaults, run_check

    exporter.set(metric, 0.3)
    prometheus.wait_for_value(metric, 0.3)
    spec = {"kind": "prometheus", "url": prometheus.url, "query": metric, "threshold": 0.05}
    started = time.monotonic()
    result = run_check(
        {**spec, "settle_seconds": 3},
        version=None,
        connections=Connections(),
        defaults=VerificationDefaults(),
    )
    assert result.status == CheckStatus.FAILED
    assert time.monotonic() - started >= 3
