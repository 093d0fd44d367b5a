"""Sending a Django signal once the current transaction commits, as the apps tell each other
of what they did (incidents, rollbacks, alerts): receivers load what they need from the
committed state, and a receiver's error is logged, never raised into the sender's work."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)


def send_after_commit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send `signal` with `kwargs` to every receiver after the commit (at once outside a
    transaction); each receiver's exception is logged with the keywords it was sent."""

    def send() -> None:
        for receiver, outcome in signal.send_robust(sender=sender, **kwargs):
            if isinstance(outcome, Exception):
                logger.error("%s failed for %s", receiver, kwargs, exc_info=outcome)

    transaction.on_commit(send, robust=True)
