"""The commander's operations on a drafted run: sent for the approvals its incident's policy
needs (`run_request_approval`), started once those are in and the commander has typed the
confirmation word (`run_confirm_and_start`), paused, resumed or cancelled while it runs, and
a failed step retried or skipped. Each changes state in one transaction with its timeline
entry, and hands work to the engine through Celery after commit.
"""

from __future__ import annotations

from typing import Any, cast

from django.db import transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import TimelineKind
from incidents.roles import COMMAND_PERMISSION, User, require_role
from incidents.services import incident_fill_instants, incident_lock
from incidents.timeline import timeline_append
from rollbacks.approvals import (
    approval_request_open,
    approval_withdraw,
    plan_restoring,
    reasons_text,
    required_roles_for,
)
from rollbacks.engine.advance import advance_locked
from rollbacks.models import (
    ApprovalRequest,
    ApprovalRequestStatus,
    Run,
    RunState,
    Step,
    StepState,
)
from rollbacks.services.plans import plan_kind_label, plan_steps_text
from rollbacks.services.run_exclusion import (
    REQUESTING_BLOCKED_BY,
    STARTING_BLOCKED_BY,
    run_claim_services,
)
from rollbacks.services.run_locks import run_lock, run_require_state
from rollbacks.signals import send_run_finished, send_run_started
from rollbacks.tasks import CeleryDispatcher

# -- approval and start ----------------------------------------------------------------------


@transaction.atomic
def run_request_approval(
    *, run: Run, actor: User, reason: str = "", supersede: bool = False
) -> Run:
    """Ask for the approvals the incident's severity and the run's scenario need. With no
    matching policy the request is approved at once and so is the run.

    Refused while another run touching the same services awaits approval, is approved or
    runs (RunConflict, naming it); `supersede` cancels those first."""
    require_role(actor, COMMAND_PERMISSION, "request rollback approval")
    locked = run_lock(run)
    run_require_state(locked, (RunState.DRAFT,), "request approval")
    if not locked.steps.exists():
        raise DomainError("The plan has no steps.")
    run_claim_services(
        run=locked,
        actor=actor,
        blocked_by=REQUESTING_BLOCKED_BY,
        supersede=supersede,
        cancel=run_cancel,
    )
    request = approval_request_open(
        incident=locked.incident,
        requested_by=actor,
        scenario=locked.scenario,
        reason=reason.strip() or locked.reason or f"Rollback plan #{locked.pk}",
        restoring=plan_restoring(locked),
    )
    locked.approval_request = request
    approved = request.status == ApprovalRequestStatus.APPROVED
    locked.state = RunState.APPROVED if approved else RunState.AWAITING_APPROVAL
    locked.save(update_fields=["approval_request", "state"])
    needs = reasons_text(request.reasons) if request.reasons else ", ".join(request.required_roles)
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.RUN,
        body=f"Plan #{locked.pk} approved (no policy requires approvers); type the "
        "confirmation to start it"
        if approved
        else f"Plan #{locked.pk} awaits approval from {needs}",
        actor=actor,
        payload={"run": locked.pk, "state": locked.state, "request": request.pk},
    )
    return locked


def _check_approval(run: Run) -> None:
    request = run.approval_request
    if request is None:
        raise DomainError("Request approval first.")
    if request.status != ApprovalRequestStatus.APPROVED:
        missing = ", ".join(request.missing_roles())
        raise DomainError(
            f"The approval request is {request.get_status_display().lower()}"
            + (f"; still needs {missing}" if missing else "")
            + "."
        )
    # The severity may have risen since approval: the policy as it stands now must be met.
    needed = required_roles_for(
        severity=run.incident.severity, scenario=run.scenario, restoring=plan_restoring(run)
    )
    covered = request.covered_roles() if request.required_roles else set()
    missing_now = [role for role in needed if role not in covered]
    if missing_now:
        raise DomainError(
            f"The incident is now {run.incident.severity}, which also needs approval from "
            f"{', '.join(missing_now)}; request approval again."
        )


