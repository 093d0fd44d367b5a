"""Steps of one process that apply, or finish, at the same moment share one transaction."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from incidents.models import TimelineEntry, TimelineKind
from rollbacks.engine.backends import release_label, release_labels
from rollbacks.engine.claims import OwnershipLost, claim_pending, update_claimed
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.execution import StepExecution
from rollbacks.engine.shared_writes import SharedWrites, fenced
from rollbacks.engine.step_records import Applied, Ending, write_applied, write_endings
from rollbacks.models import Step, StepLog, StepState
from tests.factories import ReleaseFactory, ServiceFactory
from tests.rollbacks.engine_fixtures import parallel_run, step_ids

pytestmark = pytest.mark.django_db(transaction=True)

REACHED_MAX = 500  # Step.reached_version's max_length


def _executions(commander: Any, kube: Any, *names: str) -> list[StepExecution]:
    """Claimed executions of a group's steps, as a batch's threads hold them."""
    run = parallel_run(commander, kube, *names)
    claims = claim_pending(step_ids(run), "test-worker", mark_apply=False)
    return [StepExecution(claim, InlineDispatcher(), False) for claim in claims]


def _ending(execution: StepExecution | None, state: str = StepState.SUCCEEDED) -> Ending:
    """A step's outcome (with no execution: to test the sharing protocol alone)."""
    return Ending(
        execution,  # type: ignore[arg-type]
        state,
        reason="",
        checks=[],
        reached=None,
        retryable=False,
        detail="",
        settled="rolled out",
        extra_fields={},
    )


def test_a_step_taken_over_loses_only_its_own_outcome_in_a_shared_transaction(
    commander, kube
) -> None:
    kept, taken = _executions(commander, kube, "a", "b")
    Step.objects.filter(pk=taken.step.pk).update(claim_token="another-worker")
    kept.log("a: rolled out")
    taken.log("b: rolled out")
    endings = [_ending(kept), _ending(taken)]

    write_endings(endings)

    assert endings[0].error is None
    assert isinstance(endings[1].error, OwnershipLost)
    assert Step.objects.get(pk=kept.step.pk).state == StepState.SUCCEEDED
    assert Step.objects.get(pk=taken.step.pk).state == StepState.RUNNING
    finished = TimelineEntry.objects.filter(kind=TimelineKind.STEP_FINISHED)
    assert [entry.payload["step"] for entry in finished] == [kept.step.pk]
    assert kept.log_writer.settle(5.0)  # lines go through the process's log flusher
    assert _log_lines(kept) == ["a: rolled out"]


def _log_lines(execution: StepExecution) -> list[str]:
    logs = StepLog.objects.filter(step_id=execution.step.pk).order_by("seq")
    return list(logs.values_list("line", flat=True))


def test_of_a_groups_steps_written_together_the_last_asks_after_the_group(commander, kube) -> None:
    executions = _executions(commander, kube, "a", "b", "c")
    endings = [_ending(execution) for execution in executions]

    write_endings(endings)

    assert [ending.asks_for_group for ending in endings] == [False, False, True]


def test_a_step_taken_over_loses_only_its_own_apply_record_in_a_shared_transaction(
    commander, kube
) -> None:
    kept, taken = _executions(commander, kube, "a", "b")
    Step.objects.filter(pk=taken.step.pk).update(claim_token="another-worker")
    Step.objects.update(apply_started_at=timezone.now())
    applied = [
        Applied(execution, detail="undo: revision 2 → 3", facts={}, changed=True)
        for execution in (kept, taken)
    ]

    write_applied(applied)

    assert isinstance(applied[1].error, OwnershipLost)
    assert Step.objects.get(pk=kept.step.pk).applied_at is not None
    assert Step.objects.get(pk=taken.step.pk).applied_at is None
    entries = TimelineEntry.objects.filter(kind=TimelineKind.STEP_OUTPUT)
    assert [entry.payload["step"] for entry in entries] == [kept.step.pk]


def test_release_labels_name_the_newest_release_by_artifact_or_version_else_the_value() -> None:
    web, api = ServiceFactory(name="web"), ServiceFactory(name="api")
    earlier = timezone.now() - timedelta(days=1)
    ReleaseFactory(service=web, version="v1", artifact="web:abc", shipped_at=earlier)
    ReleaseFactory(service=web, version="v1-hotfix", artifact="web:abc")
    ReleaseFactory(service=api, version="v7", artifact="api:def")

    labels = release_labels(
        [(web.pk, "web:abc"), (api.pk, "v7"), (api.pk, "web:abc"), (web.pk, "web:zzz")]
    )

    assert labels == {
        (web.pk, "web:abc"): "v1-hotfix",
        (api.pk, "v7"): "v7",
        (api.pk, "web:abc"): "web:abc",  # another service's artifact
        (web.pk, "web:zzz"): "web:zzz",
    }
    assert all(
        release_label(service, live) == labels[(service.pk, live)]
        for service, live in [(web, "web:abc"), (api, "v7"), (api, "web:abc"), (web, "web:zzz")]
    )


