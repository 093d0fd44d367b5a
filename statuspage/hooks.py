"""What the status page does when told: a rollback run that starts or finishes gets an
internal notice, and a delivery that is due goes to the Celery task that sends it. Loaded by
StatuspageConfig.ready(), which connects these receivers.

Communications never hold up or break a rollback: the receiver only enqueues (the notice's
queries and rendering used to delay the steps a started run sends out), and any error is
logged, not raised (the beat sweep writes a notice that was missed)."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from incidents.signals import incident_resolved
from rollbacks.signals import run_finished, run_started
from statuspage.comms import delivery_due
from statuspage.pagerduty_incident import incident_resolved_notice
from statuspage.tasks import notice_deliver, run_notice

logger = logging.getLogger(__name__)


def _enqueue_notice(run_id: int, event: str) -> None:
    try:
        run_notice.delay(run_id, event)
    except Exception:
        logger.exception("could not hand out the %s notice of run %s", event, run_id)


@receiver(run_started, dispatch_uid="statuspage.run_started_notice")
def notice_run_started(*, run_id: int, **kwargs: Any) -> None:
    """Enqueue the "rollback started" notice."""
    _enqueue_notice(run_id, "started")


@receiver(run_finished, dispatch_uid="statuspage.run_finished_notice")
def notice_run_finished(*, run_id: int, **kwargs: Any) -> None:
    """Enqueue the "rollback finished" notice."""
    _enqueue_notice(run_id, "finished")


@receiver(delivery_due, dispatch_uid="statuspage.delivery_due")
def delivery_enqueue(*, delivery_id: int, **kwargs: Any) -> None:
    """Hand a due delivery to Celery; an error (the broker is down) goes back to the sender,
    which logs it and leaves the delivery to the sweep."""
    notice_deliver.delay(delivery_id)


@receiver(incident_resolved, dispatch_uid="statuspage.incident_resolved_pagerduty")
def pagerduty_incident_resolved(*, incident_id: int, **kwargs: Any) -> None:
    """Resolve the incident's PagerDuty alert if a trigger of it went out."""
    try:
        incident_resolved_notice(incident_id=incident_id)
    except Exception:
        logger.exception("could not write the PagerDuty resolve of incident %s", incident_id)
