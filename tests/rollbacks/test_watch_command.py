"""`manage.py watch`: the watches after successful runs from a terminal, as the room's
rollback panel shows them: state, rounds, last result, next check and end."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from rollbacks.models import Run, RunState, RunWatch, StepState, WatchState
from rollbacks.watch import watch_start
from tests.rollbacks.engine_factories import (
    IncidentFactory,
    KubeServiceFactory,
    RunFactory,
    StepFactory,
)

pytestmark = pytest.mark.django_db


def watch(*args: Any) -> str:
    out = StringIO()
    call_command("watch", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def succeeded_run(*names: str, incident: Any = None) -> Run:
    run = RunFactory(
        incident=incident or IncidentFactory(title="Checkout errors"), state=RunState.SUCCEEDED
    )
    for name in names:
        StepFactory(run=run, service=KubeServiceFactory(name=name))
    return run


def watched(run: Run, **fields: Any) -> RunWatch:
    now = timezone.now()
    values: dict[str, Any] = {
        "started_at": now - timedelta(minutes=5),
        "ends_at": now + timedelta(minutes=55),
        "next_check_at": now + timedelta(seconds=40),
        "rounds": 5,
        "last_checked_at": now - timedelta(seconds=20),
        "last_summary": "every check passed",
    }
    values.update(fields)
    return RunWatch.objects.create(run=run, **values)


def at(moment: Any) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}"


def test_list_shows_each_running_watch_with_its_next_check_and_end():
    running = watched(succeeded_run("web", "cart"))

    (line,) = watch("list").splitlines()

    run, incident, state, rounds, next_check, ends, services = line.split("\t")
    assert run == f"run #{running.run_id}" and incident == f"incident #{running.run.incident_id}"
    assert (state, rounds, services) == ("watching", "5 rounds", "web, cart")
    assert next_check.startswith(f"next {at(running.next_check_at)} (in ")
    assert ends.startswith(f"ends {at(running.ends_at)} (in 54 min")


def test_list_leaves_finished_watches_to_all():
    running = watched(succeeded_run("web"))
    held = watched(succeeded_run("cart"), state=WatchState.PASSED, started_at=timezone.now())
    regressed = watched(succeeded_run("api"), state=WatchState.REGRESSED)

    assert [line.split("\t")[0] for line in watch("list").splitlines()] == [
        f"run #{running.run_id}"
    ]
    every = [line.split("\t") for line in watch("list", "--all").splitlines()]
    assert [(row[0], row[2], row[4]) for row in every] == [
        (f"run #{held.run_id}", "held", "-"),
        (f"run #{regressed.run_id}", "regressed", "-"),
        (f"run #{running.run_id}", "watching", every[2][4]),
    ]


def test_list_keeps_to_one_incident():
    incident = IncidentFactory()
    mine = watched(succeeded_run("web", incident=incident))
    watched(succeeded_run("cart"))

    listed = watch("list", "--incident", incident.pk).splitlines()

    assert [line.split("\t")[0] for line in listed] == [f"run #{mine.run_id}"]


def test_list_says_when_nothing_is_watched():
    watched(succeeded_run("web"), state=WatchState.PASSED)

    assert watch("list") == "No watch is running.\n"
    assert watch("list", "--incident", 999_999, "--all") == "No watch.\n"


def test_list_reads_any_number_of_watches_in_constant_queries(django_assert_max_num_queries):
    for index in range(6):
        watched(succeeded_run(f"web{index}", f"cart{index}"))

    with django_assert_max_num_queries(3):
        assert len(watch("list").splitlines()) == 6


def test_show_prints_what_the_room_shows_of_a_watch():
    running = watched(succeeded_run("web"), next_check_at=timezone.now() - timedelta(seconds=90))

    lines = watch("show", f"#{running.run_id}").splitlines()

    assert lines[:5] == [
        f"run: #{running.run_id} (web)",
        f"incident: #{running.run.incident_id} Checkout errors",
        "state: watching",
        f"started: {at(running.started_at)} (5 min ago)",
        "rounds: 5",
    ]
    assert lines[5].startswith(f"last check: {at(running.last_checked_at)} (2")
    assert lines[5].endswith(" s ago): every check passed")
    assert lines[6] == f"next check: {at(running.next_check_at)} (1 min ago)"  # overdue
    assert lines[7].startswith(f"ends: {at(running.ends_at)} (in 54 min")


def test_show_of_a_finished_watch_has_no_next_check_and_escapes_its_summary():
    regressed = watched(
        succeeded_run("web", incident=IncidentFactory(title="結帳 down \u202e🔥")),
        state=WatchState.REGRESSED,
        last_summary="web http: failed (\x1b[31m503\x1b[0m)",
    )

    output = watch("show", regressed.run_id)

    assert "state: regressed" in output and "next check" not in output
    assert "結帳 down \\u202e🔥" in output
    assert ": web http: failed (\\x1b[31m503\\x1b[0m)" in output
    assert "\x1b" not in output and "\u202e" not in output


def test_show_reads_the_watch_a_succeeded_run_starts(health_endpoint):
    run, now = succeeded_run(), timezone.now()
    StepFactory(
        run=run,
        state=StepState.SUCCEEDED,
        attempts=1,
        enqueued_at=now,
        started_at=now,
        apply_started_at=now,
        applied_at=now,
        finished_at=now,
        service=KubeServiceFactory(
            name="web",
            target_config={
                "namespace": "shop",
                "deployment": "web",
                "checks": [{"kind": "http", "url": health_endpoint["url"]}],
            },
        ),
        to_version="v1",
    )
    started = watch_start(run.pk)
    assert started is not None

    output = watch("show", run.pk)

    assert "state: watching" in output and "rounds: 0" in output
    assert f"ends: {at(started.ends_at)} (in 59 min" in output


def test_show_of_a_run_without_a_watch_says_why():
    run = succeeded_run("web")

    with pytest.raises(CommandError, match=f"run: run #{run.pk} has no watch; a run is watched"):
        watch("show", run.pk)


@pytest.mark.parametrize("given", ["999999", "#999999"])
def test_show_of_an_unknown_run_is_refused(given):
    with pytest.raises(CommandError, match="run: there is no run #999999"):
        watch("show", given)


@pytest.mark.parametrize("given", ["twelve", "十二", "🔢", "12\x00", "‏12"])
def test_show_refuses_what_is_not_a_run_number(given):
    with pytest.raises(CommandError, match="argument run: invalid run_number value"):
        watch("show", given)
