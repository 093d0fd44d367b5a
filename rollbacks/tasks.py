"""Celery tasks for rollback runs: thin wrappers that load by id and call the engine.

The tasks are safe to deliver twice (acks late, requeued when a worker dies): the engine
claims a step with a conditional UPDATE and never applies a step whose `applied_at` is set.
Each worker also runs a small recovery loop (see `start_recovery_loop`) that hands steps
left behind by a dead worker to a new delivery within ROLLBACK_STALE_AFTER_SECONDS, rather
than after the broker's visibility timeout (hours).

`CeleryDispatcher` is how the engine's work becomes these tasks' messages: the engine takes
a dispatcher from its caller, so it needs to know nothing of Celery.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_ready, worker_shutdown
from django.db import connections, transaction

from console.celery import app
from rollbacks import conf, release_tracking, verification, watch
from rollbacks.engine import advance, backends, batches, execution, recovery
from rollbacks.engine.dispatch import HARD_LIMIT_MARGIN_SECONDS, SOFT_LIMIT_MARGIN_SECONDS
from rollbacks.engine.retries import StepRetry, retry_delay
from rollbacks.models import Step
from rollbacks.reminders import reminders_send

logger = logging.getLogger(__name__)
_recovery_stop = threading.Event()


@app.task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_advance(run_id: int) -> None:
    """Start the next steps of a running run, or finish it."""
    advance.run_advance(run_id, dispatcher=CeleryDispatcher())


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(StepRetry,),
    retry_backoff=max(1, round(conf.retry_backoff_seconds())),
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=conf.max_step_retries(),
)
def step_execute(self: Any, step_id: int) -> None:
    """Execute one step; a retryable backend error is retried with backoff (or after the
    server's Retry-After), up to max_retries, then fails the step as retryable."""
    try:
        execution.step_execute(
            step_id,
            dispatcher=CeleryDispatcher(),
            final_attempt=self.request.retries >= self.max_retries,
            worker=self.request.hostname or None,
            time_limit_errors=(SoftTimeLimitExceeded,),
        )
    except StepRetry as retry:
        if retry.retry_after:
            countdown = retry_delay(self.request.retries, retry_after=retry.retry_after)
            raise self.retry(exc=retry, countdown=countdown) from retry
        raise


@app.task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def steps_execute(step_ids: list[int]) -> None:
    """Execute several steps of a parallel group at once, a thread each. A step that hits
    a retryable error goes back to the queue on its own, as step_execute's first retry."""
    dispatcher = CeleryDispatcher()

    def retry(step: Step, outcome: StepRetry) -> None:
        delay = retry_delay(0, retry_after=outcome.retry_after)
        if not outcome.retry_after:
            delay *= random.uniform(0.5, 1.0)  # a group's retries do not return at once
        dispatcher.retry_step(step, delay=delay)

    batches.steps_execute(
        step_ids,
        dispatcher=dispatcher,
        final_attempt=conf.max_step_retries() <= 0,
        worker=steps_execute.request.hostname or None,
        time_limit_errors=(SoftTimeLimitExceeded,),
        on_retry=retry,
    )


@app.task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_verify(run_id: int, round_id: str) -> None:
    """Run a verification round of a run whose steps are done, and conclude it."""
    verification.verification_execute(run_id, round_id)


@app.task(ignore_result=True)
def reminders_sweep() -> None:
    """Every ROLLBACK_REMINDER_SWEEP_SECONDS (Celery beat): reminders that are due."""
    reminders_send()


@app.task(ignore_result=True)
def releases_track() -> None:
    """Every RELEASE_TRACK_SECONDS (Celery beat): record live versions nobody registered,
    and promote releases that earned known-good (rollbacks.release_tracking)."""
    report = release_tracking.releases_track()
    if report.seen or report.promoted:
        logger.info("release tracking: seen %s, promoted %s", report.seen, report.promoted)


@app.task(ignore_result=True)
def watches_sweep() -> None:
    """Every ROLLBACK_WATCH_SWEEP_SECONDS (Celery beat): the watch rounds that are due."""
    states = watch.watches_sweep()
    if states:
        logger.info("watch rounds: %s", states)


@app.task(acks_late=True, ignore_result=True)
def steps_recover() -> None:
    """Hand out steps and runs a dead worker or a lost message left behind."""
    found = recovery.recover_stalled(dispatcher=CeleryDispatcher())
    if any(found.values()):
        logger.warning("recovered stalled rollback work: %s", found)


# -- dispatching -----------------------------------------------------------------------------


def _send_on_commit(task: Any, args: tuple[Any, ...], options: dict[str, Any]) -> None:
    """Send `task` after the commit. A send that fails (the broker is down) is logged, not
    raised: the run is committed as running, its steps stay pending and the recovery sweep
    sends them again (rollbacks.engine.recovery), and the commit hooks added after this one
    (the run_started receivers) still run."""

    def send() -> None:
        try:
            task.apply_async(args, **options)
        except Exception:
            logger.exception(
                "could not send %s%r; the recovery sweep sends the steps again", task.name, args
            )

    transaction.on_commit(send)


class CeleryDispatcher:
    """The engine's dispatcher outside `run_inline`. Enqueues these tasks after commit: a
    step alone as step_execute, several as steps_execute (in messages of
    conf.steps_per_message() steps), with time limits; run_advance and run_verify by id."""

    @property
    def runs_elsewhere(self) -> bool:
        """Whether what it sends runs in a worker later, rather than inside the send (Celery's
        eager mode, CELERY_TASK_ALWAYS_EAGER)."""
        return not app.conf.task_always_eager

    def start_steps(self, steps: Iterable[Step]) -> None:
        steps = list(steps)
        size = conf.steps_per_message()
        for chunk in (steps[at : at + size] for at in range(0, len(steps), size)):
            timeout = max(step.timeout_seconds for step in chunk)
            limits = {
                "soft_time_limit": timeout + SOFT_LIMIT_MARGIN_SECONDS,
                "time_limit": timeout + HARD_LIMIT_MARGIN_SECONDS,
            }
            if len(chunk) == 1:
                _send_on_commit(step_execute, (chunk[0].pk,), limits)
            else:
                _send_on_commit(steps_execute, ([step.pk for step in chunk],), limits)

    def retry_step(self, step: Step, *, delay: float) -> None:
        """Deliver a step of a steps_execute message again in `delay` seconds, counted as
        its first automatic retry (step_execute retries it further, up to max_retries)."""
        options: dict[str, Any] = {
            "countdown": delay,
            "retries": 1,  # Celery's own count, which step_execute's max_retries reads
            "soft_time_limit": step.timeout_seconds + SOFT_LIMIT_MARGIN_SECONDS,
            "time_limit": step.timeout_seconds + HARD_LIMIT_MARGIN_SECONDS,
        }
        step_execute.apply_async((step.pk,), **options)

    def advance_run(self, run_id: int) -> None:
        run_advance.delay_on_commit(run_id)  # type: ignore[attr-defined]

    def verify_run(self, run_id: int, round_id: str) -> None:
        budget = round(conf.verify_timeout_seconds())
        run_verify.apply_async_on_commit(  # type: ignore[attr-defined]
            (run_id, round_id),
            soft_time_limit=budget + SOFT_LIMIT_MARGIN_SECONDS,
            time_limit=budget + HARD_LIMIT_MARGIN_SECONDS,
        )


# -- recovery --------------------------------------------------------------------------------


def _recovery_loop(interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            found = recovery.recover_stalled(dispatcher=CeleryDispatcher())
            if any(found.values()):
                logger.warning("recovered stalled rollback work: %s", found)
        except Exception:
            logger.warning("rollback recovery sweep failed", exc_info=True)
        finally:
            connections.close_all()


def start_recovery_loop() -> threading.Thread | None:
    """Sweep for stalled work every ROLLBACK_RECOVERY_INTERVAL_SECONDS (0 turns it off)."""
    interval = conf.recovery_interval_seconds()
    if interval <= 0:
        return None
    _recovery_stop.clear()
    thread = threading.Thread(
        target=_recovery_loop,
        args=(interval, _recovery_stop),
        name="rollback-recovery",
        daemon=True,
    )
    thread.start()
    return thread


@worker_init.connect
def _on_worker_init(**kwargs: Any) -> None:
    # Before the pool starts: prefork children inherit the loaded backends.
    backends.warm_up()


@worker_ready.connect
def _on_worker_ready(**kwargs: Any) -> None:
    start_recovery_loop()


@worker_shutdown.connect
def _on_worker_shutdown(**kwargs: Any) -> None:
    _recovery_stop.set()
