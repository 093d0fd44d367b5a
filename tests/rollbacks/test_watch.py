"""The watch after a rollback: the services' checks run again on the runbook's schedule; a
failure marks the run regressed on the timeline and e-mails the commander; a watch that
passes every round to its end is held; the room shows it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from incidents.models import TimelineKind
from rollbacks import watch as watch_module
from rollbacks.models import RunState, RunWatch, WatchState
from rollbacks.watch import (
    claim_next,
    describe,
    schedule,
    watch_round,
    watch_start,
    watches_end_for,
    watches_sweep,
)
from tests.rollbacks.engine_factories import (
    CommanderFactory,
    IncidentFactory,
    KubeServiceFactory,
    RunFactory,
    StepFactory,
    succeeded_run,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def health(health_endpoint):
    return health_endpoint


@pytest.fixture
def succeeded(settings, health):
    settings.VERIFY_ALLOW_PRIVATE_ADDRESSES = True
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    commander = CommanderFactory(email="ic@corp.example")
    return succeeded_run(health["url"], IncidentFactory(commander=commander))


def due(watch: RunWatch) -> None:
    RunWatch.objects.filter(pk=watch.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))


def watch_entries(run) -> list[str]:
    return list(
        run.incident.timeline.filter(kind=TimelineKind.CHECK_RESULT)
        .order_by("order")
        .values_list("body", flat=True)
    )


def test_the_runbook_schedule_reads_as_phases():
    assert schedule("60s@15m,15m@1h") == [(60, 900), (900, 3600)]
    assert describe(schedule("60s@15m,15m@1h")) == (
        "every 1 min until 15 min, then every 15 min until 1 h"
    )
    for bad in ("60@15m", "15m@10m", "60s@15m,60s@10m", "0s@1m", "1h@2h,<b>"):
        with pytest.raises(ValueError, match="ROLLBACK_WATCH_SCHEDULE"):
            schedule(bad)


def test_a_succeeded_run_is_watched_and_each_round_passes_quietly(succeeded):
    watch = watch_start(succeeded.pk)
    assert watch is not None and watch.state == WatchState.WATCHING
    assert watch.ends_at - watch.started_at == timedelta(hours=1)
    assert watch.next_check_at - watch.started_at == timedelta(minutes=1)
    assert watch_entries(succeeded) == [
        f"Watching run #{succeeded.pk}: its checks run again every 1 min until 15 min, "
        "then every 15 min until 1 h."
    ]
    due(watch)
    assert watches_sweep() == ["watching"]
    watch.refresh_from_db()
    assert watch.rounds == 1 and watch.last_summary == "every check passed"
    assert timedelta(seconds=59) < watch.next_check_at - timezone.now() <= timedelta(minutes=1)
    assert len(watch_entries(succeeded)) == 1  # a passing round adds nothing
    assert watches_sweep() == []  # not due again yet


def test_a_failing_check_marks_the_run_regressed_and_pages_the_commander(
    succeeded, health, django_capture_on_commit_callbacks
):
    watch = watch_start(succeeded.pk)
    health["status"] = 503
    due(watch)
    with django_capture_on_commit_callbacks(execute=True):
        assert watches_sweep() == ["regressed"]
    watch.refresh_from_db()
    assert watch.state == WatchState.REGRESSED and "503" in watch.last_summary
    assert (
        f"Run #{succeeded.pk} regressed during its watch (round 1)" in watch_entries(succeeded)[-1]
    )
    (message,) = mail.outbox
    assert message.to == ["ic@corp.example"] and "regressed" in message.subject
    due(watch)
    assert watches_sweep() == []  # a regressed watch is over


def test_a_watch_that_reaches_its_end_has_held(succeeded):
    watch = watch_start(succeeded.pk)
    RunWatch.objects.filter(pk=watch.pk).update(
        ends_at=timezone.now() - timedelta(seconds=1), rounds=17
    )
    due(watch)
    assert watches_sweep() == ["passed"]
    assert (
        watch_entries(succeeded)[-1]
        == f"Run #{succeeded.pk} held through its watch: 18 rounds passed."
    )


def test_a_round_is_claimed_once(succeeded):
    watch = watch_start(succeeded.pk)
    due(watch)
    now = timezone.now()
    claimed = claim_next(now)
    assert claimed is not None and claimed[0] == watch.pk
    assert claim_next(now) is None


def test_a_round_that_outlives_its_claim_is_not_recorded(succeeded):
    watch = watch_start(succeeded.pk)
    due(watch)
    _, claim = claim_next(timezone.now())
    # The claim lapsed mid-round and another sweep took the watch.
    later = timezone.now() + timedelta(minutes=6)
    assert claim_next(later) is not None
    assert watch_round(watch.pk, claim) == "watching"
    watch.refresh_from_db()
    assert watch.rounds == 0


def test_a_round_that_raises_does_not_stop_the_others(succeeded, monkeypatch):
    broken_run = RunFactory(incident=IncidentFactory(), state=RunState.SUCCEEDED)
    step = succeeded.steps.get()
    step.pk, step.run = None, broken_run
    step.save()
    broken, healthy = watch_start(broken_run.pk), watch_start(succeeded.pk)
    due(broken)
    due(healthy)
    round_of = watch_module.watch_round

    def fragile(watch_id, claim=None):
        if watch_id == broken.pk:
            raise RuntimeError("the database went away")
        return round_of(watch_id, claim)

    monkeypatch.setattr(watch_module, "watch_round", fragile)
    assert sorted(watches_sweep()) == ["error", "watching"]
    healthy.refresh_from_db()
    assert healthy.rounds == 1


def test_resolving_the_incident_ends_the_watch(succeeded):
    watch = watch_start(succeeded.pk)
    due(watch)
    type(succeeded.incident).objects.filter(pk=succeeded.incident_id).update(
        status="resolved", resolved_at=timezone.now()
    )
    assert watches_sweep() == ["ended"]
    watch.refresh_from_db()
    assert watch.state == WatchState.ENDED
    assert watch_entries(succeeded)[-1] == (
        f"Watch of run #{succeeded.pk} ended after 0 rounds: the incident was resolved"
    )


def test_a_later_run_on_the_same_services_ends_the_watch(succeeded):
    watch = watch_start(succeeded.pk)
    later = RunFactory(incident=succeeded.incident, state=RunState.RUNNING)
    StepFactory(run=later, service=succeeded.steps.get().service)
    elsewhere = RunFactory(incident=succeeded.incident, state=RunState.RUNNING)
    StepFactory(run=elsewhere, service=KubeServiceFactory())
    assert watches_end_for(elsewhere.pk) == 0
    assert watches_end_for(later.pk) == 1
    watch.refresh_from_db()
    assert watch.state == WatchState.ENDED
    assert f"run #{later.pk} started on the same services" in watch_entries(succeeded)[-1]


@pytest.mark.parametrize("case", ["dry run", "failed", "no checks"])
def test_nothing_to_watch(succeeded, case):
    if case == "dry run":
        succeeded.dry_run = True
        succeeded.save()
    if case == "failed":
        succeeded.state = RunState.FAILED
        succeeded.save()
    if case == "no checks":
        step = succeeded.steps.get()
        step.service.target_config = {"namespace": "shop", "deployment": "web"}
        step.service.save()
    assert watch_start(succeeded.pk) is None
    assert not RunWatch.objects.exists()


def test_the_watch_starts_when_a_run_finishes(succeeded, django_capture_on_commit_callbacks):
    from rollbacks.signals import send_run_finished

    with django_capture_on_commit_callbacks(execute=True):
        send_run_finished(succeeded)
    assert RunWatch.objects.get().run == succeeded


def test_the_room_shows_the_watch(client, roles, succeeded):
    watch = watch_start(succeeded.pk)
    client.force_login(succeeded.incident.commander)
    page = client.get(f"/incidents/{succeeded.incident.pk}/").content.decode()
    assert f'id="watch-{succeeded.pk}"' in page and "Next check at" in page
    RunWatch.objects.filter(pk=watch.pk).update(state=WatchState.REGRESSED, rounds=3)
    page = client.get(f"/incidents/{succeeded.incident.pk}/").content.decode()
    assert "regressed" in page and "3 rounds so far" in page
