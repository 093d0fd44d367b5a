"""What the incidents side tells other apps, sent after the transaction that did it commits.

Receivers (the status page's PagerDuty channel, say) connect in their AppConfig.ready();
nothing in incidents/ imports them. A receiver's error is logged and never reaches the
person who changed the incident.

Both signals send `incident_id` (an int): receivers load what they need themselves, from
the committed state.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

from incidents.models import Incident

logger = logging.getLogger(__name__)

incident_resolved = Signal()
"""An incident was resolved. Keyword: incident_id."""

incident_reopened = Signal()
"""A resolved incident was opened again (back to investigating). Keyword: incident_id."""


def _send_after_commit(signal: Signal, incident: Incident) -> None:
    incident_id = incident.pk

    def send() -> None:
        for receiver, outcome in signal.send_robust(sender=Incident, incident_id=incident_id):
            if isinstance(outcome, Exception):
                logger.error("%s failed for incident %s", receiver, incident_id, exc_info=outcome)

    transaction.on_commit(send, robust=True)


def send_incident_resolved(incident: Incident) -> None:
    """Call in the transaction that resolved `incident`; receivers hear of it after commit."""
    _send_after_commit(incident_resolved, incident)


def send_incident_reopened(incident: Incident) -> None:
    """Call in the transaction that reopened `incident`; receivers hear of it after commit."""
    _send_after_commit(incident_reopened, incident)