@transaction.atomic
def run_confirm_and_start(
    *,
    run: Run,
    actor: User,
    confirmation: str,
    enqueue: bool = True,
    supersede: bool = False,
) -> Run:
    """Start an approved run once the commander has typed the expected word (the service's
    name, or "ROLLBACK" for several services). A dry-run run needs no approval.

    Refused while another run touching the same services runs or is paused (RunConflict,
    naming it); `supersede` cancels those first, in this transaction.
    `enqueue=False` leaves execution to the caller (the terminal command runs it inline).
    """
    require_role(actor, COMMAND_PERMISSION, "start rollbacks")
    locked = run_lock(run)
    incident = incident_lock(locked.incident)
    if not incident.is_open:
        raise DomainError("The incident is resolved; reopen it first.")
    startable = (
        (RunState.DRAFT, RunState.AWAITING_APPROVAL, RunState.APPROVED)
        if locked.dry_run
        else (RunState.APPROVED,)
    )
    if locked.state in (RunState.DRAFT, RunState.AWAITING_APPROVAL) and not locked.dry_run:
        raise DomainError(
            "The plan is not approved yet."
            if locked.state == RunState.AWAITING_APPROVAL
            else "Request approval first."
        )
    run_require_state(locked, startable, "start it")
    if not locked.dry_run:
        _check_approval(locked)
    steps = list(locked.steps.select_related("service").order_by("position"))
    expected = locked.expected_confirmation(steps)
    typed = confirmation.strip()
    if typed != expected:
        raise DomainError(f"Type {expected} exactly to confirm the rollback.")
    if not steps:
        raise DomainError("The plan has no steps.")
    run_claim_services(
        run=locked,
        actor=actor,
        blocked_by=STARTING_BLOCKED_BY,
        supersede=supersede,
        cancel=run_cancel,
    )
    now = timezone.now()
    locked.state = RunState.RUNNING
    locked.confirmation_text = typed
    locked.confirmed_by = cast(Any, actor) if actor.is_authenticated else None
    locked.confirmed_at = now
    locked.started_at = now
    locked.save(
        update_fields=["state", "confirmation_text", "confirmed_by", "confirmed_at", "started_at"]
    )
    timeline_append(
        incident=incident,
        kind=TimelineKind.RUN,
        body=f"{plan_kind_label(locked)} run #{locked.pk} started (confirmed by typing “{typed}”): "
        f"{plan_steps_text(steps)}",
        actor=actor,
        payload={"run": locked.pk, "state": locked.state, "confirmation": typed},
    )
    if not (locked.dry_run or locked.drill):
        # Either is refused when, e.g., detection was recorded a moment ahead of now.
        incident, _ = incident_fill_instants(
            incident=incident,
            instants={"decided_at": now, "rollback_started_at": now},
            actor=actor,
        )
    # Commit hooks run in the order they were added: the steps' messages go first, so they
    # do not wait for the receivers' own work (notices, watches). Not when the steps would
    # run inside the send (eager mode), nor when no step is left to run (all skipped: the
    # run ends in advance_locked): other apps hear of the start before what follows it.
    dispatcher = CeleryDispatcher()
    steps_first = (
        enqueue
        and dispatcher.runs_elsewhere
        and any(step.state == StepState.PENDING for step in steps)
    )
    if not steps_first:
        send_run_started(locked)
    if enqueue:
        advance_locked(locked, dispatcher=dispatcher)
    if steps_first:
        send_run_started(locked)
    return locked


# -- while it runs ---------------------------------------------------------------------------


@transaction.atomic
def run_pause(*, run: Run, actor: User, reason: str = "") -> Run:
    """Hold a running run: steps already running finish, nothing new starts."""
    require_role(actor, COMMAND_PERMISSION, "pause rollbacks")
    locked = run_lock(run)
    run_require_state(locked, (RunState.RUNNING,), "pause it")
    locked.state = RunState.PAUSED
    locked.paused_at = timezone.now()
    locked.save(update_fields=["state", "paused_at"])
    running = locked.steps.filter(state=StepState.RUNNING).count()
    suffix = f"; {running} running step(s) will finish" if running else ""
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{locked.pk} paused"
        + (f": {reason.strip()}" if reason.strip() else "")
        + suffix,
        actor=actor,
        payload={"run": locked.pk, "state": locked.state, "reason": reason.strip()},
    )
    return locked


@transaction.atomic
def run_resume(*, run: Run, actor: User) -> Run:
    """Carry on with a paused run from where it stopped."""
    require_role(actor, COMMAND_PERMISSION, "resume rollbacks")
    locked = run_lock(run)
    run_require_state(locked, (RunState.PAUSED,), "resume it")
    locked.state = RunState.RUNNING
    locked.paused_at = None
    locked.save(update_fields=["state", "paused_at"])
    # Messages delivered while paused found nothing to claim: hand the steps out again.
    locked.steps.filter(state=StepState.PENDING).update(enqueued_at=None)
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{locked.pk} resumed",
        actor=actor,
        payload={"run": locked.pk, "state": locked.state},
    )
    advance_locked(locked, dispatcher=CeleryDispatcher())
    return locked


@transaction.atomic
def run_cancel(*, run: Run, actor: User, reason: str = "") -> Run:
    """Stop a run for good: steps not yet started are cancelled, a pending approval request
    is withdrawn. Steps already applying finish and report (their change is under way)."""
    require_role(actor, COMMAND_PERMISSION, "cancel rollbacks")
    # The approval request before the run: the order an approver's decision takes them in.
    request_id = Run.objects.filter(pk=run.pk).values_list("approval_request", flat=True).first()
    if request_id is not None:
        ApprovalRequest.objects.select_for_update(no_key=True).filter(pk=request_id).first()
    locked = run_lock(run)
    if locked.is_finished:
        raise DomainError(f"Run #{locked.pk} is already {locked.get_state_display().lower()}.")
    now = timezone.now()
    why = reason.strip()
    locked.state = RunState.CANCELLED
    locked.finished_at = now
    locked.failure_reason = why
    locked.save(update_fields=["state", "finished_at", "failure_reason"])
    pending = list(locked.steps.filter(state=StepState.PENDING))
    step_reason = f"run cancelled by {actor.get_username()}" + (f": {why}" if why else "")
    # `state` again in the UPDATE: a step claimed meanwhile keeps running.
    Step.objects.filter(pk__in=[step.pk for step in pending], state=StepState.PENDING).update(
        state=StepState.CANCELLED, skip_reason=step_reason, finished_at=now
    )
    running = locked.steps.filter(state=StepState.RUNNING).count()
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{locked.pk} cancelled"
        + (f": {why}" if why else "")
        + (f"; {len(pending)} step(s) not started" if pending else "")
        + (f"; {running} running step(s) will finish and report" if running else ""),
        actor=actor,
        payload={
            "run": locked.pk,
            "state": locked.state,
            "reason": why,
            "cancelled_steps": [step.pk for step in pending],
        },
    )
    send_run_finished(locked)
    request = locked.approval_request
    if request is not None and request.status == ApprovalRequestStatus.PENDING:
        approval_withdraw(request=request, actor=actor)
    return locked


