"""Executing a step: `step_execute(step_id)`, and one worker's turn at a claimed step.

`step_execute` claims a pending step with a conditional UPDATE (a second delivery finds
nothing to claim), or takes over one whose worker stopped beating (rollbacks.engine.claims);
it is idempotent and safe to call twice with the same id. The step is applied unless
`applied_at` says an earlier delivery already did; then the engine waits for the
infrastructure to settle before the step's deadline while streaming log lines into StepLog,
runs the backend's checks, records the outcome, and asks for the run to advance. A
retryable backend error puts the step back to pending for a retry (rollbacks.engine.retries);
any other error fails it.

Every write after the claim goes through the claim's fence (rollbacks.engine.claims); what
the step records is written with its siblings' in shared transactions
(rollbacks.engine.step_records). A step that loses its claim to another worker stops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from executors.base import (
    Backend,
    BackendError,
    CheckResult,
    CheckStatus,
    DeadlineExceeded,
    RollbackTarget,
    internal_error,
)
from incidents.models import Incident, TimelineKind
from incidents.timeline import timeline_append
from rollbacks.engine.advance import UNFINISHED_STATES, run_advance
from rollbacks.engine.backends import reusable_backend_for, target_for
from rollbacks.engine.claims import (
    Claim,
    OwnershipLost,
    claim_step,
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
from rollbacks.engine.step_logs import LOG_RETRY_SECONDS, StepLogWriter, release_connections
from rollbacks.engine.step_records import Applied, Ending, applies, finishes
from rollbacks.models import RunState, Step, StepState

logger = logging.getLogger(__name__)

# How long a step's thread waits, as it ends, for the log flusher to store its last lines.
_LOG_SETTLE_SECONDS = 5.0


# -- executing a step ------------------------------------------------------------------------


class StepExecution:
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
            self.step, token=claim.token, first=self.step.attempts == 1 and not claim.resumed
        )
        assert self.step.deadline is not None
        self.deadline = self.step.deadline

    @property
    def incident(self) -> Incident:
        """The step's incident, as loaded with the claim."""
        return self.step.run.incident

    def log(self, line: str) -> None:
        """A progress line for the step's log."""
        self.log_writer(line)

    def monotonic_deadline(self) -> float:
        """The step's deadline on this process's monotonic clock, for the backend's wait."""
        remaining = (self.deadline - timezone.now()).total_seconds()
        return time.monotonic() + remaining

    def execute(self) -> str:
        """Carry the step to its end; return the state it ended in."""
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
            self.apply(backend, target)
        else:
            self.log(f"already applied at {step.applied_at:%H:%M:%S}; waiting for it to settle")
        return self.settle_and_check(backend, target)

    def apply(self, backend: Backend, target: RollbackTarget) -> None:
        """Apply the step, recording first that an apply began (unless the claim did) and
        afterwards that it is done."""
        step = self.step
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

    def settle_and_check(self, backend: Backend, target: RollbackTarget) -> str:
        """Wait for the change to settle, run the backend's checks, and finish the step
        with their outcome and the live version it reached. The backend is told when the
        apply began (`rollout_since`), so it can tell its own rollout's state from one an
        earlier rollout left (a deadline exceeded before this rollback)."""
        began = self.step.apply_started_at
        if began is not None:
            target = replace(target, params={**target.params, "rollout_since": began.isoformat()})
        backend.wait(target, deadline=self.monotonic_deadline(), log=self.log_writer)
        # The settled line goes with the outcome's entry; the log line itself is stored by
        # the process's log flusher (rollbacks.engine.step_logs), with other steps' lines.
        settled = self.log_writer.last_line
        results = backend.checks(target)
        reached = self.live_version(backend)
        failed = [result for result in results if result.status == CheckStatus.FAILED]
        if failed:
            reason = "verification failed: " + "; ".join(
                f"{result.name}: {result.detail}" for result in failed
            )
            return self.finish(
                StepState.FAILED, reason=reason, checks=results, reached=reached, retryable=False
            )
        return self.finish(StepState.SUCCEEDED, checks=results, reached=reached, settled=settled)

    def live_version(self, backend: Backend) -> str:
        """What the service runs now, or "" (logged) when the backend cannot say."""
        try:
            return backend.live_version() or ""
        except BackendError as error:
            self.log(f"could not read the live version after the rollback: {error}")
            return ""

    def plan_only(self, backend: Backend, target: RollbackTarget) -> str:
        """A dry run's step: log and record what the backend would change, change nothing."""
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

    def forget_unstarted_apply(self) -> None:
        """Clear the apply start the claim recorded when this attempt ends before applying
        (its deadline passed in the queue, the backend could not be built): a later attempt
        must not take the step for one that may have applied."""
        if self.apply_marked and not self.apply_called:
            self.claim.update(apply_started_at=None)
            self.apply_marked = False

    def record_applied(self, detail: str, facts: dict[str, Any], changed: bool) -> None:
        """Record the apply and its timeline entry (with other steps applying at the same
        moment: see rollbacks.engine.shared_writes)."""
        applies.record(Applied(self, detail=detail, facts=facts, changed=changed))

    def release_for_retry(self, error: BackendError, retry_after: float | None) -> None:
        """Put the step back to pending after a retryable error; the task retries it."""
        # The log flusher stores a step's lines only under its claim, which ends here: wait
        # as long as it keeps them through a database outage (the release needs it too).
        if not self.log_writer.settle(LOG_RETRY_SECONDS + _LOG_SETTLE_SECONDS, closing=True):
            logger.warning("step %s released with log lines not stored", self.step.pk)
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
        rollbacks.engine.shared_writes): each row is still fenced by its own claim
        (rollbacks.engine.claims.update_claimed), without locking the run, so a group's
        steps finish side by side.
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
        if ending.asks_for_group:
            _advance_if_group_done(self.step, self.dispatcher)
        return state


