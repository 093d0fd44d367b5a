"""Receivers that hand the page's subscriber emails to Celery (loaded by
StatuspageConfig.ready(), beside statuspage.hooks).

A published update with "notify subscribers" is fanned out by a task (the publishing request
does not wait for thousands of rows); if the broker is down, the fan-out happens here
instead, and its messages wait for the sweep. Nothing here raises into the publisher."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from statuspage import subscriber_sending
from statuspage.models import MaintenanceUpdate, Revision
from statuspage.signals import maintenance_update_published, revision_published
from statuspage.subscriber_sending import subscriber_message_due
from statuspage.subscriber_tasks import (
    subscriber_maintenance_fanout,
    subscriber_message_send,
    subscriber_revision_fanout,
)

logger = logging.getLogger(__name__)


@receiver(revision_published, dispatch_uid="statuspage.subscribers_revision")
def subscribers_revision(*, revision_id: int, **kwargs: Any) -> None:
    """Queue the revision's fan-out when it was published with "notify subscribers"."""
    if not Revision.objects.filter(pk=revision_id, notify_subscribers=True).exists():
        return
    try:
        subscriber_revision_fanout.delay(revision_id)
    except Exception:
        logger.warning("fan-out of revision %s not enqueued; done here", revision_id)
        subscriber_sending.revision_fanout(revision_id=revision_id)


@receiver(maintenance_update_published, dispatch_uid="statuspage.subscribers_maintenance")
def subscribers_maintenance(*, update_id: int, **kwargs: Any) -> None:
    """Queue the maintenance update's fan-out when it has "notify subscribers"."""
    if not MaintenanceUpdate.objects.filter(pk=update_id, notify_subscribers=True).exists():
        return
    try:
        subscriber_maintenance_fanout.delay(update_id)
    except Exception:
        logger.warning("fan-out of maintenance update %s not enqueued; done here", update_id)
        subscriber_sending.maintenance_update_fanout(update_id=update_id)


@receiver(subscriber_message_due, dispatch_uid="statuspage.subscriber_message_due")
def subscriber_message_enqueue(*, message_id: int, **kwargs: Any) -> None:
    """Hand a message to Celery; an error goes back to the sender, which logs it."""
    subscriber_message_send.delay(message_id)
