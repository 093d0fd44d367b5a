"""StepLogWriter: when a step's progress lines reach the database."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import IntegrityError, InterfaceError, OperationalError, connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper

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

    def counted(taken: Any) -> set[int]:
        ended = real(taken)
        made.append(sorted(writer.step_id for writer, rows in taken if rows))
        return ended

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


class FailingInserts:
    """StepLog's bulk_create, raising `errors` one per call first (calling `then` before
    each), and recording how many rows each refused call was given."""

    def __init__(self, monkeypatch: Any) -> None:
        self.errors: list[Exception] = []
        self.then: Any = None
        self.refused: list[int] = []
        real = StepLog.objects.bulk_create

        def insert(rows: Any, *args: Any, **kwargs: Any) -> Any:
            if self.errors:
                self.refused.append(len(rows))
                if self.then is not None:
                    self.then()
                raise self.errors.pop(0)
            return real(rows, *args, **kwargs)

        monkeypatch.setattr(StepLog.objects, "bulk_create", insert)

    def fail(self, *errors: Exception, then: Any = None) -> FailingInserts:
        self.errors, self.then = list(errors), then
        return self


@pytest.fixture
def inserts_failing(monkeypatch) -> FailingInserts:
    return FailingInserts(monkeypatch)


@pytest.mark.django_db(transaction=True)
def test_lines_the_database_could_not_take_are_stored_at_the_next_round(
    inserts_failing,
) -> None:
    (writer,) = _flushed_writers(1)
    refused = inserts_failing.fail(OperationalError("the database system is shutting down")).refused
    writer("applied")

    assert writer.settle(5.0)
    assert refused == [1]
    assert _stored(writer) == ["applied"]


@pytest.mark.django_db(transaction=True)
def test_one_steps_rows_that_cannot_be_stored_do_not_keep_the_others_out(caplog) -> None:
    kept, refused = _flushed_writers(2)
    # A row already holds the number the writer gives its first line: the INSERT fails.
    StepLog.objects.create(step_id=refused.step_id, seq=1, line="already there")
    kept("kept")
    refused("refused")

    assert kept.settle(5.0) and refused.settle(5.0)

    assert _stored(kept) == ["kept"]
    assert _stored(refused) == ["already there"]
    assert refused.lost == 1 and refused.dropped == 0
    said = f"log line(s) of step {refused.step_id} could not be stored"
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


@pytest.mark.django_db(transaction=True)
def test_lines_written_under_an_ended_claim_are_not_stored(caplog) -> None:
    """A worker whose step was taken over keeps logging until it notices: its lines must
    not take the numbers the new attempt gives its own."""
    kept, old = _flushed_writers(2)
    Step.objects.filter(pk=old.step_id).update(claim_token="taken-over")
    new = StepLogWriter(Step.objects.select_related("run").get(pk=old.step_id), token="taken-over")
    kept("kept")
    old("late line of the old worker")

    assert kept.settle(5.0) and old.settle(5.0)
    old("and one more")  # no longer kept at all
    assert old.settle(0.0)
    new("the new attempt's line")
    assert new.settle(5.0)

    assert _stored(kept) == ["kept"]
    stored = StepLog.objects.filter(step_id=old.step_id).order_by("seq")
    assert list(stored.values_list("seq", "line")) == [(1, "the new attempt's line")]
    assert f"log line(s) of step {old.step_id} not stored: the claim" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_takeover_waits_for_the_old_claims_lines_already_going_in(monkeypatch) -> None:
    """The INSERT locks the step's row: a takeover committed meanwhile would let the new
    attempt read its next number before the old lines are visible."""
    (old,) = _flushed_writers(1)
    inserting = threading.Event()
    taken_over: list[float] = []
    real = StepLog.objects.bulk_create

    def slow_insert(rows: Any, *args: Any, **kwargs: Any) -> Any:
        inserting.set()
        time.sleep(0.3)
        return real(rows, *args, **kwargs)

    def take_over() -> None:
        inserting.wait(5.0)
        Step.objects.filter(pk=old.step_id).update(claim_token="new-claim")
        taken_over.append(time.monotonic())
        connections.close_all()

    monkeypatch.setattr(StepLog.objects, "bulk_create", slow_insert)
    other = threading.Thread(target=take_over)
    other.start()
    old("the old claim's line")
    assert old.settle(5.0)
    stored_at = time.monotonic()
    other.join(5.0)

    monkeypatch.setattr(StepLog.objects, "bulk_create", real)
    new = StepLogWriter(Step.objects.select_related("run").get(pk=old.step_id), token="new-claim")
    new("the new claim's line")
    assert new.settle(5.0)

    assert taken_over and taken_over[0] >= stored_at - 0.05
    assert _stored(old) == ["the old claim's line", "the new claim's line"]


@pytest.mark.django_db(transaction=True)
def test_an_error_that_will_not_pass_drops_the_lines_and_the_last_line_says_so(
    inserts_failing, caplog
) -> None:
    (writer,) = _flushed_writers(1)
    too_big = OperationalError("index row size exceeds maximum")
    too_big.__cause__ = _sqlstate("54000")
    refused = inserts_failing.fail(too_big).refused
    writer("refused for good")
    assert writer.settle(5.0)
    writer("stored")

    assert writer.settle(5.0, closing=True)
    assert refused == [1]  # tried once, not again and again
    assert _stored(writer) == [
        "stored",
        "… 1 line(s) lost: the database did not take them",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_database_down_past_the_retry_window_drops_the_lines(inserts_failing, clock) -> None:
    (writer,) = _flushed_writers(1)

    def later() -> None:
        clock.ahead += 61.0  # the second failure comes past the retry window

    down = [OperationalError("server closed the connection unexpectedly") for _ in range(2)]
    tries = inserts_failing.fail(*down, then=later).refused
    writer("kept while the database may come back")

    assert writer.settle(5.0, closing=True)
    assert tries == [1, 1]
    assert writer.lost == 1
    assert _stored(writer) == ["… 1 line(s) lost: the database did not take them"]


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        (None, True),  # no answer from the server at all
        ("08006", True),  # connection failure
        ("40P01", True),  # deadlock
        ("57P01", True),  # admin shutdown
        ("57014", True),  # statement timeout
        ("53300", True),  # too many connections
        ("55P03", True),  # lock not available
        ("54000", False),  # program limit exceeded
        ("55000", False),  # object not in prerequisite state
    ],
)
def test_which_operational_errors_are_retried(sqlstate: str | None, unavailable: bool) -> None:
    error = OperationalError("refused")
    error.__cause__ = _sqlstate(sqlstate) if sqlstate else None

    assert step_logs.database_unavailable(error) is unavailable


def test_interface_errors_are_retried_and_integrity_errors_are_not() -> None:
    assert step_logs.database_unavailable(InterfaceError("connection already closed"))
    assert not step_logs.database_unavailable(IntegrityError("duplicate key"))


def _sqlstate(code: str | None) -> Exception:
    cause = Exception(code)
    cause.sqlstate = code  # type: ignore[attr-defined]
    return cause


class TwoConnections:
    """connections, as the flusher's thread sees them: one pooled, one persistent."""

    def __init__(self, *wrappers: Any) -> None:
        self.wrappers = wrappers

    def all(self, initialized_only: bool = False) -> list[Any]:
        return list(self.wrappers)


