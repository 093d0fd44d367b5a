"""Connection pools across a fork: a Celery prefork child started after the worker's
main process used the database must not end the parent's sessions."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The child only drops a pool and exits: none of the parent's threads is needed there.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_forked_child_leaves_the_parents_pooled_connections_open() -> None:
    if not connection.pool:
        pytest.skip("DATABASE_POOL_MAX_SIZE=0: no pool")
    before = _backend_pid()
    connection.close()  # back to the pool, which the child inherits with its socket

    child = os.fork()
    if child == 0:  # the child does what Celery's fixup does when a process starts
        try:
            connection.close_pool()
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    time.sleep(0.3)  # a session told to end by the child would be gone by now

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [before])
        assert cursor.fetchone()[0] == 1
