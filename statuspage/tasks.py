"""Celery tasks for communications: thin wrappers over `statuspage.comms`."""

from __future__ import annotations

import logging
from typing import Any

from console.celery import app
from statuspage import comms, conf
from statuspage.maintenance_tasks import maintenances_advance  # noqa: F401  (for Celery)
from statuspage.subscriber_tasks import subscriber_message_send  # noqa: F401  (for Celery)

logger = logging.getLogger(__name__)


@app.task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(comms.DeliveryRetry,),
    retry_backoff=max(1, int(conf.retry_backoff_seconds())),
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=conf.max_retries(),
    soft_time_limit=60,
    time_limit=90,
)
def notice_deliver(self: Any, delivery_id: int) -> str:
    """Send one delivery; a failure that may pass is retried with backoff up to
    COMMS_MAX_RETRIES (after the server's Retry-After when it sent one, at most
    `retry_backoff_max`), then left `failed` on the desk for a person to retry."""
    try:
        return comms.delivery_attempt(
            delivery_id=delivery_id, final_attempt=self.request.retries >= self.max_retries
        )
    except comms.DeliveryRetry as retry:
        if retry.retry_after is None:
            raise  # autoretry_for: Celery's exponential backoff
        wait = min(retry.retry_after, self.retry_backoff_max)
        raise self.retry(exc=retry, countdown=wait) from None


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def run_notice(run_id: int, event: str) -> None:
    """Write the notice of a rollback run starting or finishing (and hand out its sends)."""
    comms.run_event_notice(run_id=run_id, event=event)


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def comms_sweep() -> None:
    """Every STATUS_SWEEP_SECONDS (Celery beat): notices, lost deliveries, reminders."""
    found = comms.sweep()
    if any(found.values()):
        logger.info("status-page sweep: %s", found)
