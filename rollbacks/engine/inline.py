"""Executing a run in this process, with no Celery worker: the terminal command's path
(`manage.py rollback`), for when the workers or their broker may be what is broken.

The same claims, records and verification as the workers', through an InlineDispatcher
that collects the work the engine hands out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from django.db import close_old_connections, connections

from rollbacks import conf
from rollbacks.engine.advance import run_advance
from rollbacks.engine.claims import worker_name
from rollbacks.engine.dispatch import Dispatcher, InlineDispatcher
from rollbacks.engine.execution import step_execute
from rollbacks.engine.retries import StepRetry, retry_delay
from rollbacks.models import Run
from rollbacks.verification import verification_execute


def _execute_with_retries(step_id: int, dispatcher: Dispatcher, retries: int, worker: str) -> str:
    """Execute a step, retrying it after a retryable error as the Celery task would."""
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
    try:
        return verification_execute(run_id, round_id)
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
