"""Executing several steps of a parallel group at once: `steps_execute(step_ids)`.

One transaction claims them all (and writes their "started" entries), then each runs on a
thread of this process's step pool, as `step_execute` (rollbacks.engine.execution) runs one.
The dispatcher hands a group out this way, in messages of ROLLBACK_STEPS_PER_MESSAGE steps,
so a large group starts at once instead of one message and one claim at a time. Safe to call
twice with the same ids.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

from rollbacks import conf
from rollbacks.engine.claims import Claim, claim_pending, take_over, worker_name
from rollbacks.engine.dispatch import Dispatcher
from rollbacks.engine.execution import execute_claimed
from rollbacks.engine.heartbeats import heartbeats
from rollbacks.engine.retries import StepRetry
from rollbacks.models import Step


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
            return execute_claimed(claim, dispatcher, final_attempt, time_limit_errors)
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
