"""The rollback engine: executes a run's steps through the backends in `executors/`.

Two entry points, both idempotent and safe to call twice with the same id:

- `run_advance(run_id)` looks at a running run under a row lock: when its current parallel
  group still has steps to do it hands them to the dispatcher; when the group is finished it
  moves on to the next group, or ends the run (succeeded, or failed with the reason and the
  later steps cancelled).
- `step_execute(step_id)` claims a pending step with a conditional UPDATE (a second delivery
  finds nothing to claim), applies it unless `applied_at` says an earlier delivery already
  did, waits for the infrastructure to settle before the step's deadline while streaming
  log lines into StepLog, runs the backend's checks, records the outcome, and asks for the
  run to advance.
- `steps_execute(step_ids)` does the same for several steps of a parallel group: one
  transaction claims them all (and writes their "started" entries), then each runs on a
  thread of the worker's step pool. The dispatcher hands a group out this way, in messages
  of ROLLBACK_STEPS_PER_MESSAGE steps, so a large group starts at once instead of one
  message and one claim at a time.

When the last group is done, the services' own verification checks may hold the run before
it ends (rollbacks.verification, docs/verification.md): a round of checks is dispatched like
a step, and its outcome fails, pauses or succeeds the run.

Every state change is a row update plus its timeline entry in one transaction; the entry is
announced on Redis after commit (incidents.services.timeline_append).

A worker that dies mid-step leaves its step `running` with a heartbeat that stops moving.
`recover_stalled()` (run periodically by every worker, see rollbacks.tasks) hands such steps
to a new delivery, which takes the claim over and carries on from what `applied_at` says.
Writes after the claim are fenced by a claim token, so a worker presumed dead that comes
back cannot overwrite its successor's record.

The dispatcher, which every entry point takes from its caller, decides how work is handed
out: to Celery after commit (rollbacks.tasks.CeleryDispatcher), or collected for
`run_inline`, which executes a run in this process (the terminal command).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from executors.base import (
    Backend,
    BackendError,
    CheckResult,
    CheckStatus,
    DeadlineExceeded,
    RollbackTarget,
)
from incidents.models import TimelineEntry, TimelineKind
from incidents.timeline import announce_log_lines, timeline_append, timeline_append_all
from rollbacks import conf
from rollbacks.engine.advance import UNFINISHED_STATES, run_advance
from rollbacks.engine.backends import release_labels, reusable_backend_for, target_for
from rollbacks.engine.claims import (
    Claim,
    OwnershipLost,
    claim_pending,
    claim_step,
    take_over,
    worker_name,
)
from rollbacks.engine.dispatch import (
    Dispatcher,
    InlineDispatcher,
)
from rollbacks.engine.entries import (
    ENGINE_ACTOR,
    check_json,
    checks_summary,
    describe_step,
    format_duration,
    step_payload,
)
from rollbacks.engine.heartbeats import heartbeats
from rollbacks.engine.retries import StepRetry, retry_after_hint, retry_delay
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.models import Run, RunState, Step, StepLog, StepState

logger = logging.getLogger(__name__)


# -- executing a step ------------------------------------------------------------------------


class _StepExecution:
    """One worker's turn at a claimed step."""

    def __init__(self, claim: Claim, dispatcher: Dispatcher, final_attempt: bool) -> None:
        self.step = claim.step
        self.claim = claim
        self.resumed = claim.resumed
        self.apply_marked = claim.apply_marked
        self.apply_called = False
        self.dispatcher = dispatcher
        self.final_attempt = final_attempt
        self.log_writer = StepLogWriter(
            self.step, first=self.step.attempts == 1 and not claim.resumed
        )
        assert self.step.deadline is not None
        self.deadline = self.step.deadline

    @property
    def incident(self) -> Any:
        return self.step.run.incident

    def monotonic_deadline(self) -> float:
        remaining = (self.deadline - timezone.now()).total_seconds()
        return time.monotonic() + remaining

    def execute(self) -> str:
        step = self.step
        run = step.run  # as it was at the claim
        if run.state == RunState.CANCELLED and step.applied_at is None:
            return self.finish(StepState.CANCELLED, reason="the run was cancelled before it ran")
        if timezone.now() >= self.deadline and step.applied_at is None:
            raise DeadlineExceeded(
                f"deadline passed before attempt {step.attempts} could apply "
                f"(timeout {step.timeout_seconds} s)"
            )
        backend = reusable_backend_for(step.service)
        target = target_for(step)
        if run.dry_run:
            return self.plan_only(backend, target)
        if step.applied_at is None:
            if self.apply_marked:  # the claim recorded the start of this very apply
                pass
            elif step.apply_started_at is not None:
                # An earlier delivery may have applied before it died: tell the backend.
                target = replace(target, params={**target.params, "already_ran": True})
                self.log(
                    "an earlier attempt started applying at "
                    f"{step.apply_started_at:%H:%M:%S} and did not record the result"
                )
            else:
                self.claim.update(apply_started_at=timezone.now())
            self.apply_called = True
            result = backend.apply(target, log=self.log)
            self.record_applied(result.detail, dict(result.facts), result.changed)
        else:
            self.log(f"already applied at {step.applied_at:%H:%M:%S}; waiting for it to settle")
        backend.wait(target, deadline=self.monotonic_deadline(), log=self.log_writer)
        # The settled line is stored with the outcome, a few milliseconds on: a write of
        # its own here would come just when a whole group settles and checks at once.
        settled = self.log_writer.last_line
        results = backend.checks(target)
        try:
            reached = backend.live_version() or ""
        except BackendError as error:
            reached = ""
            self.log(f"could not read the live version after the rollback: {error}")
        failed = [result for result in results if result.status == CheckStatus.FAILED]
        if failed:
            reason = "verification failed: " + "; ".join(
                f"{result.name}: {result.detail}" for result in failed
            )
            return self.finish(
                StepState.FAILED, reason=reason, checks=results, reached=reached, retryable=False
            )
        return self.finish(StepState.SUCCEEDED, checks=results, reached=reached, settled=settled)

    def plan_only(self, backend: Backend, target: RollbackTarget) -> str:
        plan = backend.plan(target)
        for change in plan.changes:
            self.log(
                f"would change {change.resource} {change.attribute}: "
                f"{change.before} → {change.after}"
            )
        self.step.plan_summary = plan.summary
        self.step.planned_changes = [change.as_json() for change in plan.changes]
        return self.finish(
            StepState.SUCCEEDED,
            detail=f"dry run: {plan.summary}",
            reached="",
            extra_fields={
                "plan_summary": plan.summary,
                "planned_changes": [change.as_json() for change in plan.changes],
            },
        )

    def log(self, line: str) -> None:
        self.log_writer(line)

    def forget_unstarted_apply(self) -> None:
        """Clear the apply start the claim recorded when this attempt ends before applying
        (its deadline passed in the queue, the backend could not be built): a later attempt
        must not take the step for one that may have applied."""
        if self.apply_marked and not self.apply_called:
            self.claim.update(apply_started_at=None)
            self.apply_marked = False

    def record_applied(self, detail: str, facts: dict[str, Any], changed: bool) -> None:
        """Record the apply and its timeline entry (with other steps applying at the same
        moment: see _SharedWrites)."""
        _applies.record(_Applied(self, detail=detail, facts=facts, changed=changed))

    def release_for_retry(self, error: BackendError, retry_after: float | None) -> None:
        """Put the step back to pending after a retryable error; the task retries it."""
        with transaction.atomic():
            self.log_writer.close()
            self.claim.update(
                state=StepState.PENDING,
                claim_token="",
                error=str(error),
                error_retryable=True,
                heartbeat_at=None,
                enqueued_at=timezone.now(),
            )
            delay = retry_delay(self.step.attempts - 1, retry_after=retry_after)
            hint = f" (the server asked for {retry_after:g} s)" if retry_after else ""
            timeline_append(
                incident=self.incident,
                kind=TimelineKind.STEP_OUTPUT,
                body=f"Run #{self.step.run_id} {describe_step(self.step)} attempt "
                f"{self.step.attempts} hit a retryable error: {error}; retrying in about "
                f"{delay:.0f} s{hint}",
                actor_label=ENGINE_ACTOR,
                payload=step_payload(
                    self.step, phase="retry", error=str(error), retry_after=retry_after
                ),
            )

    def finish(
        self,
        state: str,
        *,
        reason: str = "",
        checks: list[CheckResult] | None = None,
        reached: str | None = None,
        retryable: bool = False,
        detail: str = "",
        settled: str = "",
        extra_fields: dict[str, Any] | None = None,
    ) -> str:
        """Record the outcome with its timeline entries, then ask the run to advance.

        Steps of this process that finish at the same moment share one transaction (see
        _SharedWrites): each row is still written through its own claim-fenced UPDATE, without
        locking the run, so a group's steps finish side by side.
        """
        ending = _Ending(
            self,
            state,
            reason=reason,
            checks=checks or [],
            reached=reached,
            retryable=retryable,
            detail=detail,
            settled=settled,
            extra_fields=extra_fields or {},
        )
        _finishes.record(ending)
        # After the commit: of steps finishing at once, the last to commit sees its group
        # done (maybe others do too); run_advance takes the run's lock and acts once. Of the
        # steps of one group that committed together, the last asks for all of them.
        step = self.step
        if not ending.asks_for_group:
            return state
        try:
            group_done = not Step.objects.filter(
                run_id=step.run_id, group=step.group, state__in=UNFINISHED_STATES
            ).exists()
            if group_done:
                run_advance(step.run_id, dispatcher=self.dispatcher)
        except Exception:
            # The outcome is committed: this is the run's business now, not the step's.
            logger.exception("run %s not advanced after step %s; queueing it", step.run_id, step.pk)
            try:
                self.dispatcher.advance_run(step.run_id)
            except Exception:  # the recovery sweep advances a quiet run
                logger.exception("run %s could not be queued for advancing", step.run_id)
        return state


