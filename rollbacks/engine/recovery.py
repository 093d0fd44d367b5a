"""The recovery sweep: work a dead worker or a lost message left behind is handed out again.

Every worker runs it every ROLLBACK_RECOVERY_INTERVAL_SECONDS (rollbacks.tasks). A step
handed out again is taken over by its new delivery (rollbacks.engine.claims), which carries
on from what `applied_at` says.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from rollbacks import conf
from rollbacks.engine.advance import run_advance
from rollbacks.engine.dispatch import Dispatcher
from rollbacks.models import Run, RunState, Step, StepState


def recover_stalled(*, dispatcher: Dispatcher) -> dict[str, int]:
    """Hand out work that a dead worker or a lost message left behind.

    Running steps whose heartbeat is older than ROLLBACK_STALE_AFTER_SECONDS go to a new
    delivery (which takes the claim over); running runs with no step running and no
    progress for as long get their pending steps dispatched again.
    """
    cutoff = timezone.now() - timedelta(seconds=conf.stale_after_seconds())
    stalled_steps = list(
        Step.objects.filter(state=StepState.RUNNING, heartbeat_at__lt=cutoff).only(
            "id", "timeout_seconds"
        )
    )
    if stalled_steps:
        with transaction.atomic():
            dispatcher.start_steps(stalled_steps)
    quiet_runs = (
        Run.objects.filter(state=RunState.RUNNING, started_at__lt=cutoff)
        .exclude(steps__state=StepState.RUNNING)
        .exclude(steps__finished_at__gte=cutoff)
        .exclude(steps__enqueued_at__gte=cutoff)
        .values_list("id", flat=True)
    )
    requeued = 0
    for run_id in list(quiet_runs):
        run_advance(run_id, dispatcher=dispatcher, requeue_pending=True)
        requeued += 1
    return {"steps": len(stalled_steps), "runs": requeued}
