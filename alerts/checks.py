"""System check: the severities alerts map to exist."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from incidents.models import Severity


@register()
def alert_severities(app_configs: Any, **kwargs: Any) -> list[Error]:
    wrong = {
        key: value
        for key, value in {
            **settings.ALERT_SEVERITY_MAP,
            "(default)": settings.ALERT_DEFAULT_SEVERITY,
        }.items()
        if value not in Severity.values
    }
    return [
        Error(
            f"Alert severity {key!r} maps to {value!r}, which is not a severity",
            hint=f"Severities: {', '.join(Severity.values)}.",
            id="alerts.E001",
        )
        for key, value in wrong.items()
    ]
