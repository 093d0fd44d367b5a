"""One rollback at a time per service: a second run touching a service with a run in flight
is refused with that run named and linked, or supersedes it when asked to."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

import rollbacks.services
from incidents.errors import DomainError
from incidents.models import TimelineEntry
from rollbacks.models import Run, RunState, StepState
from rollbacks.services import StepSpec
from rollbacks.services.run_exclusion import RunConflict
from tests.rollbacks.engine_factories import (
    IncidentFactory,
    KubeServiceFactory,
    RunFactory,
    StepFactory,
)

HTMX = {"HTTP_HX_REQUEST": "true"}


def approved_run(commander, service, **incident):
    """A run on `service`, approved at once (a P4: no policy asks for approvers)."""
    run = rollbacks.services.run_create(
        incident=IncidentFactory(severity="P4", **incident),
        steps=[StepSpec(service=service, previous=True)],
        actor=commander,
    )
    return rollbacks.services.run_request_approval(run=run, actor=commander)


def running_run(service, state=RunState.RUNNING, **kwargs):
    run = RunFactory(state=state, **kwargs)
    StepFactory(run=run, service=service)  # pending: a running run between its steps
    return run


@pytest.mark.django_db
def test_starting_is_refused_while_another_run_changes_the_service(commander):
    web = KubeServiceFactory(name="web")
    mine = approved_run(commander, web)
    other = running_run(web)

    with pytest.raises(RunConflict) as refused:
        rollbacks.services.run_confirm_and_start(
            run=mine, actor=commander, confirmation="web", enqueue=False
        )
    message = str(refused.value)
    assert f"run #{other.pk} (running, incident #{other.incident_id}) changes web" in message
    assert f"/incidents/{other.incident_id}/#run-{other.pk}" in message
    mine.refresh_from_db()
    assert mine.state == RunState.APPROVED


@pytest.mark.django_db
@pytest.mark.parametrize("state", [RunState.PAUSED, RunState.RUNNING])
def test_supersede_cancels_the_other_run_and_starts(commander, state):
    web, api = KubeServiceFactory(name="web"), KubeServiceFactory(name="api")
    mine = approved_run(commander, web)
    other = running_run(web, state=state)
    StepFactory(run=other, service=api)  # a pending step: cancelled with its run

    started = rollbacks.services.run_confirm_and_start(
        run=mine, actor=commander, confirmation="web", enqueue=False, supersede=True
    )

    assert started.state == RunState.RUNNING
    other.refresh_from_db()
    assert other.state == RunState.CANCELLED
    assert other.failure_reason.startswith(f"superseded by run #{mine.pk} of incident")
    theirs = TimelineEntry.objects.filter(incident=other.incident).last()
    assert theirs is not None and f"superseded by run #{mine.pk}" in theirs.body
    assert TimelineEntry.objects.filter(
        incident=mine.incident, body__startswith=f"Run #{mine.pk} supersedes run #{other.pk}"
    ).exists()


@pytest.mark.django_db
def test_a_refused_start_cancels_nothing_even_with_supersede(commander):
    web = KubeServiceFactory(name="web")
    mine = approved_run(commander, web)
    other = running_run(web)
    with pytest.raises(DomainError, match="Type web exactly"):
        rollbacks.services.run_confirm_and_start(
            run=mine, actor=commander, confirmation="nope", enqueue=False, supersede=True
        )
    other.refresh_from_db()
    assert other.state == RunState.RUNNING


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state", [RunState.AWAITING_APPROVAL, RunState.APPROVED, RunState.RUNNING, RunState.PAUSED]
)
def test_asking_for_approval_is_refused_while_another_run_is_on_its_way(commander, state):
    web = KubeServiceFactory(name="web")
    other = running_run(web, state=state)
    mine = rollbacks.services.run_create(
        incident=IncidentFactory(severity="P4"),
        steps=[StepSpec(service=web, previous=True)],
        actor=commander,
    )
    with pytest.raises(RunConflict, match=f"run #{other.pk}"):
        rollbacks.services.run_request_approval(run=mine, actor=commander)
    asked = rollbacks.services.run_request_approval(run=mine, actor=commander, supersede=True)
    assert asked.state == RunState.APPROVED
    other.refresh_from_db()
    assert other.state == RunState.CANCELLED


@pytest.mark.django_db
def test_runs_on_other_services_and_dry_runs_do_not_block(commander):
    web, api = KubeServiceFactory(name="web"), KubeServiceFactory(name="api")
    running_run(api)
    running_run(web, dry_run=True)
    RunFactory(state=RunState.SUCCEEDED).steps.create(
        position=1, group=1, service=web, backend="kubernetes", to_previous=True
    )
    mine = approved_run(commander, web)
    started = rollbacks.services.run_confirm_and_start(
        run=mine, actor=commander, confirmation="web", enqueue=False
    )
    assert started.state == RunState.RUNNING


@pytest.mark.django_db
def test_a_failed_run_cannot_carry_on_while_another_run_changes_its_service(commander):
    web = KubeServiceFactory(name="web")
    failed = RunFactory(state=RunState.FAILED)
    step = StepFactory(
        run=failed, service=web, state=StepState.FAILED, error="boom", finished_at=timezone.now()
    )
    running_run(web)
    with pytest.raises(RunConflict):
        rollbacks.services.step_retry(step=step, actor=commander)
    step.refresh_from_db()
    assert step.state == StepState.FAILED


@pytest.mark.django_db(transaction=True)
def test_two_commanders_asking_at_once_take_turns(commander):
    web = KubeServiceFactory(name="web")
    drafts = [
        rollbacks.services.run_create(
            incident=IncidentFactory(severity="P4"),
            steps=[StepSpec(service=web, previous=True)],
            actor=commander,
        )
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def ask(run: Run) -> None:
        try:
            barrier.wait(timeout=10)
            rollbacks.services.run_request_approval(run=run, actor=commander)
            outcomes[run.pk] = "approved"
        except RunConflict:
            outcomes[run.pk] = "refused"
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(run,)) for run in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()) == ["approved", "refused"]
    assert Run.objects.filter(state=RunState.APPROVED).count() == 1


@pytest.mark.django_db
def test_the_room_says_which_run_is_in_the_way_and_supersedes_on_request(client, commander):
    client.force_login(commander)
    web = KubeServiceFactory(name="web")
    mine = approved_run(commander, web)
    other = running_run(web)
    url = reverse("run_start", args=[mine.incident_id, mine.pk])

    refused = client.post(url, {"confirmation": "web"}, **HTMX)
    assert refused.status_code == 400
    assert f"/incidents/{other.incident_id}/#run-{other.pk}" in refused.content.decode()

    started = client.post(url, {"confirmation": "web", "supersede": "on"}, **HTMX)
    assert started.status_code == 200
    other.refresh_from_db()
    assert other.state == RunState.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_the_terminal_refuses_and_supersedes_too(commander, kube, kube_service):
    other = running_run(kube_service)
    incident = IncidentFactory(severity="P4")
    arguments = ["web", "--previous", "--incident", incident.pk, "--as", "ic", "--yes"]
    with pytest.raises(CommandError, match=f"run #{other.pk} \\(running"):
        call_command("rollback", *map(str, arguments), stdout=StringIO(), stderr=StringIO())
    output = StringIO()
    call_command("rollback", *map(str, arguments), "--supersede", stdout=output, stderr=StringIO())
    assert "Rollback succeeded" in output.getvalue()
    other.refresh_from_db()
    assert other.state == RunState.CANCELLED
