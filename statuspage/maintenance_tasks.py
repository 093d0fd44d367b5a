"""The beat's task for scheduled maintenances: a thin wrapper over
`statuspage.maintenances.maintenances_due_advance`, safe to run twice at once."""

from __future__ import annotations

import logging

from console.celery import app
from statuspage import maintenances

logger = logging.getLogger(__name__)


@app.task(acks_late=True, ignore_result=True, soft_time_limit=50, time_limit=55)
def maintenances_advance() -> None:
    """Every MAINTENANCE_SWEEP_SECONDS (Celery beat): start and complete the maintenances
    whose window's edge has passed (those with auto_start / auto_complete), and close those
    whose window ended before anyone started them."""
    advanced = maintenances.maintenances_due_advance()
    if advanced.started or advanced.completed or advanced.not_held:
        logger.info(
            "maintenances started %s, completed %s, not held %s",
            advanced.started,
            advanced.completed,
            advanced.not_held,
        )