@dataclass(eq=False)  # compared by identity (queued, taken, handed on)
class _Pending:
    """A step's write waiting for a shared transaction (see _SharedWrites)."""

    execution: _StepExecution
    error: BaseException | None = field(default=None, kw_only=True)
    leads: bool = field(default=False, kw_only=True)  # writes the next transaction
    turn: threading.Event = field(default_factory=threading.Event, kw_only=True)
    log_rows: list[StepLog] | None = field(default=None, kw_only=True)


@dataclass(eq=False)
class _Applied(_Pending):
    """That a step's apply is done, on its way to the database."""

    detail: str
    facts: dict[str, Any]
    changed: bool

    def entry(self) -> TimelineEntry:
        step = self.execution.step
        what = f"Run #{step.run_id} {describe_step(step)}"
        return TimelineEntry(
            incident=self.execution.incident,
            kind=TimelineKind.STEP_OUTPUT,
            body=f"{what} applied: {self.detail}"
            if self.changed
            else f"{what}: nothing to change ({self.detail})",
            actor_label=ENGINE_ACTOR,
            payload=step_payload(step, phase="applied", changed=self.changed),
        )


@dataclass(eq=False)
class _Ending(_Pending):
    """A step's outcome on its way to the database."""

    state: str
    reason: str
    checks: list[CheckResult]
    reached: str | None
    retryable: bool
    detail: str
    settled: str
    extra_fields: dict[str, Any]
    asks_for_group: bool = field(default=False, kw_only=True)  # last of its group written

    def reached_pair(self) -> tuple[int, str] | None:
        """The (service id, live value) whose release label the row needs, if any."""
        step = self.execution.step
        if not self.reached or self.reached == step.to_artifact:
            return None
        return (step.service_id, self.reached)

    def fields(self, labels: Mapping[tuple[int, str], str]) -> dict[str, Any]:
        """The step row's new values (`labels`: release_labels of the reached values)."""
        step = self.execution.step
        fields: dict[str, Any] = {
            "state": self.state,
            "finished_at": timezone.now(),
            "heartbeat_at": None,
            "check_results": [check_json(result) for result in self.checks],
            **self.extra_fields,
        }
        if self.state == StepState.FAILED:
            fields["error"] = self.reason
            fields["error_retryable"] = self.retryable
        elif self.state == StepState.CANCELLED:
            fields["skip_reason"] = self.reason
        if self.reached is not None:
            pair = self.reached_pair()
            fields["reached_version"] = (
                labels[pair] if pair is not None else step.to_version if self.reached else ""
            )
        if self.detail:
            fields["apply_detail"] = self.detail
        return fields

    def entries(self) -> list[TimelineEntry]:
        """The timeline entries, once the step holds its new values."""
        step, incident = self.execution.step, self.execution.incident
        entries = []
        if self.checks:
            entries.append(
                TimelineEntry(
                    incident=incident,
                    kind=TimelineKind.CHECK_RESULT,
                    body=f"Run #{step.run_id} {describe_step(step)} checks: "
                    + checks_summary(self.checks),
                    actor_label=ENGINE_ACTOR,
                    payload=step_payload(step, checks=[check_json(r) for r in self.checks]),
                )
            )
        finished, started = step.finished_at, step.started_at
        took = format_duration(finished - started) if finished and started else "?"
        if self.state == StepState.SUCCEEDED:
            reached_text = f", now at {step.reached_version}" if step.reached_version else ""
            settled_text = f" ({self.settled})" if self.settled else ""
            body = f"succeeded in {took}{reached_text}{settled_text}"
            if self.detail:
                body = f"succeeded in {took}: {self.detail}"
        elif self.state == StepState.FAILED:
            retry_text = " (retryable: retry the step)" if self.retryable else ""
            body = f"failed after {took}: {self.reason}{retry_text}"
        else:
            body = f"{self.state}: {self.reason}"
        entries.append(
            TimelineEntry(
                incident=incident,
                kind=TimelineKind.STEP_FINISHED,
                body=f"Run #{step.run_id} {describe_step(step)} {body}",
                actor_label=ENGINE_ACTOR,
                payload=step_payload(step, reason=self.reason, retryable=self.retryable),
            )
        )
        return entries


