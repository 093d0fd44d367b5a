"""A step's progress lines, on their way to StepLog rows and the room's live log.

Lines are buffered per step, at most ROLLBACK_STEP_LOG_MAX_LINES per step. One thread per
process (LogFlusher) stores the lines every step of the process has buffered, together:
a quarter second after the first of them (at once when 50 wait for one step, or when the
step records its apply or its outcome), in one INSERT, then announces each step's new lines
to the room (incidents.timeline.announce_log_lines). It alone stores a step's lines, so they
reach the database in the order of their numbers: the room reads a step's log after the
last number it has seen.

The INSERT is fenced by the claim: it locks the steps' rows (in id order, as claims do) and
stores a step's lines only while the step still carries the token of the claim that wrote
them. The lines of a worker whose step was taken over, or released for a retry, would
otherwise collide with the numbers of the new attempt's. A database that is down keeps the
lines for the next round, for at most a minute; then, and on any other error, they are
dropped, counted and logged, and the step's last line says how many were lost.

A step executed inside a transaction (inline, as in tests) stores its own lines from its
thread, in that transaction (the flusher's connection could not see the step): every 0.25 s,
and the rest with its apply or its outcome (rollbacks.engine.step_records).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime

from django.db import DatabaseError, InterfaceError, OperationalError, connections, transaction
from django.db.models import Max
from django.utils import timezone

from incidents.timeline import announce_log_lines
from rollbacks import conf
from rollbacks.models import Step, StepLog

logger = logging.getLogger(__name__)

# A longer line is cut; buffered lines are stored this many at a time, or this often.
_LOG_LINE_MAX_CHARS = 2000
_LOG_FLUSH_LINES = 50
_LOG_FLUSH_SECONDS = 0.25
# Lines the database cannot take for want of a connection are retried this long.
LOG_RETRY_SECONDS = 60.0
# The flusher's thread, idle this long, gives its connection back.
_LOG_IDLE_SECONDS = 5.0
# SQLSTATE classes of errors that pass: connection, transaction rollback (deadlock,
# serialization), insufficient resources, operator intervention (shutdown, statement
# timeout), system error; and lock_not_available.
_PASSING_SQLSTATES = ("08", "40", "53", "57", "58", "55P03")


def database_unavailable(error: Exception) -> bool:
    """Whether `error` says the database cannot take a write now but may soon (so the rows
    are kept for another try), rather than that it refuses these rows."""
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    return sqlstate is None or str(sqlstate).startswith(_PASSING_SQLSTATES)


class StepLogWriter:
    """Collects a step's progress lines for storing in batches.

    Backends may log from their own threads; lines are buffered under a lock. The process's
    LogFlusher stores them, unless the writer was made inside a transaction: then only the
    thread that executes the step writes them (it owns that transaction).
    """

    def __init__(
        self,
        step: Step,
        *,
        token: str | None = None,
        owner: threading.Thread | None = None,
        first: bool = False,
    ) -> None:
        self.step_id = step.pk
        self.incident_id = step.run.incident_id
        # The claim the lines are written under (by default the step's as loaded): the
        # flusher stores them only while the step still carries it.
        self.token = step.claim_token if token is None else token
        self._owner = owner or threading.current_thread()
        self._flushed = not transaction.get_connection().in_atomic_block
        self._lock = threading.Condition()
        self._buffer: list[tuple[datetime, str]] = []
        self._last_flush: float | None = None  # monotonic; None until the first line
        self._scheduled = False  # with the flusher, to be stored at its next round
        self._taken: list[StepLog] | None = None  # being stored by the flusher
        self._unstored: list[StepLog] = []  # numbered, not stored yet (the database was down)
        self._closing = False  # the step ended: say how many lines were not kept
        self._told = False  # the closing line is numbered
        self._failing_since: float | None = None  # monotonic; the first failed store in a row
        self._abandoned = False  # the claim ended elsewhere: lines are no longer kept
        # `first`: the step's first attempt, freshly claimed, so nothing is logged yet.
        # Otherwise the next number is read at the first write: earlier attempts logged.
        self._next_seq = 1 if first else 0
        self._limit = conf.log_max_lines()
        self.dropped = 0  # over the limit
        self.lost = 0  # not taken by the database
        self.count = 0
        self.last_line = ""

    def __call__(self, line: str) -> None:
        # PostgreSQL text holds no NUL character.
        text = str(line).rstrip("\n").replace("\x00", "\ufffd")
        if len(text) > _LOG_LINE_MAX_CHARS:
            text = text[:_LOG_LINE_MAX_CHARS] + " …"
        with self._lock:
            if self._abandoned:
                return
            if self._last_flush is None:
                # The first line waits for company (a step's first line usually comes just
                # before its first write to the infrastructure, which must not wait for
                # the database); from here on lines are stored at most this often.
                self._last_flush = time.monotonic()
            self._buffer.append((timezone.now(), text))
            self.count += 1
            self.last_line = text
            many = len(self._buffer) >= _LOG_FLUSH_LINES
        if self._flushed:
            self._schedule(urgent=many)
        else:
            self.flush_if_due()

    def flush(self) -> None:
        """Store the buffered lines now (with a flusher: have it store them soon)."""
        self._store(self.take_rows())

    def flush_if_due(self) -> None:
        """Without a flusher: store the buffered lines if enough are waiting or the last
        store is long enough ago (each new line asks; so do waits between polls, since a
        wait whose progress does not change logs nothing more, and its lines must not wait
        for the step's end). With one, the flusher stores them in time."""
        if self._flushed:
            return
        with self._lock:
            due = bool(self._buffer) and (
                len(self._buffer) >= _LOG_FLUSH_LINES
                or self._last_flush is None
                or time.monotonic() - self._last_flush >= _LOG_FLUSH_SECONDS
            )
        if due and threading.current_thread() is self._owner:
            self.flush()

    def close(self) -> None:
        """Flush, and say how many lines were not kept."""
        self._store(self.closing_rows())

    def closing_rows(self) -> list[StepLog]:
        """What close() stores, for a caller that stores it with other steps' rows (then
        announce_log_lines after the commit): the lines not stored yet, and how many were
        not kept. With a flusher, nothing: it stores them at once."""
        with self._lock:
            self._closing = True
        return self.take_rows()

    def take_rows(self) -> list[StepLog]:
        """The lines not stored yet as numbered rows, for the caller to store. With a
        flusher, nothing: it alone stores a step's rows (so they reach the database in the
        order of their numbers, as the room reads them), and is asked to store them at its
        next round."""
        if self._flushed:
            self._schedule(urgent=False)
            return []
        with self._lock:
            return self._number()

    def settle(self, timeout: float, *, closing: bool = False) -> bool:
        """With a flusher: have it store this step's lines at once (`closing`: and say how
        many were not kept), and wait (at most `timeout` seconds) until it has; False if
        it has not. A step's thread does so as it ends, so that a worker stopping right
        after loses no line, and before it gives up its claim, which fences the lines."""
        if not self._flushed:
            return True
        if closing:
            with self._lock:
                self._closing = True
        self._schedule(urgent=True)
        with self._lock:
            return self._lock.wait_for(lambda: not self._waiting() and self._taken is None, timeout)

    def _waiting(self) -> bool:
        """Lines (or the closing line) to store (with the lock)."""
        return bool(self._buffer or self._unstored or self._closing_due())

    def _closing_due(self) -> bool:
        """The step ended with lines not kept, and has not said so yet (with the lock)."""
        return self._closing and not self._told and bool(self.dropped or self.lost)

    def _schedule(self, *, urgent: bool) -> None:
        """Have the flusher store what waits (`urgent`: at once)."""
        with self._lock:
            waiting = self._waiting()
            ask = waiting and (urgent or not self._scheduled)
            self._scheduled = self._scheduled or ask
        if ask:
            log_flusher.schedule(self, urgent=urgent)

    def taken_by_flusher(self) -> list[StepLog] | None:
        """The rows for the flusher to store, its until it says stored(); None when they
        cannot be numbered yet (the read of a retried step's next number failed, and the
        lines stay buffered for the next round)."""
        with self._lock:
            self._scheduled = False
            try:
                self._taken = self._number()
                return self._taken
            except DatabaseError as error:
                if self._keep_after(error):
                    self._scheduled = True
                    return None
                lost, self._buffer = len(self._buffer), []
                self.lost += lost
                self._taken = []
                self._failing_since = None
                # Unnumbered, the closing line cannot go in either: the log above says it.
                self._told = self._told or self._closing
                failed = error  # `error` is unbound after the except clause
        self._log_lost(lost, failed)
        return []

    def stored(self, error: Exception | None = None, *, claim_ended: bool = False) -> bool:
        """The flusher is done with what it took: stored, or not because of `error`, or
        not because the step no longer carries this writer's claim (`claim_ended`: then
        nothing more is kept). Rows the database could not take for want of a connection
        are kept for the next round, for a while; returns True when they are. Other
        failures drop them (and are logged)."""
        with self._lock:
            rows, self._taken = self._taken or [], None
            kept = False
            if claim_ended:
                self._abandoned = True
                ended = len(rows) + len(self._buffer) + len(self._unstored)
                self._buffer, self._unstored = [], []
            elif error is None or not rows:
                if rows:
                    self._failing_since = None
            else:
                kept = self._keep_after(error)
                if kept:
                    self._unstored = rows + self._unstored
                    self._scheduled = True
                else:
                    self.lost += len(rows)
                    self._failing_since = None  # the next failure has its own window
            self._lock.notify_all()
        if claim_ended:
            logger.warning(
                "%d log line(s) of step %s not stored: the claim they were written under "
                "has ended (taken over, or released for a retry)",
                ended,
                self.step_id,
            )
        elif error is not None and rows and not kept:
            self._log_lost(len(rows), error)
        if not kept:  # lines that came meanwhile, or the closing line after lost ones
            self._schedule(urgent=self._closing)
        return kept

    def _keep_after(self, error: Exception) -> bool:
        """Whether lines that failed to go in for `error` are kept for another try: while
        the database is unavailable, for LOG_RETRY_SECONDS (with the lock)."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        return database_unavailable(error) and now - self._failing_since < LOG_RETRY_SECONDS

    def _log_lost(self, count: int, error: Exception) -> None:
        logger.error(
            "%d log line(s) of step %s could not be stored",
            count,
            self.step_id,
            exc_info=error,
        )

    def _number(self) -> list[StepLog]:
        """The buffered lines as numbered rows after those not stored yet, and once the
        step closes, how many lines were not kept (with the lock)."""
        if (self._buffer or self._closing_due()) and not self._next_seq:
            # Read first: should it fail, nothing is taken.
            top = StepLog.objects.filter(step_id=self.step_id).aggregate(top=Max("seq"))["top"]
            self._next_seq = (top or 0) + 1
        pending, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        rows, self._unstored = self._unstored, []
        for at, text in pending:
            if self._next_seq > self._limit:
                self.dropped += 1
                continue
            rows.append(StepLog(step_id=self.step_id, seq=self._next_seq, at=at, line=text))
            self._next_seq += 1
        if self._closing_due():
            said = []
            if self.dropped:
                said.append(f"{self.dropped} more line(s) not kept (limit {self._limit} per step)")
            if self.lost:
                said.append(f"{self.lost} line(s) lost: the database did not take them")
            line = "… " + "; ".join(said)
            rows.append(StepLog(step_id=self.step_id, seq=self._next_seq, line=line))
            self._next_seq += 1
            self._told = True
        return rows

    def _store(self, rows: list[StepLog]) -> None:
        if rows:
            StepLog.objects.bulk_create(rows)
            announce_log_lines(self.incident_id, self.step_id)


class LogFlusher:
    """One thread per process storing the log lines of every step the process runs.

    Steps of a group poll their rollouts side by side, each logging a line now and then;
    storing each step's lines on its own cost an INSERT and a commit per line or two, on
    the worker and on PostgreSQL, while the group's other steps waited for the CPU. Here
    they share one INSERT a quarter second."""

    def __init__(self) -> None:
        self.forget_parent()

    def forget_parent(self) -> None:
        """In a forked child: the parent's thread and lock did not come along."""
        self._lock = threading.Lock()
        self._due: dict[int, StepLogWriter] = {}
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def schedule(self, writer: StepLogWriter, *, urgent: bool = False) -> None:
        """Store `writer`'s lines at the next round (`urgent`: without waiting for company);
        starts the thread if needed."""
        with self._lock:
            self._due[id(writer)] = writer
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="rollback-step-logs", daemon=True
                )
                self._thread.start()
        if urgent:
            self._urgent.set()
        self._wake.set()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(_LOG_IDLE_SECONDS):
                connections.close_all()  # an idle thread holds no connection
                continue
            self._urgent.wait(_LOG_FLUSH_SECONDS)  # lines due together go together
            self._wake.clear()
            self._urgent.clear()
            with self._lock:
                writers, self._due = list(self._due.values()), {}
            try:
                self.store(writers)
            except Exception:  # never the thread's end: the next round tries again
                logger.exception("storing step log lines failed")
            finally:
                release_connections()

    def store(self, writers: list[StepLogWriter]) -> None:
        """Store what `writers` buffered: in one transaction, or, should that fail for
        anything but an unavailable database, each step's in one of its own, so that one
        step's bad row stays its own."""
        taken, kept = [], []
        for writer in writers:
            rows = writer.taken_by_flusher()
            if rows is None:  # numbering read the database: the lines stay buffered
                kept.append(writer)
            else:
                taken.append((writer, rows))
        errors: dict[int, Exception | None] = {}
        try:
            ended = insert_rows(taken)
        except DatabaseError as error:
            ended = set()
            errors = {id(writer): error for writer, _ in taken}
            if len(taken) > 1 and not database_unavailable(error):
                for writer, rows in taken:
                    try:
                        ended |= insert_rows([(writer, rows)])
                        errors[id(writer)] = None
                    except DatabaseError as own:
                        errors[id(writer)] = own
        for writer, _ in taken:
            if writer.stored(errors.get(id(writer)), claim_ended=id(writer) in ended):
                kept.append(writer)
        if kept:
            logger.warning("step log lines not stored (database unavailable); retrying")
            with self._lock:
                self._due.update({id(writer): writer for writer in kept})
            time.sleep(_LOG_FLUSH_SECONDS)  # before the next round: no tight retry loop
            self._wake.set()


