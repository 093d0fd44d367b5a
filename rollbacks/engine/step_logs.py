"""A step's progress lines, on their way to StepLog rows and the room's live log.

Lines are buffered and stored in batches (every 50 lines or 0.25 s), at most
ROLLBACK_STEP_LOG_MAX_LINES per step; each stored batch is announced to the room
(incidents.timeline.announce_log_lines).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from incidents.timeline import announce_log_lines
from rollbacks import conf
from rollbacks.models import Step, StepLog

# A longer line is cut; buffered lines are stored this many at a time, or this often.
_LOG_LINE_MAX_CHARS = 2000
_LOG_FLUSH_LINES = 50
_LOG_FLUSH_SECONDS = 0.25


class StepLogWriter:
    """Collects a step's progress lines and stores them in batches.

    Backends may log from their own threads; lines are buffered under a lock and written
    only by the thread that executes the step (it owns the database connection).
    """

    def __init__(
        self, step: Step, *, owner: threading.Thread | None = None, first: bool = False
    ) -> None:
        self.step_id = step.pk
        self.incident_id = step.run.incident_id
        self._owner = owner or threading.current_thread()
        self._lock = threading.Lock()
        self._buffer: list[tuple[datetime, str]] = []
        self._last_flush: float | None = None  # monotonic; None until the first line
        # `first`: the step's first attempt, freshly claimed, so nothing is logged yet.
        # Otherwise the next number is read at the first write: earlier attempts logged.
        self._next_seq = 1 if first else 0
        self._limit = conf.log_max_lines()
        self.dropped = 0
        self.count = 0
        self.last_line = ""

    def __call__(self, line: str) -> None:
        text = str(line).rstrip("\n")
        if len(text) > _LOG_LINE_MAX_CHARS:
            text = text[:_LOG_LINE_MAX_CHARS] + " …"
        with self._lock:
            if self._last_flush is None:
                # The first line waits for company (a step's first line usually comes just
                # before its first write to the infrastructure, which must not wait for
                # the database); from here on lines are stored at most this often.
                self._last_flush = time.monotonic()
            self._buffer.append((timezone.now(), text))
            self.count += 1
            self.last_line = text
        self.flush_if_due()

    def flush(self) -> None:
        """Store the buffered lines (call from the owning thread)."""
        self._store(self.take_rows())

    def flush_if_due(self) -> None:
        """Store the buffered lines if enough are waiting or the last store is long enough
        ago (each new line asks; so do waits between polls, since a wait whose progress does
        not change logs nothing more, and its lines must not wait for the step's end)."""
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
        announce_log_lines after the commit)."""
        rows = self.take_rows()
        if self.dropped:
            line = f"… {self.dropped} more line(s) not kept (limit {self._limit} per step)"
            rows.append(StepLog(step_id=self.step_id, seq=self._next_seq, line=line))
            self._next_seq += 1
            self.dropped = 0
        return rows

    def take_rows(self) -> list[StepLog]:
        """The buffered lines as numbered rows, not stored yet."""
        with self._lock:
            pending, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
        if not pending:
            return []
        if not self._next_seq:
            top = StepLog.objects.filter(step_id=self.step_id).aggregate(top=Max("seq"))["top"]
            self._next_seq = (top or 0) + 1
        rows = []
        for at, text in pending:
            if self._next_seq > self._limit:
                self.dropped += 1
                continue
            rows.append(StepLog(step_id=self.step_id, seq=self._next_seq, at=at, line=text))
            self._next_seq += 1
        return rows

    def _store(self, rows: list[StepLog]) -> None:
        if rows:
            StepLog.objects.bulk_create(rows)
            announce_log_lines(self.incident_id, self.step_id)
