"""What alerts tell other apps, after commit: `alert_fired` (keywords: incident_id,
service_id) when a firing alert opened or joined an incident. The rollback automation
(rollbacks.automation) listens; nothing here imports it."""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

alert_fired = Signal()


def send_alert_fired(incident_id: int, service_id: int) -> None:
    def send() -> None:
        for receiver, outcome in alert_fired.send_robust(
            sender=None, incident_id=incident_id, service_id=service_id
        ):
            if isinstance(outcome, Exception):
                logger.error("%s failed for incident %s", receiver, incident_id, exc_info=outcome)

    transaction.on_commit(send, robust=True)
