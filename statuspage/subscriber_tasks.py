"""Celery tasks for the page's email subscribers: thin wrappers over
`statuspage.subscriber_sending`. Imported by statuspage.tasks so that workers find them."""

from __future__ import annotations

import logging

from console.celery import app
from statuspage import conf, subscriber_sending

logger = logging.getLogger(__name__)


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def subscriber_revision_fanout(revision_id: int) -> None:
    """Queue one message per subscriber concerned by an incident update."""
    subscriber_sending.revision_fanout(revision_id=revision_id)


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def subscriber_maintenance_fanout(update_id: int) -> None:
    """Queue one message per subscriber concerned by a maintenance update."""
    subscriber_sending.maintenance_update_fanout(update_id=update_id)


@app.task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(subscriber_sending.SubscriberRetry,),
    retry_backoff=max(1, int(conf.retry_backoff_seconds())),
    retry_backoff_max=subscriber_sending.RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=conf.max_retries(),
    soft_time_limit=60,
    time_limit=90,
)
def subscriber_message_send(message_id: int) -> str:
    """Send one email to one subscriber; an SMTP error or timeout is retried with backoff
    until the message's own `attempts` reach COMMS_MAX_RETRIES + 1 (counted on the row, so a
    re-dispatch by the sweep does not start over), then the message is counted as failed."""
    return subscriber_sending.message_attempt(message_id=message_id)


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def subscribers_sweep() -> None:
    """Every STATUS_SWEEP_SECONDS (Celery beat): lost fan-outs, lost messages and stale
    unconfirmed subscribers."""
    found = subscriber_sending.sweep()
    if any(found.values()):
        logger.info("subscriber sweep: %s", found)
