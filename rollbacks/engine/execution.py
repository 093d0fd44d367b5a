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

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from executors.base import (
    Backend,
    BackendError,
    CheckResult,
    CheckStatus,
    DeadlineExceeded,
    RollbackTarget,
)
from incidents.models import TimelineKind
from incidents.timeline import timeline_append
from rollbacks import conf
from rollbacks.engine.advance import UNFINISHED_STATES, run_advance
from rollbacks.engine.backends import reusable_backend_for, target_for
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
)
from rollbacks.engine.entries import (
    ENGINE_ACTOR,
    describe_step,
    step_payload,
)
from rollbacks.engine.heartbeats import heartbeats
from rollbacks.engine.retries import StepRetry, retry_after_hint, retry_delay
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.engine.step_records import Applied, Ending, applies, finishes
from rollbacks.models import RunState, Step, StepState

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
        moment: see SharedWrites)."""
        applies.record(Applied(self, detail=detail, facts=facts, changed=changed))

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
        SharedWrites): each row is still written through its own claim-fenced UPDATE, without
        locking the run, so a group's steps finish side by side.
        """
        ending = Ending(
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
        finishes.record(ending)
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
