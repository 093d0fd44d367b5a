"""What alerts tell other apps, after commit: `alert_fired` (keywords: incident_id,
service_id) when a firing alert opened or joined an incident. The rollback automation
(rollbacks.automation) listens; nothing here imports it."""

from __future__ import annotations

from django.dispatch import Signal

from console.signals import send_after_commit

alert_fired = Signal()


def send_alert_fired(incident_id: int, service_id: int) -> None:
    """Call in the transaction that opened or joined the incident; receivers hear of it
    after commit."""
    send_after_commit(alert_fired, None, incident_id=incident_id, service_id=service_id)
