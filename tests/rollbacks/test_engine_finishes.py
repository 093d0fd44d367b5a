"""Steps of one process that apply, or finish, at the same moment share one transaction."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import DataError
from django.utils import timezone

from incidents.models import TimelineEntry, TimelineKind
from rollbacks.engine.backends import release_label, release_labels
from rollbacks.engine.claims import OwnershipLost, claim_pending
from rollbacks.engine.dispatch import InlineDispatcher
from rollbacks.engine.execution import StepExecution
from rollbacks.engine.shared_writes import SharedWrites, fenced
from rollbacks.engine.step_records import Applied, Ending, write_applied, write_endings
from rollbacks.models import Step, StepLog, StepState
from tests.factories import ReleaseFactory, ServiceFactory
from tests.rollbacks.engine_fixtures import parallel_run, step_ids

pytestmark = pytest.mark.django_db(transaction=True)


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
    assert _log_lines(kept) == ["a: rolled out"]
    assert _log_lines(taken) == []


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


def test_a_shared_transaction_writes_its_steps_in_id_order(commander, kube) -> None:
    executions = _executions(commander, kube, "a", "b", "c")
    written: list[int] = []

    fenced(
        [_ending(execution) for execution in reversed(executions)],
        lambda ending: written.append(ending.execution.step.pk),
    )

    assert written == sorted(written)


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
