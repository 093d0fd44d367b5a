"""Settings for the bench's Celery worker: the console's, with the Kubernetes poll interval
the bench gives both of its paths (BENCH_POLL_SECONDS), and a trace of the worker's HTTP
requests (the instant each leaves for the API) pushed to Redis under BENCH_TRACE_KEY."""

import collections
import json
import os
import threading
import time
from typing import Any

import redis
import urllib3

from console.settings import *  # noqa: F403

# Measure what production runs: with DEBUG on, Django also records every SQL query.
DEBUG = False

ROLLBACK_STEPS_PER_MESSAGE = int(os.environ.get("BENCH_STEPS_PER_MESSAGE", "25"))

ROLLBACK_BACKEND_OPTIONS = {
    "kubernetes": {"poll_interval": float(os.environ.get("BENCH_POLL_SECONDS", "0.25"))}
}

_TRACE_KEY = os.environ.get("BENCH_TRACE_KEY", "")
if _TRACE_KEY:
    # Noting a request costs the worker a list append; a thread of its own sends the notes
    # to Redis every 0.1 s, so the trace does not slow the engine it measures (the direct
    # path has no trace to pay for).
    _trace = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    _noted: collections.deque[tuple[float, str, str]] = collections.deque()
    _urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def _traced_urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        _noted.append((time.time(), method, url))
        return _urlopen(self, method, url, *args, **kwargs)

    def _send_notes() -> None:
        while True:
            time.sleep(0.1)
            batch = [_noted.popleft() for _ in range(len(_noted))]
            if batch:
                _trace.rpush(_TRACE_KEY, *(json.dumps(note) for note in batch))

    threading.Thread(target=_send_notes, name="bench-trace", daemon=True).start()
    urllib3.connectionpool.HTTPConnectionPool.urlopen = _traced_urlopen  # type: ignore[method-assign]