def test_a_shared_transaction_locks_its_steps_in_id_order_and_writes_them_at_once(
    commander, kube
) -> None:
    executions = _executions(commander, kube, "a", "b", "c", "lost")
    *kept_ones, lost = executions
    Step.objects.filter(pk=lost.step.pk).update(claim_token="another-worker")
    endings = [_ending(execution) for execution in reversed(executions)]

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        kept = fenced(endings, lambda ending: ending.fields({}))
        locked_elsewhere = [_locked_to_others(step_id) for step_id in step_ids_of(executions)]

    assert [ending.execution.step.pk for ending in kept] == sorted(step_ids_of(kept_ones))
    lock, update = (query["sql"] for query in queries.captured_queries)
    assert lock.endswith('ORDER BY "id" FOR NO KEY UPDATE')
    assert update.startswith(f'UPDATE "{Step._meta.db_table}"')
    # Every step of the batch, the one it leaves alone too, is locked before any is written.
    assert locked_elsewhere == [True, True, True, True]
    assert Step.objects.get(pk=lost.step.pk).state == StepState.RUNNING
    assert {step.state for step in Step.objects.filter(pk__in=step_ids_of(kept_ones))} == {
        StepState.SUCCEEDED
    }


def test_steps_written_with_different_fields_are_all_locked_before_any_is_written(
    commander, kube
) -> None:
    """Even a step the write leaves alone (another worker took it over) is locked first:
    each UPDATE locks only the rows it reads, in its own scan's order."""
    lost, high, low = _executions(commander, kube, "lost", "high", "low")
    Step.objects.filter(pk=lost.step.pk).update(claim_token="another-worker")
    updates = [
        (lost.claim, {"error": "gone"}),
        (high.claim, {"apply_detail": "high"}),
        (low.claim, {"apply_detail": "low", "reached_version": "v1"}),
    ]

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        written = update_claimed(updates)
        locked_elsewhere = [_locked_to_others(step_id) for step_id in step_ids_of([lost])]

    assert written == set(step_ids_of([high, low]))
    lock, *writes = (query["sql"] for query in queries.captured_queries)
    assert lock.endswith('ORDER BY "id" FOR NO KEY UPDATE')
    assert len(writes) == 3
    assert all(write.startswith(f'UPDATE "{Step._meta.db_table}"') for write in writes)
    assert locked_elsewhere == [True]
    assert Step.objects.get(pk=lost.step.pk).error == ""
    assert Step.objects.get(pk=low.step.pk).reached_version == "v1"
    assert Step.objects.get(pk=high.step.pk).apply_detail == "high"


