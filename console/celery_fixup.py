"""Celery's Django fix-up, keeping each worker process's database connection pool between
tasks.

Celery 5.6's own fix-up closes the whole psycopg pool of a prefork process before and after
every task (celery/celery#10554, still open). Every rollback-step message then began with
no connection at all: each of its step threads opened a new PostgreSQL backend (a fork and
a cold catalog cache on the server), about 180 of them when ten runs started at once. Here
a task's boundaries hand the connections it used back to the pool instead, and the pool is
closed only where it must be: in a freshly forked pool process, whose pool (if any) belongs
to the parent.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

# celery-types' stubs predate DjangoWorkerFixup and install()'s return value.
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup  # type: ignore[attr-defined]


class PoolKeepingWorkerFixup(DjangoWorkerFixup):
    """DjangoWorkerFixup whose task boundaries return connections to the pool (as Django's
    request end does) rather than close the pool."""

    def close_database(self, **kwargs: Any) -> None:
        for connection in self._db.connections.all(initialized_only=True):
            try:
                connection.close()  # pooled: back to the pool; else closed
            except self.interface_errors:
                pass
            except self.DatabaseError as error:
                if "closed" not in str(error) and "not connected" not in str(error):
                    raise


class PoolKeepingDjangoFixup(DjangoFixup):
    """DjangoFixup with PoolKeepingWorkerFixup for the worker side."""

    @property
    def worker_fixup(self) -> DjangoWorkerFixup:
        if self._worker_fixup is None:  # type: ignore[has-type]
            self._worker_fixup = PoolKeepingWorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: DjangoWorkerFixup) -> None:
        self._worker_fixup = value


def fixup(app: Celery) -> PoolKeepingDjangoFixup | None:
    """Install the fix-up when Django settings are configured (as Celery's own does)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    installed = PoolKeepingDjangoFixup(app)
    installed.install()
    return installed  # Celery keeps it, and with it the receivers' weak references
