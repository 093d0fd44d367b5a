"""Steps of one process that finish at the same moment share one transaction."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from incidents import engine
from incidents.models import Step, StepLog, StepState, TimelineEntry, TimelineKind
from tests.incidents.engine_fixtures import *  # noqa: F403
from tests.incidents.test_engine_batches import _group, _step_ids

pytestmark = pytest.mark.django_db(transaction=True)


def _executions(commander: Any, kube: Any, *names: str) -> list[engine._StepExecution]:
    """Claimed executions of a group's steps, as a batch's threads hold them."""
    run = _group(commander, kube, *names)
    claims = engine._claim_pending(_step_ids(run), "test-worker", mark_apply=False)
    return [engine._StepExecution(claim, engine.InlineDispatcher(), False) for claim in claims]


def _ending(execution: engine._StepExecution) -> engine._Ending:
    return engine._Ending(
        execution,
        StepState.SUCCEEDED,
        reason="",
        checks=[],
        reached=None,
        retryable=False,
        detail="",
        settled="rolled out",
        extra_fields={},
    )


def test_endings_that_arrive_while_one_is_written_go_together_in_the_next_transaction(
    monkeypatch,
) -> None:
    written: list[list[str]] = []
    first_in = threading.Event()
    let_first_finish = threading.Event()

    def write(endings: list[Any]) -> None:
        written.append([ending.state for ending in endings])
        if len(written) == 1:
            first_in.set()
            let_first_finish.wait(5)

    monkeypatch.setattr(engine, "_write_endings", write)
    finishes = engine._Finishes()
    endings = [_ending_stub(name) for name in ("first", "second", "third")]
    threads = [threading.Thread(target=finishes.record, args=(ending,)) for ending in endings]
    threads[0].start()
    assert first_in.wait(5)
    threads[1].start()
    threads[2].start()
    while len(finishes._waiting) < 2:
        threading.Event().wait(0.01)
    let_first_finish.set()
    for thread in threads:
        thread.join(5)

    assert written == [["first"], ["second", "third"]]
    assert not finishes._writing


def _ending_stub(name: str) -> engine._Ending:
    return engine._Ending(
        execution=None,  # type: ignore[arg-type]
        state=name,
        reason="",
        checks=[],
        reached=None,
        retryable=False,
        detail="",
        settled="",
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

    engine._write_endings(endings)

    assert endings[0].error is None
    assert isinstance(endings[1].error, engine._OwnershipLost)
    assert Step.objects.get(pk=kept.step.pk).state == StepState.SUCCEEDED
    assert Step.objects.get(pk=taken.step.pk).state == StepState.RUNNING
    finished = TimelineEntry.objects.filter(kind=TimelineKind.STEP_FINISHED)
    assert [entry.payload["step"] for entry in finished] == [kept.step.pk]
    assert _log_lines(kept) == ["a: rolled out"]
    assert _log_lines(taken) == []


def _log_lines(execution: engine._StepExecution) -> list[str]:
    logs = StepLog.objects.filter(step_id=execution.step.pk).order_by("seq")
    return list(logs.values_list("line", flat=True))


def test_of_a_groups_steps_written_together_the_last_asks_after_the_group(commander, kube) -> None:
    executions = _executions(commander, kube, "a", "b", "c")
    endings = [_ending(execution) for execution in executions]

    engine._write_endings(endings)

    assert [ending.asks_for_group for ending in endings] == [False, False, True]
