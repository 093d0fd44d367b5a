"""StepLogWriter: when a step's progress lines reach the database."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import OperationalError

from executors.base import poll_until
from rollbacks.engine import step_logs
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.models import Step, StepLog
from tests.rollbacks.engine_factories import RunFactory, StepFactory

pytestmark = pytest.mark.django_db


class ShiftedClock:
    """The time module, with monotonic() as far ahead as a test moves it."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch) -> ShiftedClock:
    shifted = ShiftedClock()
    monkeypatch.setattr(step_logs, "time", shifted)
    return shifted


def _writer() -> StepLogWriter:
    step = StepFactory(run=RunFactory(state="running"))
    return StepLogWriter(Step.objects.select_related("run").get(pk=step.pk), first=True)


def _stored(writer: StepLogWriter) -> list[str]:
    return list(
        StepLog.objects.filter(step_id=writer.step_id)
        .order_by("seq")
        .values_list("line", flat=True)
    )


def test_a_steps_first_line_waits_for_the_next_flush_however_late_it_comes(clock) -> None:
    writer = _writer()
    clock.ahead = 5.0  # the step reached its first line long after the writer was made

    writer("web: revision 2 → revision 1")

    assert _stored(writer) == []
    writer.flush()
    assert _stored(writer) == ["web: revision 2 → revision 1"]


def test_later_lines_are_stored_once_a_quarter_second_has_passed(clock) -> None:
    writer = _writer()
    writer("first")
    writer("second")
    assert _stored(writer) == []

    clock.ahead = 0.3
    writer("third")

    assert _stored(writer) == ["first", "second", "third"]


def test_a_wait_whose_progress_does_not_change_stores_its_lines_between_polls() -> None:
    writer = _writer()
    writer("already applied at 10:00:00; waiting for it to settle")
    seen_stored: list[list[str]] = []

    def condition() -> tuple[bool, str]:
        seen_stored.append(_stored(writer))
        return len(seen_stored) == 3, "web: 1 of 3 replicas updated"

    poll_until(condition, deadline=time.monotonic() + 5, log=writer, interval=0.3, what="web")

    assert seen_stored[0] == []  # nothing is written before the first poll
    assert seen_stored[2] == [
        "already applied at 10:00:00; waiting for it to settle",
        "web: 1 of 3 replicas updated",
    ]


# -- the process's log flusher (steps executed outside a transaction, as in a worker) --------


def _flushed_writers(count: int) -> list[StepLogWriter]:
    run = RunFactory(state="running")
    steps = [StepFactory(run=run, position=number) for number in range(count)]
    return [
        StepLogWriter(Step.objects.select_related("run").get(pk=step.pk), first=True)
        for step in steps
    ]


def _wait_for(condition: Any, seconds: float = 5.0) -> None:
    ends = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < ends, "not within the time allowed"
        time.sleep(0.02)


@pytest.fixture
def inserts(monkeypatch) -> list[list[int]]:
    """The step ids of each INSERT the flusher makes."""
    made: list[list[int]] = []
    real = step_logs.insert_rows

    def counted(taken: Any) -> None:
        real(taken)
        made.append(sorted(writer.step_id for writer, rows in taken if rows))

    monkeypatch.setattr(step_logs, "insert_rows", counted)
    return made


@pytest.mark.django_db(transaction=True)
def test_the_flusher_stores_every_steps_lines_together_soon_after_they_come(inserts) -> None:
    writers = _flushed_writers(3)
    for writer in writers:
        writer(f"step {writer.step_id}: revision 2 → revision 1")
        writer(f"step {writer.step_id}: 0 of 3 replicas updated")

    _wait_for(lambda: all(_stored(writer) for writer in writers), seconds=2.0)

    assert [_stored(writer) for writer in writers] == [
        [f"step {w.step_id}: revision 2 → revision 1", f"step {w.step_id}: 0 of 3 replicas updated"]
        for w in writers
    ]
    assert inserts == [sorted(writer.step_id for writer in writers)]


@pytest.mark.django_db(transaction=True)
def test_a_steps_lines_are_numbered_in_order_across_flushes_and_its_end(settings) -> None:
    settings.ROLLBACK_STEP_LOG_MAX_LINES = 4
    (writer,) = _flushed_writers(1)
    writer("一")
    assert writer.settle(5.0)
    for line in ("二 <b>bold</b>", "שלום 🚀", "nul\x00here", "dropped"):
        writer(line)
    assert writer.closing_rows() == []  # the flusher stores them, not the caller

    assert writer.settle(5.0)

    stored = StepLog.objects.filter(step_id=writer.step_id).order_by("seq")
    assert list(stored.values_list("seq", "line")) == [
        (1, "一"),
        (2, "二 <b>bold</b>"),
        (3, "שלום 🚀"),
        (4, "nul\ufffdhere"),
        (5, "… 1 more line(s) not kept (limit 4 per step)"),
    ]


@pytest.mark.django_db(transaction=True)
def test_lines_the_database_could_not_take_are_stored_at_the_next_round(monkeypatch) -> None:
    (writer,) = _flushed_writers(1)
    real = StepLog.objects.bulk_create
    refused: list[int] = []

    def down_once(rows: Any, *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(len(rows))
            raise OperationalError("the database system is shutting down")
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(StepLog.objects, "bulk_create", down_once)
    writer("applied")

    assert writer.settle(5.0)
    assert refused == [1]
    assert _stored(writer) == ["applied"]


@pytest.mark.django_db(transaction=True)
def test_one_steps_rows_that_cannot_be_stored_do_not_keep_the_others_out(caplog) -> None:
    kept, gone = _flushed_writers(2)
    Step.objects.filter(pk=gone.step_id).delete()  # its lines can no longer be stored
    kept("kept")
    gone("gone")

    assert kept.settle(5.0) and gone.settle(5.0)

    assert _stored(kept) == ["kept"]
    assert not StepLog.objects.filter(step_id=gone.step_id).exists()
    assert gone.dropped == 1
    said = f"log line(s) of step {gone.step_id} could not be stored"
    _wait_for(lambda: said in caplog.text)  # logged as the flusher lets go of the rows


def test_inside_a_transaction_a_step_stores_its_own_lines_with_its_outcome() -> None:
    writer = _writer()
    writer("rolled out")

    rows = writer.closing_rows()

    assert [row.line for row in rows] == ["rolled out"]
    assert writer.settle(0.0)  # nothing for a flusher to do


@pytest.mark.django_db(transaction=True)
def test_a_failed_read_of_the_next_number_keeps_every_steps_lines(monkeypatch) -> None:
    """A retried step's writer reads its next number from the database: should that read
    fail, its lines stay buffered and the round's other steps are stored all the same."""
    resumed, fresh = _flushed_writers(2)
    resumed._next_seq = 0  # noqa: SLF001  (as for a retried attempt: read at the first write)
    real = StepLog.objects.filter
    failed: list[int] = []

    def down_once(*args: Any, **kwargs: Any) -> Any:
        if not failed:
            failed.append(1)
            raise OperationalError("the database system is starting up")
        return real(*args, **kwargs)

    monkeypatch.setattr(StepLog.objects, "filter", down_once)
    resumed("resumed line")
    fresh("fresh line")

    assert resumed.settle(5.0) and fresh.settle(5.0)
    assert failed == [1]
    assert _stored(resumed) == ["resumed line"]
    assert _stored(fresh) == ["fresh line"]
