"""A rollback verified by a sentry_errors check, carried out by a Celery worker in a process
of its own against the Kubernetes stand-in and the Sentry stand-in (whose project receives
errors exactly while the Deployment runs the bad release): the round counts only errors
after the steps finished, so it cannot be fooled by the bad release's last minute."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import F
from django.utils import timezone

import rollbacks.services
from devinfra.hosted.sentry import SentryStandin
from executors.base import CheckStatus, Connections
from executors.checks import VerificationDefaults, run_check
from incidents.models import Service, TimelineEntry, TimelineKind
from rollbacks.models import Run, RunState
from rollbacks.services import StepSpec
from tests.devinfra.hosted_sentry import SENTRY_TOKEN_ENV
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.engine_fixtures import wait_for
from tests.rollbacks.verification.builders import web_service

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

BAD_IMAGE = "registry.local/web:v2"


def _bad_release_live(kube: Any) -> bool:
    deployment = kube.get("deployments", "shop", "web") or {}
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    return bool(containers) and containers[0].get("image") == BAD_IMAGE


def _check_entries(run: Run) -> list[TimelineEntry]:
    return list(
        TimelineEntry.objects.filter(
            incident=run.incident, kind=TimelineKind.CHECK_RESULT, payload__phase="verification"
        ).order_by("id")
    )


def _started(commander: Any, service: Service) -> Run:
    """A run taking `service` back to v1, confirmed and handed to the worker."""
    run = rollbacks.services.run_create(
        incident=IncidentFactory(),
        steps=[StepSpec(service=service, release=service.releases.get(version="v1"))],
        actor=commander,
    )
    run = rollbacks.services.run_request_approval(run=run, actor=commander)
    return rollbacks.services.run_confirm_and_start(
        run=run, actor=commander, confirmation=run.expected_confirmation()
    )


def _recorded(run: Run) -> str:
    return str([[entry.body, entry.payload] for entry in run.incident.timeline.all()])


def test_a_round_counts_only_errors_after_the_rollback_and_passes_once_its_window_is_over(
    commander, kube, sentry: SentryStandin, sentry_spec, start_worker
):
    worker = start_worker("sentry", **{SENTRY_TOKEN_ENV: sentry.token})
    service = web_service(kube, [{**sentry_spec, "window": 1, "wait_seconds": 2}])
    sentry.follow("acme", "web", lambda: _bad_release_live(kube), 600, every=0.05)
    time.sleep(1)  # the bad release has been erring

    run = _started(commander, service)

    wait_for(lambda: Run.objects.get(pk=run.pk).state == RunState.PAUSED, 60, "the pause")

    (first,) = _check_entries(run)
    assert first.payload["outcome"] == "inconclusive" and first.payload["observed"] == 0
    assert "1-minute window ends at" in first.payload["message"]
    # The same check over the plain last minute would have counted the bad release.
    last_minute = run_check(
        {**sentry_spec, "window": 1},
        version=None,
        connections=Connections(),
        defaults=VerificationDefaults(),
    )
    assert last_minute.status == CheckStatus.FAILED
    # Rather than wait out the window, move the rollback and every error event 62 s into
    # the past: the same history, its window over.
    _shift_into_the_past(run, sentry, timedelta(seconds=62))

    rollbacks.services.run_resume(run=Run.objects.get(pk=run.pk), actor=commander)

    wait_for(lambda: Run.objects.get(pk=run.pk).state == RunState.SUCCEEDED, 60, "success")
    second = _check_entries(run)[-1]
    assert (second.payload["outcome"], second.payload["observed"]) == ("passed", 0)
    assert second.payload["threshold"] == "≤ 3 in 1 min"
    assert sentry.token not in _recorded(run) + worker.output()


def _shift_into_the_past(run: Run, sentry: SentryStandin, by: timedelta) -> None:
    assert run.steps.get().finished_at is not None
    run.steps.update(finished_at=F("finished_at") - by)
    with sentry.lock:
        for stream in sentry.streams:
            stream.start -= by
            if stream.until is not None:
                stream.until -= by


def test_errors_going_on_after_the_rollback_fail_the_run_with_the_count(
    commander, kube, sentry: SentryStandin, sentry_spec, start_worker
):
    worker = start_worker("sentry", **{SENTRY_TOKEN_ENV: sentry.token})
    service = web_service(kube, [{**sentry_spec, "window": 1, "wait_seconds": 30}])
    sentry.add_errors("acme", "web", 600, start=timezone.now() - timedelta(minutes=10))

    run = _started(commander, service)

    # Failed, not inconclusive: it did not wait for the 60 s window, only 30 s at most.
    wait_for(lambda: Run.objects.get(pk=run.pk).state == RunState.FAILED, 60, "the failure")
    run.refresh_from_db()
    assert run.failure_reason.startswith("verification failed: sentry acme/web on web: ")
    assert "above 3" in run.failure_reason
    assert sentry.token not in _recorded(run) + worker.output()


# -- saving a service ------------------------------------------------------------------------


def _admin_add(client: Any, checks: list[dict[str, Any]]) -> Any:
    client.force_login(User.objects.create_superuser("root", "root@example.com", "unused-pw"))
    config = {"namespace": "shop", "deployment": "web", "checks": checks}
    return client.post(
        "/admin/incidents/service/add/",
        {
            "name": "web",
            "environment": "production",
            "backend": "kubernetes",
            "target_config": json.dumps(config),
            "signal_queries": "{}",
            "auto_rollback": "{}",
            "known_good_bake_minutes": "0",
            "releases-TOTAL_FORMS": "0",
            "releases-INITIAL_FORMS": "0",
            "releases-MIN_NUM_FORMS": "0",
            "releases-MAX_NUM_FORMS": "1000",
        },
    )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"window": 61}, "checks/0/window: 61 is greater than the maximum of 60"),
        ({"threshold": -1}, "checks/0/threshold: -1 is less than the minimum of 0"),
        (
            {"project": "<script>alert(1)</script>"},
            "checks/0/project: &#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27; is not a "
            "Sentry slug",
        ),
        ({"organization": "会社"}, "checks/0/organization: &#x27;会社&#x27; is not a Sentry slug"),
    ],
)
def test_the_service_form_refuses_a_bad_sentry_check_naming_the_field(
    client, sentry_spec, change, said
):
    response = _admin_add(client, [{**sentry_spec, **change}])

    assert response.status_code == 200  # the form again, with the error
    assert said in response.content.decode()
    assert "<script>alert(1)" not in response.content.decode()
    assert not Service.objects.filter(name="web").exists()


def test_the_service_form_saves_a_good_sentry_check(client, sentry_spec):
    response = _admin_add(client, [sentry_spec])

    assert response.status_code == 302, response.content.decode()[:2000]
    (check,) = Service.objects.get(name="web").target_config["checks"]
    assert check["kind"] == "sentry_errors"
