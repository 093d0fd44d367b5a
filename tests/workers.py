"""What each pytest-xdist worker needs of its own when bin/test runs the suite in several
processes (`-n 2`): Redis databases and the names of scratch PostgreSQL databases. The test
database itself is pytest-django's business (it appends the worker's name).

The first worker (and a run without xdist) keeps the numbers and names the settings give.
The second moves the tests' default Redis databases (10, 11, 13, 14, 15) to 5 to 9, which
leaves 0 to 4 to consoles and demos on the same Redis (the README runs a second demo on 2);
any other number N (TEST_REDIS_URL and friends set by hand) becomes N + 16 per worker, so
such a Redis needs that many databases.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# Where the second worker keeps the default test databases of tests/conftest.py and friends.
_SECOND_WORKER = {10: 5, 11: 6, 13: 7, 14: 8, 15: 9}


def worker_index() -> int:
    """0 for the first xdist worker or a run without xdist, N for worker gwN."""
    return int(WORKER[2:]) if WORKER.startswith("gw") and WORKER[2:].isdigit() else 0


def own_redis_url(url: str) -> str:
    """`url` with its database number (the path; 0 when it has none) moved for this worker."""
    index = worker_index()
    if not index:
        return url
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    if index == 1 and number in _SECOND_WORKER:
        moved = _SECOND_WORKER[number]
    else:
        moved = number + 16 * index
    return urlunsplit(parts._replace(path=f"/{moved}"))


def own_name(name: str) -> str:
    """A scratch database or folder name, suffixed with the worker's name past the first."""
    return f"{name}_{WORKER}" if worker_index() else name
