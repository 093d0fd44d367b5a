"""What each service runs now, asked of its infrastructure through its backend.

The plan builder shows it beside the previous and known-good releases, and a new plan
records it as each step's from-version. Services are asked in parallel on a small bounded
pool; nothing here touches the database, so a slow cloud API never holds a connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from executors.base import BackendError
from incidents.models import Service
from rollbacks import conf
from rollbacks.engine.backends import backend_for

MAX_PARALLEL_READS = 16
ERROR_MAX_CHARS = 300


def live_versions_read(
    services: Sequence[Service], *, timeout: float | None = None
) -> dict[int, tuple[str | None, str]]:
    """service id → (live version or None, why it is unknown), for each distinct service.

    Without `timeout` every read is waited for (a new plan records what each step
    replaces) and a backend error becomes the reason. With `timeout` (seconds: the pages)
    any failure becomes the reason, named by its type, and a service still silent then
    gets "no answer in time" while its read is abandoned on its thread.
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
    done, late = wait(futures, timeout=timeout)
    answers = {futures[future]: future.result() for future in done}
    answers |= {futures[future]: (None, "no answer in time") for future in late}
    pool.shutdown(wait=False, cancel_futures=True)
    return answers
