"""What the rollback side tells other apps, sent after the transaction that did it commits.

Receivers (the status page's notices, say) connect in their AppConfig.ready(); nothing in
rollbacks/ imports them. A receiver's error is logged and never reaches the rollback: a
notice that fails to go out must not fail the run it tells about.

Both signals send `run_id` (an int): receivers load what they need themselves, from the
committed state.
"""

from __future__ import annotations

from django.dispatch import Signal

from console.signals import send_after_commit
from rollbacks.models import Run

run_started = Signal()
"""A run was confirmed and started. Keyword: run_id."""

run_finished = Signal()
"""A run ended: succeeded, failed or cancelled. Keyword: run_id."""


def send_run_started(run: Run) -> None:
    """Call in the transaction that started `run`; receivers hear of it after commit."""
    send_after_commit(run_started, Run, run_id=run.pk)


def send_run_finished(run: Run) -> None:
    """Call in the transaction that finished `run`; receivers hear of it after commit."""
    send_after_commit(run_finished, Run, run_id=run.pk)
