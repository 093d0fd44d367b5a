"""A worker process keeps its database connection pool from one task to the next: the
connections a task used go back to the pool at its boundaries, and the next task's threads
take them from there instead of opening new PostgreSQL backends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection

from console.celery import app
from console.celery_fixup import PoolKeepingDjangoFixup, PoolKeepingWorkerFixup

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def task_boundary(fixup: PoolKeepingWorkerFixup) -> None:
    """What Celery calls around a task that is not run eagerly."""
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    fixup.on_task_postrun(sender=task)
    fixup.on_task_prerun(sender=task)


def test_the_console_app_installs_the_pool_keeping_fixup():
    assert any(isinstance(installed, PoolKeepingDjangoFixup) for installed in app._fixups)
    fixup = next(f for f in app._fixups if isinstance(f, PoolKeepingDjangoFixup))
    assert isinstance(fixup.worker_fixup, PoolKeepingWorkerFixup)


@pytest.fixture
def prefork_fixup() -> PoolKeepingWorkerFixup:
    """The worker side of the fix-up as in a prefork pool process, with a pooled connection
    open."""
    if connection.pool is None:
        pytest.skip("DATABASE_POOL_MAX_SIZE=0: no pool")
    fixup = PoolKeepingWorkerFixup(app)
    fixup.worker = SimpleNamespace(pool_cls="celery.concurrency.prefork:TaskPool")
    backend_pid()
    return fixup


def test_a_task_boundary_returns_the_connection_and_keeps_the_pool(prefork_fixup):
    fixup = prefork_fixup
    pool = connection.pool
    opened = pool.get_stats().get("connections_num", 0)
    for _ in range(3):
        task_boundary(fixup)
        assert connection.connection is None  # handed back to the pool
        assert connection.pool is pool and not pool.closed
        backend_pid()
    assert pool.get_stats().get("connections_num", 0) == opened  # none opened since


def test_a_freshly_forked_pool_process_still_closes_the_pool_it_inherited(prefork_fixup):
    inherited = connection.pool

    prefork_fixup.on_worker_process_init()

    assert inherited.closed
    assert connection.pool is not inherited
    backend_pid()  # a pool of its own, working
