"""What each service runs now, asked of its infrastructure through its backend.

The plan builder shows it beside the previous and known-good releases, and a new plan
records it as each step's from-version. Services are asked in parallel on a small bounded
pool; nothing here touches the database, so a slow cloud API never holds a connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from executors.base import BackendError
from incidents.models import Service
from rollbacks import conf
from rollbacks.engine.backends import backend_for

MAX_PARALLEL_READS = 16
ERROR_MAX_CHARS = 300


def live_versions_read(
    services: Sequence[Service], *, timeout: float | Callable[[str], float] | None = None
) -> dict[int, tuple[str | None, str]]:
    """service id → (live version or None, why it is unknown), for each distinct service.

    Without `timeout` every read is waited for (a new plan records what each step
    replaces) and a backend error becomes the reason. With `timeout` (seconds, or a
    function of the backend kind giving them: the pages) any failure becomes the reason,
    named by its type, and a service still silent at its kind's limit gets "no answer in
    time" while its read is abandoned on its thread.
    """
    connections = conf.connections()
    unique = {service.pk: service for service in services}
    if not unique:
        return {}

    def read(service: Service) -> tuple[str | None, str]:
        if timeout is None:
            try:
                return backend_for(service, connections=connections).live_version(), ""
            except BackendError as error:
                return None, str(error)
        try:
            return backend_for(service, connections=connections).live_version(), ""
        except Exception as error:  # a page shows any backend failure, never raises it
            return None, f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS]

    if len(unique) == 1 and timeout is None:
        (service,) = unique.values()
        return {service.pk: read(service)}
    pool = ThreadPoolExecutor(
        max_workers=min(MAX_PARALLEL_READS, len(unique)), thread_name_prefix="live-version"
    )
    futures = {pool.submit(read, service): pk for pk, service in unique.items()}
    if timeout is None or not callable(timeout):
        done, late = wait(futures, timeout=timeout)
    else:
        started = time.monotonic()
        deadlines = {
            future: started + timeout(unique[pk].backend) for future, pk in futures.items()
        }
        done, late = wait_each(deadlines)
    answers = {futures[future]: future.result() for future in done}
    answers |= {futures[future]: (None, "no answer in time") for future in late}
    pool.shutdown(wait=False, cancel_futures=True)
    return answers


def wait_each[T](deadlines: dict[Future[T], float]) -> tuple[set[Future[T]], set[Future[T]]]:
    """Wait for each future until its own deadline (a monotonic instant): (done, late)."""
    pending = set(deadlines)
    done: set[Future[T]] = set()
    while pending:
        now = time.monotonic()
        late = {future for future in pending if deadlines[future] <= now}
        if late == pending:
            break
        soonest = min(deadlines[future] for future in pending - late)
        finished, _ = wait(pending - late, timeout=soonest - now, return_when=FIRST_COMPLETED)
        done |= finished
        pending -= finished
    done |= {future for future in pending if future.done()}
    return done, pending - done