def _advance_if_group_done(step: Step, dispatcher: Dispatcher) -> None:
    """Advance the step's run if its group has no unfinished step left."""
    try:
        group_done = not Step.objects.filter(
            run_id=step.run_id, group=step.group, state__in=UNFINISHED_STATES
        ).exists()
        if group_done:
            run_advance(step.run_id, dispatcher=dispatcher)
    except Exception:
        # The outcome is committed: this is the run's business now, not the step's.
        logger.exception("run %s not advanced after step %s; queueing it", step.run_id, step.pk)
        try:
            dispatcher.advance_run(step.run_id)
        except Exception:  # the recovery sweep advances a quiet run
            logger.exception("run %s could not be queued for advancing", step.run_id)


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
    return execute_claimed(claim, dispatcher, final_attempt, time_limit_errors)


def execute_claimed(
    claim: Claim,
    dispatcher: Dispatcher,
    final_attempt: bool,
    time_limit_errors: tuple[type[BaseException], ...],
) -> str:
    """Execute a claimed step (step_execute's, or steps_execute's); return the state it ended in,
    or "" when another worker took it over meanwhile.

    A retryable backend error puts the step back to pending and raises StepRetry, unless
    `final_attempt` or the deadline has passed (then the step fails, marked retryable for
    the commander). Exceptions in `time_limit_errors` fail the step as retryable; any other
    error fails it.
    """
    step_id = claim.step.pk
    heartbeats.register(claim.token, step_id, claim.step.deadline)
    execution: StepExecution | None = None
    try:
        execution = StepExecution(claim, dispatcher, final_attempt)
        try:
            return execution.execute()
        except BackendError as error:
            return _backend_failure(execution, error)
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
            return execution.finish(StepState.FAILED, reason=internal_error(error), retryable=False)
    except OwnershipLost:
        logger.warning("step %s was taken over by another worker; this one stops", step_id)
        return ""
    finally:
        heartbeats.unregister(claim.token)
        if execution is not None:
            settle_logs(execution.log_writer)


def settle_logs(writer: StepLogWriter) -> None:
    """Wait for the flusher to store a finished step's last lines; a pooled connection
    goes back to the pool meanwhile, for the steps still running."""
    if writer.settle(0.0):
        return
    if not transaction.get_connection().in_atomic_block:
        release_connections()
    if not writer.settle(_LOG_SETTLE_SECONDS):
        logger.warning("step %s ended with log lines not stored yet", writer.step_id)


def _backend_failure(execution: StepExecution, error: BackendError) -> str:
    """Put the step back for a retry (raising StepRetry) when the error is retryable and
    attempts and time are left; else fail it."""
    execution.forget_unstarted_apply()
    retry_after = retry_after_hint(error)
    deadline_left = (execution.deadline - timezone.now()).total_seconds()
    attempts_left = not execution.final_attempt and deadline_left > 0
    if error.retryable and attempts_left:
        execution.release_for_retry(error, retry_after)
        raise StepRetry(error, retry_after=retry_after) from error
    return execution.finish(StepState.FAILED, reason=str(error), retryable=error.retryable)
