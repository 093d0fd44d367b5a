"""Migration rollbacks 0002 turns the verification rounds that a database holds only as
timeline entries into rows: the database is taken back to rollbacks 0001 (no verification
tables), rounds are written to the timeline, and migrating forward fills the rows in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

import rollbacks.services
from devinfra.processes import free_port
from incidents.models import Incident, Release, TimelineEntry, TimelineKind
from rollbacks import verification
from rollbacks.engine.inline import run_inline
from rollbacks.models import Run, RunState, VerificationRound
from tests.rollbacks.engine_factories import (
    KubeServiceFactory,
    RunFactory,
    StepFactory,
)
from tests.rollbacks.verification.builders import started_run, web_service

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_ROUNDS = [("rollbacks", "0001_initial")]


def migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def migrate_forward() -> None:
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.fixture
def migrated_forward_after(transactional_db: None) -> Iterator[None]:
    """Whatever the test did to the schema, it is at the latest migrations again after."""
    yield
    migrate_forward()


@pytest.fixture
def timeline_only(migrated_forward_after: None) -> Callable[[], None]:
    """Takes the database back to before rounds had rows. Called once the test's runs and
    steps exist: the models are today's, and later migrations add columns to them."""
    return lambda: migrate(BEFORE_ROUNDS)


def rounds_of(run: Run) -> list[dict[str, Any]]:
    """The run's rounds and their checks, as rows, without ids and instants."""
    return [
        {
            "key": round_.key,
            "number": round_.number,
            "trigger": round_.trigger,
            "state": round_.state,
            "outcome": round_.outcome,
            "summary": round_.summary,
            "finished": round_.finished_at is not None,
            "checks": [
                (c.index, c.step_id, c.service, c.name, c.kind, c.status, c.observed)
                + (c.threshold, c.message, c.ticks, c.recorded_at is not None)
                for c in round_.checks.all()
            ],
        }
        for round_ in VerificationRound.objects.filter(run=run).order_by("number")
    ]


def room_view(run: Run) -> Any:
    run = Run.objects.get(pk=run.pk)
    verification.attach_to_runs([run])
    return run.verification  # type: ignore[attr-defined]


def write_round(incident: Incident, run: Run, key: str, number: int, checks: list[Any]) -> None:
    """A `started` entry for round `key` of `run`, listing `checks` (index, step)."""
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk}: every step is done; verifying",
        actor_label="verification",
        payload={
            "run": run.pk,
            "state": "running",
            "phase": "verification",
            "event": "started",
            "round": key,
            "number": number,
            "checks": [
                {"index": index, "check": f"check {index}", "kind": "http", "service": "web"}
                | {"step": step_id}
                for index, step_id in checks
            ],
        },
    )


def write_result(incident: Incident, run: Run, key: str, index: int, outcome: str) -> None:
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineKind.CHECK_RESULT,
        body=f"Run #{run.pk} verification: check {index} on web {outcome}",
        actor_label="verification",
        payload={
            "run": run.pk,
            "phase": "verification",
            "round": key,
            "number": 1,
            "index": index,
            "check": f"check {index}",
            "kind": "http",
            "service": "web",
            "step": None,
            "outcome": outcome,
            "observed": 200,
            "threshold": 200,
            "message": f"{outcome} first",
            "ticks": "http_health",
        },
    )


# -- rounds the code wrote, rebuilt from their entries ----------------------------------------


def test_rounds_rebuilt_from_the_timeline_match_the_rows_the_code_wrote(
    commander, kube, health, migrated_forward_after
):
    health.script((200, {"version": "v1"}))
    nowhere = f"http://127.0.0.1:{free_port()}"
    health_check = {"kind": "http", "name": "web health", "url": health.url, "retries": 0}
    error_rate = {"kind": "prometheus", "url": nowhere, "query": "up", "threshold": 1}
    service = web_service(kube, [health_check, error_rate])
    paused = run_inline(started_run(commander, service).pk)  # no Prometheus answers
    paused_reason = verification.pause_reason(paused)
    # A second service on the same Deployment: one run at a time per service, and the paused
    # run stays paused.
    twin = KubeServiceFactory(name="web-twin", target_config=dict(service.target_config))
    for release in service.releases.all():
        Release.objects.create(service=twin, version=release.version, artifact=release.artifact)
    run = run_inline(started_run(commander, twin).pk)
    twin.target_config = {**twin.target_config, "checks": [health_check]}
    twin.save()
    rollbacks.services.run_resume(run=run, actor=commander)  # its second round passes
    written = {run.pk: rounds_of(run), paused.pk: rounds_of(paused)}
    shown = {run.pk: room_view(run), paused.pk: room_view(paused)}
    migrate(BEFORE_ROUNDS)
    assert "rollbacks_verificationround" not in connection.introspection.table_names()

    migrate_forward()

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert [r["state"] for r in written[run.pk]] == ["inconclusive", "passed"]
    assert {run.pk: rounds_of(run), paused.pk: rounds_of(paused)} == written
    for run_id, view in shown.items():
        rebuilt = room_view(Run(pk=run_id))
        assert abs(rebuilt.started_at - view.started_at) < timedelta(seconds=1)
        assert (rebuilt.number, rebuilt.outcome, rebuilt.rows) == (
            view.number,
            view.outcome,
            view.rows,
        )
    assert verification.pause_reason(paused) == paused_reason != ""


# -- rounds as the timeline may hold them ----------------------------------------------------


def test_the_backfill_keeps_the_first_result_and_adds_checks_the_round_did_not_list(
    timeline_only,
):
    step = StepFactory(run=RunFactory(state=RunState.RUNNING))
    run, incident = step.run, step.run.incident
    timeline_only()
    write_round(incident, run, "a" * 32, 1, [(0, step.pk), (1, step.pk)])
    write_result(incident, run, "a" * 32, 0, "passed")
    write_result(incident, run, "a" * 32, 0, "failed")  # a second result: not counted
    write_result(incident, run, "a" * 32, 5, "inconclusive")  # not listed when started

    migrate_forward()

    (round_,) = rounds_of(run)
    assert (round_["state"], round_["outcome"], round_["finished"]) == ("running", "", False)
    assert [check[:6] for check in round_["checks"]] == [
        (0, step.pk, "web", "check 0", "http", "passed"),
        (1, step.pk, "web", "check 1", "http", "pending"),
        (5, None, "web", "check 5", "http", "inconclusive"),
    ]
    assert round_["checks"][0][8] == "passed first"
    assert room_view(run).outcome == "running"


def test_the_backfill_reads_a_recorded_round_by_its_outcome_and_closes_one_left_open(
    timeline_only,
):
    run = RunFactory(state=RunState.PAUSED)
    timeline_only()
    write_round(run.incident, run, "a" * 32, 1, [])
    write_round(run.incident, run, "b" * 32, 2, [])
    TimelineEntry.objects.create(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} verification not run: the run was paused before it began",
        actor_label="verification",
        payload={
            "run": run.pk,
            "phase": "verification",
            "round": "b" * 32,
            "number": 2,
            "event": "recorded",
            "outcome": "not run",
            "state": "paused",
        },
    )

    migrate_forward()

    assert [(r["number"], r["trigger"], r["state"], r["outcome"]) for r in rounds_of(run)] == [
        (1, "steps_done", "recorded", "not_run"),
        (2, "resumed", "recorded", "not_run"),
    ]
    assert rounds_of(run)[1]["summary"].endswith("paused before it began")
    assert room_view(run).outcome == "not run"