class _SharedWrites[P: _Pending]:
    """Writes what this process's steps record at the same moment in one transaction.

    A group's steps tend to reach the same point together: they apply within a few
    milliseconds of each other, and settle together. Each writing its own (log lines,
    its row, timeline entries, a commit) kept the worker busy just then, delaying its
    siblings' requests to the infrastructure and the run's end. One thread writes for
    all that are waiting; steps arriving meanwhile wait for the next transaction, which
    the first of them writes. No step waits for a timer: one alone commits at once.

    Each row is still written through its step's claim-fenced UPDATE: a step another
    worker took over loses only its own write (and log lines), not its neighbours'. A
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
            self._write_each(batch)
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

    def _write_each(self, batch: list[P]) -> None:
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
    def _result(pending: _Pending) -> None:
        if pending.error is not None:
            raise pending.error


def _fenced[P: _Pending](pendings: Sequence[P], write: Callable[[P], None]) -> list[P]:
    """Those of `pendings` whose claim-fenced write went through; the others hold the
    OwnershipLost error. Rows are written in step id order, the order in which every
    transaction that locks several steps takes them (claims, heartbeats): no deadlocks."""
    kept = []
    for pending in sorted(pendings, key=lambda pending: pending.execution.step.pk):
        try:
            write(pending)
        except OwnershipLost as error:
            pending.error = error
            continue
        kept.append(pending)
    return kept


def _store_log_rows(pendings: Iterable[_Pending], *, closing: bool) -> None:
    """Several steps' buffered log lines in one INSERT (in the caller's transaction)."""
    rows: list[StepLog] = []
    for pending in pendings:
        writer = pending.execution.log_writer
        if pending.log_rows is None:  # taken once: a transaction written again reuses them
            pending.log_rows = writer.closing_rows() if closing else writer.take_rows()
        if pending.log_rows:
            rows.extend(pending.log_rows)
            announce_log_lines(writer.incident_id, writer.step_id)
    StepLog.objects.bulk_create(rows)


def _write_applied(applied: list[_Applied]) -> None:
    """One transaction for several steps' applies."""
    now = timezone.now()
    with transaction.atomic():
        kept = _fenced(
            applied,
            lambda item: item.execution.claim.update(
                applied_at=now, apply_detail=item.detail, apply_facts=_jsonable(item.facts)
            ),
        )
        _store_log_rows(kept, closing=False)
        timeline_append_all(_by_incident([item.entry() for item in kept]))