@pytest.mark.django_db(transaction=True)
def test_a_round_gives_a_pooled_connection_back_and_keeps_a_persistent_one(
    monkeypatch,
) -> None:
    """Without a pool, reconnecting at every round would cost a connection a quarter
    second; with one, the round's connection goes back for the step threads."""
    options = {k: v for k, v in connection.settings_dict["OPTIONS"].items() if k != "pool"}
    persistent = DatabaseWrapper(
        {**connection.settings_dict, "OPTIONS": options, "CONN_MAX_AGE": 60}, alias="plain"
    )
    pooled = DatabaseWrapper(connection.settings_dict, alias=connection.alias)
    assert pooled.pool is not None and persistent.pool is None
    for wrapper in (persistent, pooled):
        wrapper.ensure_connection()
    monkeypatch.setattr(step_logs, "connections", TwoConnections(persistent, pooled))
    try:
        step_logs.release_connections()

        assert persistent.connection is not None
        assert pooled.connection is None
    finally:
        persistent.close()
        pooled.close()


@pytest.mark.django_db(transaction=True)
def test_a_retried_steps_closing_line_is_numbered_after_its_earlier_lines(
    monkeypatch, clock
) -> None:
    """Its lines lost while the read of its next number failed, a retried step's closing
    line still reads that number: it must not go in as number 0, before the earlier lines."""
    (writer,) = _flushed_writers(1)
    StepLog.objects.create(step_id=writer.step_id, seq=1, line="earlier attempt")
    retried = StepLogWriter(Step.objects.select_related("run").get(pk=writer.step_id))
    real = StepLog.objects.filter
    failures: list[int] = []

    def down_twice(*args: Any, **kwargs: Any) -> Any:
        if len(failures) < 2:
            failures.append(1)
            clock.ahead += 61.0  # the second failure comes past the retry window
            raise OperationalError("the database system is starting up")
        return real(*args, **kwargs)

    monkeypatch.setattr(StepLog.objects, "filter", down_twice)
    retried("lost while the database was away")
    _wait_for(lambda: retried.lost == 1)

    assert retried.settle(5.0, closing=True)

    stored = StepLog.objects.filter(step_id=writer.step_id).order_by("seq")
    assert list(stored.values_list("seq", "line")) == [
        (1, "earlier attempt"),
        (2, "… 1 line(s) lost: the database did not take them"),
    ]


@pytest.mark.django_db(transaction=True)
def test_after_lines_are_dropped_the_next_outage_has_a_retry_window_of_its_own(
    inserts_failing, clock
) -> None:
    (writer,) = _flushed_writers(1)
    too_big = OperationalError("index row size exceeds maximum")
    too_big.__cause__ = _sqlstate("54000")
    answers = inserts_failing.fail(
        too_big, OperationalError("server closed the connection unexpectedly")
    ).errors
    writer("refused for good")
    _wait_for(lambda: writer.lost == 1)
    clock.ahead += 120.0  # long after: the outage now is a new one
    writer("kept through a short outage")

    assert writer.settle(5.0)
    assert not answers
    assert writer.lost == 1
    assert _stored(writer) == ["kept through a short outage"]
