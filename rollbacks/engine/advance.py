"""Moving a run forward: hand out its current group's pending steps, or, when the group is
finished, go on to the next group or end the run.

`run_advance(run_id)` takes the run's row lock itself; `advance_locked(run)` is for a caller
whose transaction already holds it (starting or resuming the run). Either is safe to call
again: a step is handed out once (`enqueued_at` remembers it) unless `requeue_pending_before`
says its message was lost. When every step is done, the services' own checks may hold the run
(rollbacks.verification) before it succeeds.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from rollbacks.engine.dispatch import Dispatcher
from rollbacks.engine.run_finish import run_fail, run_succeed
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.verification import hold_for_verification


@transaction.atomic
def run_advance(
    run_id: int, *, dispatcher: Dispatcher, requeue_pending_before: datetime | None = None
) -> list[int]:
    """Move a running run forward; return the ids of the steps handed to the dispatcher.

    Pending steps of the current group are dispatched once (`enqueued_at` remembers it);
    `requeue_pending_before` dispatches again those last sent before it (their messages
    were lost). Does nothing unless the run is running.
    """
    run = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run_id)
    return _advance_locked(run, dispatcher, requeue_pending_before=requeue_pending_before)


def advance_locked(run: Run, *, dispatcher: Dispatcher) -> list[int]:
    """run_advance for a caller whose transaction holds the run's row lock (starting or
    resuming it): the first steps go out when that transaction commits, with no
    run_advance message in between."""
    return _advance_locked(run, dispatcher)


# A group is done when none of its steps is unfinished; a stopped step ends the run.
UNFINISHED_STATES = (StepState.PENDING, StepState.RUNNING)
STOPPED_STATES = (StepState.FAILED, StepState.CANCELLED)


def _advance_locked(
    run: Run, dispatcher: Dispatcher, *, requeue_pending_before: datetime | None = None
) -> list[int]:
    """run_advance's work, for a caller holding the run's row lock."""
    if run.state != RunState.RUNNING:
        return []
    current = run.steps.filter(state__in=UNFINISHED_STATES).aggregate(group=Min("group"))["group"]
    if (
        current is not None
        and not run.steps.filter(group__lt=current, state__in=STOPPED_STATES).exists()
    ):
        # Under the run's lock: of two sweeps requeueing at once, the second finds the
        # first's `enqueued_at` and sends nothing.
        unsent = Q(enqueued_at__isnull=True)
        if requeue_pending_before is not None:
            unsent |= Q(enqueued_at__lt=requeue_pending_before)
        due_steps = run.steps.filter(unsent, group=current, state=StepState.PENDING)
        due = list(due_steps.only("id", "timeout_seconds"))
        if due:
            Step.objects.filter(pk__in=[step.pk for step in due]).update(enqueued_at=timezone.now())
            dispatcher.start_steps(due)
        return [step.pk for step in due]

    # A group ended with a failure, or every group is done: the run ends.
    steps = list(run.steps.select_related("service").order_by("group", "position"))
    groups: dict[int, list[Step]] = {}
    for step in steps:
        groups.setdefault(step.group, []).append(step)
    for group, members in sorted(groups.items()):
        stopped = [step for step in members if step.state in STOPPED_STATES]
        if stopped and not any(step.state in UNFINISHED_STATES for step in members):
            run_fail(run, steps, group=group, stopped=stopped)
            return []
    # Every step is done: the services' own checks decide before the run succeeds.
    requeue = requeue_pending_before is not None
    if hold_for_verification(run, steps, dispatcher, requeue=requeue):
        return []
    run_succeed(run, steps)
    return []
