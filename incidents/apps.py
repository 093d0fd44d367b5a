from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def check_decision_thresholds(**kwargs: Any) -> list[checks.CheckMessage]:
    """A wrong DECISION_THRESHOLDS is reported when the console starts, not when a room
    first renders."""
    from incidents.decisions import thresholds

    try:
        thresholds()
    except (ImproperlyConfigured, TypeError, ValueError) as error:
        return [checks.Error(str(error), id="incidents.E001")]
    return []


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        checks.register(check_decision_thresholds)