def release_connections() -> None:
    """After a round: a pooled connection goes back to the pool; a persistent one (no
    pool) is kept for the next round unless it broke or is past its age."""
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is not None:
            connection.close()
        else:
            connection.close_if_unusable_or_obsolete()


def insert_rows(taken: list[tuple[StepLogWriter, list[StepLog]]]) -> set[int]:
    """Store several steps' rows in one INSERT, in a transaction of its own, and announce
    each step's new lines after the commit. A writer's rows go in only while its step
    carries its claim token; returns the id() of the writers whose rows did not for that.

    The steps' rows stay locked until the commit, in id order as claims lock them: a
    takeover cannot hand the step to a new attempt, which numbers its lines after the
    last stored, while lines of the old one are about to go in."""
    owned = [(writer, rows) for writer, rows in taken if rows]
    if not owned:
        return set()
    with transaction.atomic():
        tokens = dict(
            Step.objects.filter(pk__in={writer.step_id for writer, _ in owned})
            .order_by("pk")
            .select_for_update(no_key=True)
            .values_list("pk", "claim_token")
        )
        held = [
            (writer, rows) for writer, rows in owned if tokens.get(writer.step_id) == writer.token
        ]
        StepLog.objects.bulk_create([row for _, rows in held for row in rows])
        for writer, _ in held:
            announce_log_lines(writer.incident_id, writer.step_id)
    return {id(writer) for writer, _ in owned} - {id(writer) for writer, _ in held}


# This process's log flusher: every StepLogWriter made outside a transaction hands it lines.
log_flusher = LogFlusher()
os.register_at_fork(after_in_child=log_flusher.forget_parent)