def _reopen_if_failed(run: Run, actor: User, doing: str) -> bool:
    """A failed run carries on when its failed step is retried or skipped: the steps its
    failure stopped become pending again. Returns whether it was reopened."""
    if run.state != RunState.FAILED:
        return False
    # Another run may have started on these services since this one failed.
    run_claim_services(
        run=run, actor=actor, blocked_by=STARTING_BLOCKED_BY, supersede=False, cancel=run_cancel
    )
    run.state = RunState.RUNNING
    run.finished_at = None
    run.failure_reason = ""
    run.save(update_fields=["state", "finished_at", "failure_reason"])
    run.steps.filter(state=StepState.CANCELLED, blocked_by__isnull=False).update(
        state=StepState.PENDING,
        blocked_by=None,
        skip_reason="",
        finished_at=None,
        enqueued_at=None,
    )
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} reopened to {doing}",
        actor=actor,
        payload={"run": run.pk, "state": run.state},
    )
    return True


@transaction.atomic
def step_retry(*, step: Step, actor: User) -> Step:
    """Try a failed step again (its run reopens if the failure had failed it). An apply
    that had gone through is not repeated: the step waits and checks again."""
    require_role(actor, COMMAND_PERMISSION, "retry rollback steps")
    run = run_lock(step.run)
    locked = Step.objects.select_for_update(no_key=True).select_related("service").get(pk=step.pk)
    if locked.state != StepState.FAILED:
        raise DomainError(f"Only a failed step can be retried; this one is {locked.state}.")
    run_require_state(run, (RunState.RUNNING, RunState.PAUSED, RunState.FAILED), "retry its steps")
    previous_error = locked.error
    locked.state = StepState.PENDING
    locked.error = ""
    locked.error_retryable = False
    locked.deadline = None
    locked.started_at = None
    locked.finished_at = None
    locked.enqueued_at = None
    locked.claim_token = ""
    locked.save(
        update_fields=[
            "state",
            "error",
            "error_retryable",
            "deadline",
            "started_at",
            "finished_at",
            "enqueued_at",
            "claim_token",
        ]
    )
    _reopen_if_failed(run, actor, f"retry step {locked.position} ({locked.service.name})")
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} step {locked.position} ({locked.service.name}) will be retried "
        f"(it failed: {previous_error})",
        actor=actor,
        payload={"run": run.pk, "step": locked.pk, "state": locked.state},
    )
    if run.state == RunState.RUNNING:
        CeleryDispatcher().advance_run(run.pk)
    return locked


@transaction.atomic
def step_skip(*, step: Step, actor: User, reason: str) -> Step:
    """Leave a pending or failed step out, saying why; later groups then go ahead."""
    require_role(actor, COMMAND_PERMISSION, "skip rollback steps")
    why = reason.strip()
    if not why:
        raise DomainError("Say why the step is skipped.")
    run = run_lock(step.run)
    locked = Step.objects.select_for_update(no_key=True).select_related("service").get(pk=step.pk)
    if locked.state not in (StepState.PENDING, StepState.FAILED):
        raise DomainError(
            f"Only a pending or failed step can be skipped; this one is {locked.state}."
        )
    if run.state == RunState.CANCELLED or run.state == RunState.SUCCEEDED:
        raise DomainError(f"Run #{run.pk} is {run.get_state_display().lower()}.")
    was = locked.state
    locked.state = StepState.SKIPPED
    locked.skip_reason = why
    locked.finished_at = timezone.now()
    locked.claim_token = ""
    locked.save(update_fields=["state", "skip_reason", "finished_at", "claim_token"])
    if was == StepState.FAILED:
        _reopen_if_failed(run, actor, f"skip step {locked.position} ({locked.service.name})")
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.STEP_FINISHED,
        body=f"Run #{run.pk} step {locked.position} ({locked.service.name}) skipped by "
        f"{actor.get_username()}: {why}",
        actor=actor,
        payload={
            "run": run.pk,
            "step": locked.pk,
            "position": locked.position,
            "service": locked.service.name,
            "state": locked.state,
            "was": was,
            "reason": why,
        },
    )
    if run.state == RunState.RUNNING:
        CeleryDispatcher().advance_run(run.pk)
    return locked