def _locked_to_others(step_id: int) -> bool:
    """Whether another connection finds the step's row locked against another writer."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with transaction.atomic():
                Step.objects.select_for_update(nowait=True, no_key=True).filter(pk=step_id).exists()
            outcome.append(False)
        except OperationalError as error:
            outcome.append(isinstance(error.__cause__, LockNotAvailable))
        finally:
            connection.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(10)
    return outcome == [True]


def step_ids_of(executions: list[StepExecution]) -> list[int]:
    return [execution.step.pk for execution in executions]


def test_claimed_steps_written_together_each_get_their_own_values(commander, kube) -> None:
    """Steps whose writes name different fields, with text of every script, markup and JSON
    values: each row gets its own values, and each step in memory too."""
    ok, failed, cancelled = _executions(commander, kube, "a", "b", "c")
    detail = "回滚 <b>done</b> 🚀 שלום & 'quoted' \\ \t tab " + "x" * 4000
    now = timezone.now()
    facts = {"部署": {"image": "app:v1 ✓", "replicas": 3, "ready": True, "note": None}}
    updates = [
        (
            ok.claim,
            {
                "apply_detail": detail,
                "apply_facts": facts,
                "apply_started_at": timezone.now(),
                "applied_at": timezone.now(),
                "reached_version": "版" * REACHED_MAX,
            },
        ),
        (
            failed.claim,
            {"state": StepState.FAILED, "finished_at": now, "error": "مرحبا " + "é" * 490},
        ),
        (
            cancelled.claim,
            {"state": StepState.CANCELLED, "finished_at": now, "skip_reason": "<script>x</script>"},
        ),
    ]

    with transaction.atomic():
        written = update_claimed(updates)

    assert written == set(step_ids_of([ok, failed, cancelled]))
    rows = Step.objects.in_bulk(written)
    assert rows[ok.step.pk].apply_detail == detail == ok.step.apply_detail
    assert rows[ok.step.pk].apply_facts == facts
    assert rows[ok.step.pk].reached_version == ok.step.reached_version
    assert len(ok.step.reached_version) == REACHED_MAX
    assert rows[ok.step.pk].state == StepState.RUNNING
    assert (rows[failed.step.pk].state, rows[failed.step.pk].error) == (
        StepState.FAILED,
        "مرحبا " + "é" * 490,
    )
    assert rows[cancelled.step.pk].skip_reason == "<script>x</script>"
    assert failed.step.state == StepState.FAILED


def test_a_claim_taken_over_is_not_written_by_a_shared_update(commander, kube) -> None:
    kept, taken = _executions(commander, kube, "a", "b")
    Step.objects.filter(pk=taken.step.pk).update(claim_token="another-worker")

    with transaction.atomic():
        written = update_claimed(
            [(claim, {"error": "written"}) for claim in (kept.claim, taken.claim)]
        )

    assert written == {kept.step.pk}
    assert Step.objects.get(pk=taken.step.pk).error == ""
    assert taken.step.error == ""


def test_one_steps_bad_value_fails_only_that_step_of_a_shared_transaction(commander, kube) -> None:
    bad, good = (_ending(execution) for execution in _executions(commander, kube, "a", "b"))
    bad.reached = "x" * 600  # longer than reached_version holds

    SharedWrites(write_endings).write_batch([bad, good])

    assert isinstance(bad.error, DataError)
    assert good.error is None
    assert Step.objects.get(pk=good.execution.step.pk).state == StepState.SUCCEEDED
    assert Step.objects.get(pk=bad.execution.step.pk).state == StepState.RUNNING


class Interrupted(BaseException):
    """What a time limit raises into a thread."""


class InterruptedWait(threading.Event):
    def wait(self, timeout: float | None = None) -> bool:
        raise Interrupted


def _record_in_thread(shared: SharedWrites, ending: Ending) -> threading.Thread:
    def record() -> None:
        with contextlib.suppress(Interrupted):
            shared.record(ending)

    thread = threading.Thread(target=record)
    thread.start()
    return thread


def _until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("not reached in 5 s")


class HeldWrites:
    """A write for SharedWrites that notes each batch, holds the first until released,
    and raises Interrupted while writing the batch numbered `interrupt_on`."""

    def __init__(self, interrupt_on: int | None = None) -> None:
        self.written: list[list[str]] = []
        self.release = threading.Event()
        self.interrupt_on = interrupt_on

    def __call__(self, endings: list[Any]) -> None:
        self.written.append([ending.state for ending in endings])
        if len(self.written) == 1:
            self.release.wait(5)
        if len(self.written) == self.interrupt_on:
            raise Interrupted


def _queued_behind_a_write(
    writes: HeldWrites, *names: str
) -> tuple[SharedWrites, list[threading.Thread], list[Ending]]:
    """A "first" step being written (held), and steps `names` queued behind it."""
    shared = SharedWrites(writes)
    threads = [_record_in_thread(shared, _ending(None, "first"))]
    _until(lambda: writes.written)
    endings = [_ending(None, name) for name in names]
    for n, ending in enumerate(endings, start=1):
        threads.append(_record_in_thread(shared, ending))
        _until(lambda n=n: len(shared._waiting) == n)
    return shared, threads, endings


def test_writes_that_arrive_while_one_is_written_go_together_in_the_next_transaction() -> None:
    writes = HeldWrites()
    shared, threads, _ = _queued_behind_a_write(writes, "second", "third")

    writes.release.set()
    for thread in threads:
        thread.join(5)

    assert writes.written == [["first"], ["second", "third"]]
    assert not shared._writing


def test_a_thread_interrupted_while_it_waits_leaves_the_queue_and_writes_go_on() -> None:
    writes = HeldWrites()
    shared, threads, _ = _queued_behind_a_write(writes)
    impatient = _ending(None, "impatient")
    impatient.turn = InterruptedWait()
    _record_in_thread(shared, impatient).join(5)

    writes.release.set()
    threads[0].join(5)
    shared.record(_ending(None, "later"))

    assert writes.written == [["first"], ["later"]]
    assert not shared._writing


def test_a_leader_interrupted_while_writing_leaves_the_others_to_the_next() -> None:
    writes = HeldWrites(interrupt_on=2)
    shared, threads, endings = _queued_behind_a_write(writes, "second", "third")

    writes.release.set()
    for thread in threads:
        thread.join(5)

    assert writes.written == [["first"], ["second", "third"], ["third"]]
    assert endings[1].error is None and not shared._writing


def test_a_shared_transaction_inserts_its_entries_incident_by_incident(commander, kube) -> None:
    (first,) = _executions(commander, kube, "a")
    (second,) = _executions(commander, kube, "b")  # a newer incident
    Step.objects.update(apply_started_at=timezone.now())
    applied = [
        Applied(execution, detail="undo", facts={}, changed=True) for execution in (second, first)
    ]

    write_applied(applied)

    entries = TimelineEntry.objects.filter(kind=TimelineKind.STEP_OUTPUT).order_by("pk")
    assert [entry.incident_id for entry in entries] == sorted(
        [first.incident.pk, second.incident.pk]
    )
