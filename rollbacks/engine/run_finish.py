"""How a run ends: failed when a group's step failed, or succeeded when every step is done
(and, where the services have checks, verification passed).

Both write the run's row and its timeline entry in the caller's transaction, which holds the
run's row lock (rollbacks.engine.advance, or rollbacks.verification concluding a round), and
announce the end with the run_finished signal after commit.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from incidents.models import TimelineKind
from incidents.services import incident_fill_instants
from incidents.timeline import timeline_append
from rollbacks.engine.entries import (
    ENGINE_ACTOR,
    describe_step,
    format_duration,
    run_payload,
    step_payload,
)
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.signals import send_run_finished

logger = logging.getLogger(__name__)


def run_fail(run: Run, steps: list[Step], *, group: int, stopped: list[Step]) -> None:
    """End the run as failed because `stopped`, steps of `group`, failed or were cancelled:
    its later pending steps are cancelled as blocked by the first of them."""
    now = timezone.now()
    first = stopped[0]
    failures = "; ".join(
        f"{describe_step(step)} {step.state}: "
        + (step.error or step.skip_reason or "no reason given")
        for step in stopped
    )
    later = [step for step in steps if step.group > group and step.state == StepState.PENDING]
    reason = f"not started: {describe_step(first)} failed"
    for step in later:
        step.state = StepState.CANCELLED
        step.skip_reason = reason
        step.blocked_by = first
        step.finished_at = now
        step.save(update_fields=["state", "skip_reason", "blocked_by", "finished_at"])
        timeline_append(
            incident=run.incident,
            kind=TimelineKind.STEP_FINISHED,
            body=f"Run #{run.pk} {describe_step(step)} cancelled: {reason}",
            actor_label=ENGINE_ACTOR,
            payload=step_payload(step, reason=reason, blocked_by=first.pk),
        )
    run.state = RunState.FAILED
    run.finished_at = now
    run.failure_reason = failures
    run.save(update_fields=["state", "finished_at", "failure_reason"])
    not_started = f"; {len(later)} later step(s) not started" if later else ""
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} failed after {format_duration(run.duration)}: {failures}{not_started}",
        actor_label=ENGINE_ACTOR,
        payload=run_payload(
            run,
            failed_steps=[step.pk for step in stopped],
            cancelled_steps=[step.pk for step in later],
        ),
    )
    send_run_finished(run)


def steps_checked(steps: list[Step]) -> bool:
    """Whether every step did something and had its backend's own checks pass: at least
    one passed and none failed (an inconclusive one, such as a count the platform does not
    report, is not a failure). A skipped step left its service as it was, so nothing
    confirms that service recovered."""
    if any(step.state == StepState.SKIPPED for step in steps):
        return False
    done = [step for step in steps if step.state == StepState.SUCCEEDED]
    return bool(done) and all(
        any(result.get("status") == "passed" for result in step.check_results)
        and not any(result.get("status") == "failed" for result in step.check_results)
        for step in done
    )


def run_succeed(run: Run, steps: list[Step], *, verified: bool = False) -> None:
    """End the run as succeeded and stamp the incident's restore instant and verified
    instant unless a drill or dry run. Verified is when the services' verification checks
    passed; for services without any, when the run ended with every step's own checks
    passed (the rollout complete, the pods ready, the record served), so that the recovery
    clock's "time to verify" stops; with a step's checks unsure, it runs on until a person
    records the verified instant."""
    now = timezone.now()
    run.state = RunState.SUCCEEDED
    run.finished_at = now
    run.save(update_fields=["state", "finished_at"])
    done = sum(1 for step in steps if step.state == StepState.SUCCEEDED)
    skipped = sum(1 for step in steps if step.state == StepState.SKIPPED)
    what = "Dry run" if run.dry_run else "Drill" if run.drill else "Rollback"
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"{what} run #{run.pk} succeeded in {format_duration(run.duration)}: "
        f"{done} step(s) succeeded" + (f", {skipped} skipped" if skipped else ""),
        actor_label=ENGINE_ACTOR,
        payload=run_payload(run, succeeded=done, skipped=skipped),
    )
    send_run_finished(run)
    if run.dry_run or run.drill or not done:
        return
    # With verification, the service came back when the last step finished, and was
    # verified now; without it, now is all we know.
    finished = [step.finished_at for step in steps if step.finished_at is not None]
    instants = {"restored_at": max(finished) if verified and finished else now}
    if verified or steps_checked(steps):
        instants["verified_at"] = now
    unset = {name: at for name, at in instants.items() if getattr(run.incident, name) is None}
    if not unset:
        return
    _, refused = incident_fill_instants(
        incident=run.incident, instants=unset, actor=None, actor_label=ENGINE_ACTOR
    )
    for instant, reason in refused.items():
        logger.warning("run %s: could not record %s: %s", run.pk, instant, reason)