def _write_endings(endings: list[_Ending]) -> None:
    """One transaction for several steps' outcomes."""
    with transaction.atomic():
        labels = release_labels(pair for e in endings if (pair := e.reached_pair()) is not None)
        kept = _fenced(
            endings, lambda ending: ending.execution.claim.update(**ending.fields(labels))
        )
        _store_log_rows(kept, closing=True)
        timeline_append_all(_by_incident([entry for e in kept for entry in e.entries()]))
        # Set before the commit, acted on after it (record returns once it is done).
        last_of_group = {(e.execution.step.run_id, e.execution.step.group): e for e in kept}
        for ending in last_of_group.values():
            ending.asks_for_group = True


def _by_incident(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Entries of several incidents in incident order: their commit takes each incident's
    commit-order lock in the order they were inserted (migration 0006), and two such
    transactions taking them in different orders would deadlock."""
    return sorted(entries, key=lambda entry: entry.incident_id)


_applies = _SharedWrites(_write_applied)
_finishes = _SharedWrites(_write_endings)
os.register_at_fork(after_in_child=_applies.forget_parent)
os.register_at_fork(after_in_child=_finishes.forget_parent)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def step_execute(
    step_id: int,
    *,
    dispatcher: Dispatcher,
    final_attempt: bool = True,
    worker: str | None = None,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> str:
    """Execute one step if it can be claimed; return the state it ended in, or "" when
    there was nothing to claim (done already, or alive in another worker).

    A retryable backend error puts the step back to pending and raises StepRetry, unless
    `final_attempt` (then the step fails, marked retryable for the commander). Exceptions
    in `time_limit_errors` (Celery's SoftTimeLimitExceeded) fail the step.
    """
    claim = claim_step(step_id, worker or worker_name())
    if claim is None:
        return ""
    return _execute_claimed(claim, dispatcher, final_attempt, time_limit_errors)


def steps_execute(
    step_ids: Iterable[int],
    *,
    dispatcher: Dispatcher,
    final_attempt: bool = False,
    worker: str | None = None,
    time_limit_errors: tuple[type[BaseException], ...] = (),
    on_retry: Callable[[Step, StepRetry], None] | None = None,
) -> dict[int, str | StepRetry]:
    """Execute several steps of a parallel group at once: claim the pending ones in one
    transaction (and take over stalled ones one by one), then run each on a thread of its
    own. Returns, per step it claimed, the state it ended in, or the StepRetry that put it
    back to pending. `on_retry(step, retry)` is called from the step's thread as soon as
    that happens, so a retry never waits for the rest of the batch (whose rollouts may take
    minutes) while the step's deadline runs.

    A group starts as one message and one claim instead of one of each per step: a burst of
    steps no longer waits for the worker to take its messages and claims one at a time.
    """
    worker = worker or worker_name()
    ids = list(dict.fromkeys(step_ids))
    claims = claim_pending(ids, worker, mark_apply=len(ids) > 1)
    claimed = {claim.step.pk for claim in claims}
    for step_id in ids:
        if step_id not in claimed and (taken := take_over(step_id, worker)) is not None:
            claims.append(taken)

    def execute(claim: Claim) -> str | StepRetry:
        try:
            return _execute_claimed(claim, dispatcher, final_attempt, time_limit_errors)
        except StepRetry as retry:
            if on_retry is not None:
                on_retry(claim.step, retry)
            return retry

    if len(claims) <= 1:
        return {claim.step.pk: execute(claim) for claim in claims}
    for claim in claims:  # beating already, while a step waits for a free thread
        heartbeats.register(claim.token, claim.step.pk, claim.step.deadline)
    pool = _step_thread_pool()
    outcomes = {claim.step.pk: pool.submit(_in_step_thread, execute, claim) for claim in claims}
    # The steps may take minutes: this thread needs no connection meanwhile (a pooled one
    # goes back to the pool for the step threads).
    connections.close_all()
    return {step_id: future.result() for step_id, future in outcomes.items()}


_step_pool_lock = threading.Lock()
_step_pool: tuple[int, ThreadPoolExecutor] | None = None


def _step_thread_pool() -> ThreadPoolExecutor:
    """This process's threads for steps_execute. They outlive a task, as Celery's own pool
    threads do, so a group does not start dozens of threads, and each keeps its reusable
    backends."""
    global _step_pool
    with _step_pool_lock:
        if _step_pool is None or _step_pool[0] != os.getpid():
            threads = ThreadPoolExecutor(
                max_workers=conf.step_threads(), thread_name_prefix="rollback-step"
            )
            _step_pool = (os.getpid(), threads)
        return _step_pool[1]


def _in_step_thread[R](function: Callable[[Claim], R], claim: Claim) -> R:
    try:
        return function(claim)
    finally:
        # An idle thread holds no connection (nor keeps a test database from being dropped).
        connections.close_all()


def _execute_claimed(
    claim: Claim,
    dispatch: Dispatcher,
    final_attempt: bool,
    time_limit_errors: tuple[type[BaseException], ...],
) -> str:
    """step_execute's work once the step is claimed."""
    step_id = claim.step.pk
    heartbeats.register(claim.token, step_id, claim.step.deadline)
    try:
        execution = _StepExecution(claim, dispatch, final_attempt)
        try:
            return execution.execute()
        except BackendError as error:
            execution.forget_unstarted_apply()
            retry_after = retry_after_hint(error)
            deadline_left = (execution.deadline - timezone.now()).total_seconds()
            attempts_left = not final_attempt and deadline_left > 0
            if error.retryable and attempts_left:
                execution.release_for_retry(error, retry_after)
                raise StepRetry(error, retry_after=retry_after) from error
            return execution.finish(StepState.FAILED, reason=str(error), retryable=error.retryable)
        except time_limit_errors:
            execution.forget_unstarted_apply()
            return execution.finish(
                StepState.FAILED,
                reason=f"the step ran past its time limit ({claim.step.timeout_seconds} s "
                "timeout plus margin) and was stopped",
                retryable=True,
            )
        except (StepRetry, OwnershipLost):
            raise
        except Exception as error:
            logger.exception("step %s failed with an unexpected error", step_id)
            execution.forget_unstarted_apply()
            return execution.finish(
                StepState.FAILED, reason=f"internal error: {error!r}", retryable=False
            )
    except OwnershipLost:
        logger.warning("step %s was taken over by another worker; this one stops", step_id)
        return ""
    finally:
        heartbeats.unregister(claim.token)


# -- recovery --------------------------------------------------------------------------------


def recover_stalled(*, dispatcher: Dispatcher) -> dict[str, int]:
    """Hand out work that a dead worker or a lost message left behind.

    Running steps whose heartbeat is older than ROLLBACK_STALE_AFTER_SECONDS go to a new
    delivery (which takes the claim over); running runs with no step running and no
    progress for as long get their pending steps dispatched again.
    """
    cutoff = timezone.now() - timedelta(seconds=conf.stale_after_seconds())
    stalled_steps = list(
        Step.objects.filter(state=StepState.RUNNING, heartbeat_at__lt=cutoff).only(
            "id", "timeout_seconds"
        )
    )
    if stalled_steps:
        with transaction.atomic():
            dispatcher.start_steps(stalled_steps)
    quiet_runs = (
        Run.objects.filter(state=RunState.RUNNING, started_at__lt=cutoff)
        .exclude(steps__state=StepState.RUNNING)
        .exclude(steps__finished_at__gte=cutoff)
        .exclude(steps__enqueued_at__gte=cutoff)
        .values_list("id", flat=True)
    )
    requeued = 0
    for run_id in list(quiet_runs):
        run_advance(run_id, dispatcher=dispatcher, requeue_pending=True)
        requeued += 1
    return {"steps": len(stalled_steps), "runs": requeued}


# -- running in this process -----------------------------------------------------------------


def _execute_with_retries(step_id: int, dispatcher: Dispatcher, retries: int, worker: str) -> str:
    try:
        for retries_done in range(retries + 1):
            try:
                return step_execute(
                    step_id,
                    final_attempt=retries_done >= retries,
                    dispatcher=dispatcher,
                    worker=worker,
                )
            except StepRetry as retry:
                delay = retry_delay(retries_done, retry_after=retry.retry_after)
                time.sleep(delay * random.uniform(0.8, 1.0) if not retry.retry_after else delay)
        return ""
    finally:
        close_old_connections()
        connections.close_all()


def _verify_in_thread(run_id: int, round_id: str) -> str:
    from rollbacks import verification

    try:
        return verification.verification_execute(run_id, round_id)
    finally:
        close_old_connections()
        connections.close_all()


def run_inline(
    run_id: int,
    *,
    max_workers: int = 16,
    retries: int | None = None,
    on_progress: Callable[[], None] | None = None,
    poll_seconds: float = 0.2,
) -> Run:
    """Execute a running run to its end in this process: parallel groups on a thread pool,
    groups in order, retryable errors retried with backoff. The emergency path that needs
    no Celery worker. Returns the run as it ended (or paused: someone paused it)."""
    dispatcher = InlineDispatcher()
    retries = conf.max_step_retries() if retries is None else retries
    worker = f"{worker_name()} (inline)"
    run_advance(run_id, dispatcher=dispatcher)
    futures: set[Future[str]] = set()
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rollback-step") as pool:
        while True:
            for step_id in dispatcher.take_steps():
                futures.add(
                    pool.submit(_execute_with_retries, step_id, dispatcher, retries, worker)
                )
            for verified_run, round_id in dispatcher.take_verifications():
                futures.add(pool.submit(_verify_in_thread, verified_run, round_id))
            if dispatcher.take_advance():
                run_advance(run_id, dispatcher=dispatcher)
                continue
            if not futures:
                break
            done, futures = _wait_some(futures, poll_seconds)
            for future in done:
                future.result()
            if on_progress is not None:
                on_progress()
    return Run.objects.get(pk=run_id)


def _wait_some(
    futures: set[Future[str]], timeout: float
) -> tuple[set[Future[str]], set[Future[str]]]:
    done, pending = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
    return set(done), set(pending)
