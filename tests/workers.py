"""What each pytest-xdist worker needs of its own when bin/test runs the suite in several
processes (`-n 2`): Redis databases and the names of scratch PostgreSQL databases. The test
database itself is pytest-django's business (it appends the worker's name).

The first worker (and a run without xdist) keeps the numbers and names the settings give;
worker N moves each Redis database 9×N lower (15, 14, 13, 11, 10 become 6, 5, 4, 2, 1 for the
second), which leaves database 0, a console's or a demo's, alone. That fits the 16 databases
a default Redis has for two workers.
"""

from __future__ import annotations

import os

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SHIFT = 9


def worker_index() -> int:
    """0 for the first xdist worker or a run without xdist, N for worker gwN."""
    return int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0


def own_redis_url(url: str) -> str:
    """`url` with its database number moved for this worker."""
    index = worker_index()
    if not index:
        return url
    base, _, number = url.rpartition("/")
    moved = int(number) - _SHIFT * index
    if moved < 1:
        raise RuntimeError(
            f"Redis database {number} has no free counterpart for xdist worker {WORKER}: "
            "run at most two workers, or give higher database numbers"
        )
    return f"{base}/{moved}"


def own_name(name: str) -> str:
    """A scratch database or folder name, suffixed with the worker's name past the first."""
    return f"{name}_{WORKER}" if worker_index() else name
