"""The recovery sweep: work a dead worker or a lost message left behind is handed out again.

Every worker runs it every ROLLBACK_RECOVERY_INTERVAL_SECONDS (rollbacks.tasks). A step
handed out again is taken over by its new delivery (rollbacks.engine.claims), which carries
on from what `applied_at` says.

How the sweep knows a step is stalled: a running step's heartbeat stopped moving for
ROLLBACK_STALE_AFTER_SECONDS (its worker died), or a running run has had nothing running,
finishing or sent for as long (a message was lost). Neither says whether the message the
sweep sent last time is still waiting in the queue behind busy workers: re-sending it on
every sweep only piles duplicates onto that queue. So a step is sent again only when the
previous send cannot still be waiting, or is older than RESEND_AFTER_STALE_PERIODS stale
periods (2 minutes with the defaults), after which it counts as lost:

- a running step: sent again at once when its heartbeat stopped for the first time (or
  again after a worker that took it over died too), then once per bound while the same
  silence lasts. Which silence was already answered is noted in the cache (Redis), keyed
  by the step and its last heartbeat, so every worker's sweep sees it; if the cache cannot
  say, the step is sent (a duplicate delivery is harmless, a missing one is not).
- a pending step of a quiet run: sent again when its last send (`enqueued_at`) is older
  than the bound; run_advance checks that under the run's lock, so two sweeps at once send
  it once.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from rollbacks import conf
from rollbacks.engine.advance import run_advance
from rollbacks.engine.dispatch import Dispatcher
from rollbacks.models import Run, RunState, Step, StepState

logger = logging.getLogger(__name__)

# A step's message may wait this many stale periods in the queue before it counts as lost.
RESEND_AFTER_STALE_PERIODS = 4


def resend_after_seconds() -> float:
    """How old a step's previous send must be before the sweep sends it again."""
    return RESEND_AFTER_STALE_PERIODS * conf.stale_after_seconds()


def recover_stalled(*, dispatcher: Dispatcher) -> dict[str, int]:
    """Hand out work that a dead worker or a lost message left behind.

    Running steps whose heartbeat is older than ROLLBACK_STALE_AFTER_SECONDS go to a new
    delivery (which takes the claim over), unless this silence was answered within the
    resend bound; running runs with no step running and no progress for as long get their
    pending steps dispatched again, unless one was sent within the bound.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=conf.stale_after_seconds())
    resend_cutoff = now - timedelta(seconds=resend_after_seconds())
    stalled = Step.objects.filter(state=StepState.RUNNING, heartbeat_at__lt=cutoff)
    stalled_steps = [
        step
        for step in stalled.only("id", "timeout_seconds", "heartbeat_at")
        if _first_send_of_silence(step)
    ]
    if stalled_steps:
        with transaction.atomic():
            dispatcher.start_steps(stalled_steps)
    recently_sent = Step.objects.filter(
        run=OuterRef("pk"), state=StepState.PENDING, enqueued_at__gte=resend_cutoff
    )
    quiet_runs = (
        Run.objects.filter(state=RunState.RUNNING, started_at__lt=cutoff)
        .exclude(steps__state=StepState.RUNNING)
        .exclude(steps__finished_at__gte=cutoff)
        .exclude(Exists(recently_sent))
        .values_list("id", flat=True)
    )
    requeued = 0
    for run_id in list(quiet_runs):
        run_advance(run_id, dispatcher=dispatcher, requeue_pending_before=resend_cutoff)
        requeued += 1
    return {"steps": len(stalled_steps), "runs": requeued}


def _first_send_of_silence(step: Step) -> bool:
    """Whether the sweep should send this stalled step: no sweep sent it for its current
    silence (its last heartbeat) within the resend bound. Notes the send when it should."""
    assert step.heartbeat_at is not None  # the sweep's filter
    try:
        # Whole seconds, as the cache counts them (rounded down to 0, the note would vanish).
        remembered = max(1, math.ceil(resend_after_seconds()))
        return bool(cache.add(_silence_key(step.pk, step.heartbeat_at), 1, remembered))
    except Exception:  # the cache is down: better a duplicate delivery than none
        logger.warning("recovery sweep cannot reach the cache; sending step %s", step.pk)
        return True


def _silence_key(step_id: int, heartbeat_at: datetime) -> str:
    return f"rollbacks:resent:{step_id}:{heartbeat_at.timestamp():.6f}"
