"""What the incidents side tells other apps, sent after the transaction that did it commits.

Receivers (the status page's PagerDuty channel, say) connect in their AppConfig.ready();
nothing in incidents/ imports them. A receiver's error is logged and never reaches the
person who changed the incident.

Both signals send `incident_id` (an int): receivers load what they need themselves, from
the committed state.
"""

from __future__ import annotations

from django.dispatch import Signal

from console.signals import send_after_commit
from incidents.models import Incident

incident_resolved = Signal()
"""An incident was resolved. Keyword: incident_id."""

incident_reopened = Signal()
"""A resolved incident was opened again (back to investigating). Keyword: incident_id."""


def send_incident_resolved(incident: Incident) -> None:
    """Call in the transaction that resolved `incident`; receivers hear of it after commit."""
    send_after_commit(incident_resolved, Incident, incident_id=incident.pk)


def send_incident_reopened(incident: Incident) -> None:
    """Call in the transaction that reopened `incident`; receivers hear of it after commit."""
    send_after_commit(incident_reopened, Incident, incident_id=incident.pk)
