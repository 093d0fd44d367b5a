"""Shared writes: what several steps of this process record at the same moment (that they
applied, how they ended) is written in one transaction, each row still fenced by its own
claim. `SharedWrites` is the machinery; rollbacks.engine.step_records says what is written.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from incidents.models import Incident
from rollbacks.engine.claims import Claim, OwnershipLost, update_claimed
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.models import Step, StepLog


class ClaimedExecution(Protocol):
    """A step's execution as its pending writes see it (rollbacks.engine.execution): the
    claim that fences its row, the step, its incident, and its log lines."""

    @property
    def claim(self) -> Claim: ...

    @property
    def step(self) -> Step: ...

    @property
    def incident(self) -> Incident: ...

    @property
    def log_writer(self) -> StepLogWriter: ...


@dataclass(eq=False)  # compared by identity (queued, taken, handed on)
class Pending:
    """A step's write waiting for a shared transaction (see SharedWrites)."""

    execution: ClaimedExecution
    error: BaseException | None = field(default=None, kw_only=True)
    leads: bool = field(default=False, kw_only=True)  # writes the next transaction
    turn: threading.Event = field(default_factory=threading.Event, kw_only=True)
    log_rows: list[StepLog] | None = field(default=None, kw_only=True)


class SharedWrites[P: Pending]:
    """Writes what this process's steps record at the same moment in one transaction.

    A group's steps tend to reach the same point together: they apply within a few
    milliseconds of each other, and settle together. Each writing its own (log lines,
    its row, timeline entries, a commit) kept the worker busy just then, delaying its
    siblings' requests to the infrastructure and the run's end. One thread writes for
    all that are waiting; steps arriving meanwhile wait for the next transaction, which
    the first of them writes. No step waits for a timer: one alone commits at once.

    Each row is still fenced by its step's claim (one UPDATE for the batch, checking each
    row's token): a step another worker took over loses only its own write, not its
    neighbours'. A
    transaction that fails is written again one step at a time, so that one step's error
    stays its own. A thread interrupted while it waits (a time limit) leaves the queue, and
    one interrupted while it writes for others leaves them to the next of them.
    """

    def __init__(self, write: Callable[[list[P]], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._waiting: list[P] = []
        self._writing = False

    def forget_parent(self) -> None:
        """In a forked child: the parent's lock may have been held at the fork."""
        self._lock = threading.Lock()
        self._waiting = []
        self._writing = False

    def record(self, pending: P) -> None:
        """Write `pending` (with whichever others are waiting); raises what its write
        raised: OwnershipLost when its claim was taken over, or a database error."""
        with self._lock:
            self._waiting.append(pending)
            leads = not self._writing
            self._writing = True
        if not leads:
            try:
                pending.turn.wait()
            except BaseException:  # a time limit, raised into this thread while it waited
                self._leave(pending)
                raise
            if not pending.leads:
                return self._result(pending)
        batch: list[P] = []
        interrupted = False
        try:
            with self._lock:
                batch, self._waiting = self._waiting, []
            self.write_batch(batch)
        except BaseException:
            # Interrupted while writing (a time limit raised into this thread): the
            # transaction rolled back, and the next leader writes the others.
            interrupted = True
            raise
        finally:
            others = [other for other in batch if other is not pending]
            with self._lock:
                if interrupted:
                    self._waiting[:0] = others
                if pending in self._waiting:
                    self._waiting.remove(pending)
                if self._waiting:
                    self._waiting[0].leads = True
                    self._waiting[0].turn.set()
                else:
                    self._writing = False
            if not interrupted:
                for other in others:
                    other.turn.set()
        return self._result(pending)

    def write_batch(self, batch: list[P]) -> None:
        """Write the batch in one transaction; should that fail (one step's value too long
        for its column, a deadlock), write each step in a transaction of its own, so that
        one step's error stays its own."""
        try:
            self._write(batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            for pending in batch:
                pending.error = None
                try:
                    self._write([pending])
                except Exception as own:
                    pending.error = own

    def _leave(self, pending: P) -> None:
        """`pending`'s thread stops waiting: take it out of the queue if no leader took
        it yet (passing the lead on if it was handed to it), else wait for its write."""
        with self._lock:
            if pending in self._waiting:
                self._waiting.remove(pending)
                if pending.leads:
                    if self._waiting:
                        self._waiting[0].leads = True
                        self._waiting[0].turn.set()
                    else:
                        self._writing = False
                return
        while not pending.turn.is_set():  # in a batch being written: let it finish
            with contextlib.suppress(BaseException):
                pending.turn.wait()

    @staticmethod
    def _result(pending: Pending) -> None:
        if pending.error is not None:
            raise pending.error


def fenced[P: Pending](pendings: Sequence[P], fields: Callable[[P], Mapping[str, Any]]) -> list[P]:
    """Those of `pendings` whose claim-fenced write of `fields(pending)` went through, all
    in a couple of statements (rollbacks.engine.claims.update_claimed, which locks the rows
    in step id order, the order every transaction that locks several steps takes them: no
    deadlocks); the others hold the OwnershipLost error."""
    written = update_claimed([(pending.execution.claim, fields(pending)) for pending in pendings])
    kept = []
    for pending in sorted(pendings, key=lambda pending: pending.execution.step.pk):
        if pending.execution.step.pk in written:
            kept.append(pending)
        else:
            pending.error = OwnershipLost()
    return kept
