"""What the rollback code calls when a run starts or finishes: after its transaction
commits, a task writes and sends an internal notice. Communications never hold up or break
a rollback: the commit only enqueues (the notice's queries and rendering used to delay the
steps a started run sends out), and any error is logged, not raised (the beat sweep writes
a notice that was missed)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def _notify(run_id: int, event: str) -> None:
    try:
        from statuspage.tasks import run_notice

        run_notice.delay(run_id, event)
    except Exception:
        logger.exception("could not hand out the %s notice of run %s", event, run_id)


def run_started(run: Any) -> None:
    """Call in the transaction that started `run`."""
    run_id = run.pk
    transaction.on_commit(lambda: _notify(run_id, "started"), robust=True)


def run_finished(run: Any) -> None:
    """Call in the transaction that finished (succeeded, failed, cancelled) `run`."""
    run_id = run.pk
    transaction.on_commit(lambda: _notify(run_id, "finished"), robust=True)
