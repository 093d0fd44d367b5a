import os
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def check_decision_thresholds(**kwargs: Any) -> list[checks.CheckMessage]:
    """A wrong DECISION_THRESHOLDS is reported when the console starts, not when a room
    first renders."""
    from incidents.decisions.rules import thresholds

    try:
        thresholds()
    except (ImproperlyConfigured, TypeError, ValueError) as error:
        return [checks.Error(str(error), id="incidents.E001")]
    return []


_inherited_pools: list[dict[str, Any]] = []


def forget_inherited_connection_pools() -> None:
    """In a forked child (a Celery prefork child started after the worker's main process
    used the database): the connection pools it inherited hold the parent's sockets.
    Closing them here would end the parent's sessions, so they are set aside, kept from
    being closed or collected, and the child opens pools of its own."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools: dict[str, Any] = DatabaseWrapper._connection_pools  # type: ignore[attr-defined]
    _inherited_pools.append(dict(pools))
    pools.clear()


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        checks.register(check_decision_thresholds)
        os.register_at_fork(after_in_child=forget_inherited_connection_pools)
