"""What the rollback side tells other apps, sent after the transaction that did it commits.

Receivers (the status page's notices, say) connect in their AppConfig.ready(); nothing in
rollbacks/ imports them. A receiver's error is logged and never reaches the rollback: a
notice that fails to go out must not fail the run it tells about.

Both signals send `run_id` (an int): receivers load what they need themselves, from the
committed state.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

from rollbacks.models import Run

logger = logging.getLogger(__name__)

run_started = Signal()
"""A run was confirmed and started. Keyword: run_id."""

run_finished = Signal()
"""A run ended: succeeded, failed or cancelled. Keyword: run_id."""


def _send_after_commit(signal: Signal, run: Run) -> None:
    run_id = run.pk

    def send() -> None:
        for receiver, outcome in signal.send_robust(sender=Run, run_id=run_id):
            if isinstance(outcome, Exception):
                logger.error("%s failed for run %s", receiver, run_id, exc_info=outcome)

    transaction.on_commit(send, robust=True)


def send_run_started(run: Run) -> None:
    """Call in the transaction that started `run`; receivers hear of it after commit."""
    _send_after_commit(run_started, run)


def send_run_finished(run: Run) -> None:
    """Call in the transaction that finished `run`; receivers hear of it after commit."""
    _send_after_commit(run_finished, run)
