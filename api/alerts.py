"""Alerts in over the API: Alertmanager's webhook (`webhook_configs` with
`http_config.authorization.credentials` set to a token with the alerts:write scope), and
Grafana's contact point of type webhook, which sends the same shape. alerts.services says
what a notification does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema

from alerts.services import IncomingAlert, notification_receive
from api.auth import scope
from api.models import ALERTS_WRITE
from api.schemas import ERRORS
from api.validation import InputError
from incidents.roles import require_role

router = Router(tags=["alerts"])
VERSIONS = {"4", "1"}  # Alertmanager's, and Grafana's webhook
TEXT_MAX = 10_000


class AlertIn(Schema):
    status: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815  (Alertmanager's names)
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""


class NotificationIn(Schema):
    version: str = Field(description="4 (Alertmanager) or 1 (Grafana)")
    status: str
    receiver: str = ""
    groupKey: str = ""  # noqa: N815
    alerts: list[AlertIn]


class NotificationOut(Schema):
    duplicate: bool
    opened: list[int] = Field(description="Incidents opened")
    joined: list[int] = Field(description="Open incidents the alerts joined")
    resolved: list[str]
    unmatched: list[str] = Field(description="Alerts naming no known service")


def aware(moment: datetime) -> datetime:
    """Alertmanager always sends an offset; a time without one is taken as UTC."""
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def checked(index: int, alert: AlertIn) -> IncomingAlert:
    where = f"alerts.{index}"
    if alert.status not in ("firing", "resolved"):
        raise InputError({f"{where}.status": ["Must be firing or resolved."]})
    texts = [*alert.labels.items(), *alert.annotations.items()]
    if any(len(key) + len(value) > TEXT_MAX for key, value in texts):
        raise InputError({where: [f"A label or annotation is over {TEXT_MAX} characters."]})
    if any("\x00" in key + value for key, value in texts):
        raise InputError({where: ["Null characters are not allowed."]})
    ends = alert.endsAt if alert.endsAt is not None and alert.endsAt.year > 1970 else None
    return IncomingAlert(
        status=alert.status,
        labels=alert.labels,
        annotations=alert.annotations,
        starts_at=aware(alert.startsAt),
        ends_at=aware(ends) if ends is not None else None,
        generator_url=alert.generatorURL,
        fingerprint=alert.fingerprint,
    )


@router.post(
    "/alerts/alertmanager",
    response={200: NotificationOut, **ERRORS},
    auth=scope(ALERTS_WRITE),
)
def alertmanager(request: HttpRequest, payload: NotificationIn) -> dict[str, Any]:
    """A webhook notification. Alerts naming a service open an incident or join the open
    one; resolved alerts are recorded on it. The same notification twice counts once."""
    # Checked at each call too: the owner's roles may have changed since the token was made.
    require_role(request.user, "incidents.add_incident", "send alerts (they open incidents)")
    if payload.version not in VERSIONS:
        raise InputError({"version": [f"Version {payload.version[:20]!r} is not 4 (or 1)."]})
    if payload.status not in ("firing", "resolved"):
        raise InputError({"status": ["Must be firing or resolved."]})
    alerts = [checked(index, alert) for index, alert in enumerate(payload.alerts)]
    token: Any = request.auth  # type: ignore[attr-defined]
    outcome = notification_receive(
        body=request.body,
        status=payload.status,
        receiver=payload.receiver,
        group_key=payload.groupKey,
        alerts=alerts,
        token_prefix=token.prefix,
    )
    return {
        "duplicate": outcome.duplicate,
        "opened": outcome.opened,
        "joined": sorted(set(outcome.joined)),
        "resolved": outcome.resolved,
        "unmatched": outcome.unmatched,
    }
