"""Verification after a rollback: the checks each service lists in its target config run
once every step of a run has finished, and decide how the run ends.

A service lists its checks under `checks` in its target config (schema and kinds in
executors.check_specs: http, command, kubernetes_pods, prometheus). When the last group of a
real run (not a dry run) is done, the engine calls `hold_for_verification` under the run's
row lock: if any service whose step succeeded has checks, a verification *round* starts (a
timeline entry lists the checks) and its work is handed to a worker (the `run_verify`
Celery task, or a thread of `rollbacks.engine.inline.run_inline`), which calls
`verification_execute`.

Each check's result is written as its own CHECK_RESULT entry the moment it is known, so
the room shows them arriving. Then the round concludes, in one transaction with the run
locked:

- any check failed → the run fails, with the failed checks as its reason;
- else any inconclusive (no data, a server that did not answer) → the run is paused for
  the commander, who resumes it (a new round runs every check again) or cancels it;
- else → the run succeeds, and the incident's restored and verified instants are stamped.

Passing checks tick the post-rollback checklist items whose `check_key` they map to
(executors.check_specs.checklist_key), as the automation, with the timeline entry saying so.

A round is a VerificationRound row, its checks VerificationCheck rows (listed pending when
the round starts, each given its result once), written in the transaction of the timeline
entry that says so; every read (the current round, whether a result is in, the room, the
rollback command) reads the rows. The entries keep their payloads (`payload.phase =
"verification"`, the run id, the round's key as `round`) for the room's live feed and the
post-mortem. A delivery of a round that is no longer running does nothing, and a check's
result is written only while it is pending, so a round delivered twice records each check
once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from executors.base import CheckResult, CheckStatus, ConfigError, internal_error
from executors.check_specs import check_name, checklist_key, validate_checks
from executors.checks import VerificationDefaults, run_check
from incidents.models import ChecklistItem, ChecklistKind, TimelineKind
from incidents.services import checklist_item_set
from incidents.timeline import timeline_append
from rollbacks import conf
from rollbacks.engine.dispatch import Dispatcher
from rollbacks.engine.run_finish import run_succeed
from rollbacks.models import (
    Run,
    RunState,
    Step,
    StepState,
    VerificationCheck,
    VerificationCheckStatus,
    VerificationOutcome,
    VerificationRound,
    VerificationState,
    VerificationTrigger,
)
from rollbacks.signals import send_run_finished

logger = logging.getLogger(__name__)

PHASE = "verification"
ACTOR = "verification"
STARTED = "started"
# How a round ends: its outcome, or "recorded" when the run had been paused or
# cancelled meanwhile (results kept, the run's state left alone).
PASSED, FAILED, INCONCLUSIVE, RECORDED = "passed", "failed", "inconclusive", "recorded"
NOT_RUN = "not run"  # the outcome of a round closed before it ran, as entries and the room say
_MAX_PARALLEL_CHECKS = 8


# -- what to check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCheck:
    """One check of a round: its spec, and the service and step it verifies."""

    index: int
    spec: Mapping[str, Any]
    service: str
    step_id: int
    version: str
    config_error: str = ""

    @property
    def name(self) -> str:
        return "checks config" if self.config_error else check_name(self.spec)

    @property
    def kind(self) -> str:
        return "config" if self.config_error else str(self.spec["kind"])

    @property
    def ticks(self) -> str:
        return "" if self.config_error else checklist_key(self.spec)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "check": self.name,
            "kind": self.kind,
            "service": self.service,
            "step": self.step_id,
        }


def planned_checks(run: Run, steps: Sequence[Step]) -> list[PlannedCheck]:
    """The checks of every service whose step succeeded, in step order; none for a dry run.

    A `checks` list that no longer validates (edited outside the admin) becomes one
    inconclusive "checks config" entry for its service, so a person looks at it.
    """
    if run.dry_run:
        return []
    planned: list[PlannedCheck] = []
    seen: set[int] = set()
    for step in sorted(steps, key=lambda step: step.position):
        if step.state != StepState.SUCCEEDED or step.service_id in seen:
            continue
        seen.add(step.service_id)
        config = step.service.target_config if isinstance(step.service.target_config, dict) else {}
        if "checks" not in config:
            continue
        version = step.to_version or step.reached_version
        try:
            specs = validate_checks(config["checks"])
        except ConfigError as error:
            planned.append(
                PlannedCheck(len(planned), {}, step.service.name, step.pk, version, str(error))
            )
            continue
        for spec in specs:
            planned.append(PlannedCheck(len(planned), spec, step.service.name, step.pk, version))
    return planned


# -- rounds ----------------------------------------------------------------------------------


def _latest_round(run: Run) -> VerificationRound | None:
    return VerificationRound.objects.filter(run=run).order_by("-number").first()


def _open_round(run_id: int, round_key: str) -> VerificationRound | None:
    """The round if it is still running (so the latest of its run), else None."""
    return VerificationRound.objects.filter(
        run_id=run_id, key=round_key, state=VerificationState.RUNNING
    ).first()


def hold_for_verification(
    run: Run, steps: Sequence[Step], dispatch: Dispatcher, *, requeue: bool = False
) -> bool:
    """Called by the engine, under the run's row lock, once every step is done: start a
    verification round when the services have checks and none is under way. Returns True
    while verification holds the run (the round decides how it ends), False when there is
    nothing to verify. `requeue` hands a round out again if it has been silent too long
    (its worker died, or its message was lost)."""
    planned = planned_checks(run, steps)
    if not planned:
        return False
    latest = _latest_round(run)
    if latest is not None and latest.is_running:
        lost_after = conf.verify_timeout_seconds() + conf.stale_after_seconds()
        if requeue and timezone.now() - latest.started_at > timedelta(seconds=lost_after):
            logger.warning("run %s: verification round %s handed out again", run.pk, latest.key)
            dispatch.verify_run(run.pk, latest.key)
        return True
    number = (latest.number if latest is not None else 0) + 1
    round_ = VerificationRound.objects.create(
        run=run,
        key=uuid.uuid4().hex,
        number=number,
        trigger=VerificationTrigger.STEPS_DONE if number == 1 else VerificationTrigger.RESUMED,
    )
    VerificationCheck.objects.bulk_create(
        VerificationCheck(
            round=round_,
            index=check.index,
            step_id=check.step_id,
            service=check.service,
            name=check.name,
            kind=check.kind,
            ticks=check.ticks,
        )
        for check in planned
    )
    services = sorted({check.service for check in planned})
    again = f" (round {number})" if number > 1 else ""
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk}: every step is done; verifying{again} {len(planned)} check(s) "
        f"on {', '.join(services)}",
        actor_label=ACTOR,
        payload={
            "run": run.pk,
            "state": run.state,
            "phase": PHASE,
            "event": STARTED,
            "round": round_.key,
            "number": number,
            "checks": [check.describe() for check in planned],
        },
    )
    dispatch.verify_run(run.pk, round_.key)
    return True


# -- running a round -------------------------------------------------------------------------


def _run_one(
    check: PlannedCheck,
    defaults: VerificationDefaults,
    connections: Any,
    since: datetime | None = None,
) -> CheckResult:
    if check.config_error:
        return CheckResult(check.name, CheckStatus.INCONCLUSIVE, check.config_error)
    try:
        return run_check(
            check.spec,
            version=check.version or None,
            connections=connections,
            defaults=defaults,
            since=since,
        )
    except Exception as error:  # a check must report, never take the round down
        logger.exception("verification check %s failed unexpectedly", check.name)
        return CheckResult(check.name, CheckStatus.INCONCLUSIVE, internal_error(error))


def verification_execute(run_id: int, round_id: str) -> str:
    """Run a verification round's checks in parallel, record each result as it comes, then
    conclude the round. Returns the conclusion, or "" when there was nothing to do (the
    round is not the latest, is already concluded, or the run is no longer running)."""
    run = Run.objects.select_related("incident").get(pk=run_id)
    round_ = _open_round(run_id, round_id)
    if round_ is None:
        return ""
    if run.state != RunState.RUNNING:
        return _abandon(run_id, round_)
    steps = list(run.steps.select_related("service"))
    planned = planned_checks(run, steps)
    defaults = conf.verification_defaults()
    connections = conf.connections()
    # Checks that count events (sentry_errors) count none from before the steps finished:
    # those belong to the release rolled back from.
    since = max((step.finished_at for step in steps if step.finished_at), default=None)
    workers = max(1, min(_MAX_PARALLEL_CHECKS, len(planned)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verification") as pool:
        futures = {
            pool.submit(_run_one, check, defaults, connections, since): check for check in planned
        }
        for future in as_completed(futures):
            _record_result(run, round_, futures[future], future.result())
    return _conclude(run_id, round_, planned)


def _close(round_: VerificationRound, state: str, outcome: str, summary: str) -> None:
    """Conclude the round's row; the caller holds its run's lock and writes the entry."""
    round_.state = state
    round_.outcome = outcome
    round_.finished_at = timezone.now()
    round_.summary = summary
    round_.save(update_fields=["state", "outcome", "finished_at", "summary"])


@transaction.atomic
def _abandon(run_id: int, round_: VerificationRound) -> str:
    """Close a round that reached a worker after its run was paused or cancelled, so that
    resuming the run starts a fresh one."""
    run = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run_id)
    if run.state == RunState.RUNNING or _open_round(run_id, round_.key) is None:
        return ""
    body = (
        f"Run #{run.pk} verification not run: the run was "
        f"{run.get_state_display().lower()} before it began"
    )
    _close(round_, VerificationState.RECORDED, VerificationOutcome.NOT_RUN, body)
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=body,
        actor_label=ACTOR,
        payload={
            "run": run.pk,
            "phase": PHASE,
            "round": round_.key,
            "number": round_.number,
            "event": RECORDED,
            "outcome": NOT_RUN,
            "state": run.state,
        },
    )
    return RECORDED


def _result_payload(
    run: Run, round_: VerificationRound, check: PlannedCheck, result: CheckResult
) -> dict[str, Any]:
    return {
        "run": run.pk,
        "phase": PHASE,
        "round": round_.key,
        "number": round_.number,
        **check.describe(),
        "outcome": str(result.status),
        "observed": result.observed,
        "threshold": result.threshold,
        "message": result.detail,
        "ticks": check.ticks,
    }


@transaction.atomic
def _record_result(
    run: Run, round_: VerificationRound, check: PlannedCheck, result: CheckResult
) -> None:
    locked = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run.pk)
    if _open_round(locked.pk, round_.key) is None:
        return
    fields = {
        "status": str(result.status),
        "observed": result.observed,
        "threshold": result.threshold,
        "message": result.detail,
        "ticks": check.ticks,
        "recorded_at": timezone.now(),
    }
    pending = round_.checks.filter(index=check.index, status=VerificationCheckStatus.PENDING)
    if not pending.update(**fields):
        # Already recorded by another delivery of this round, or a check the round did not
        # list when it started (the service's checks were edited since): that one is added.
        listed = {"step_id": check.step_id, "service": check.service, "name": check.name}
        _, added = round_.checks.get_or_create(
            index=check.index, defaults={**listed, "kind": check.kind, **fields}
        )
        if not added:
            return
    threshold = f" (want {result.threshold})" if result.threshold not in (None, "") else ""
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.CHECK_RESULT,
        body=f"Run #{locked.pk} verification: {check.name} on {check.service} "
        f"{result.status}: {result.detail}{threshold}",
        actor_label=ACTOR,
        payload=_result_payload(locked, round_, check, result),
    )


def _tick_checklist(run: Run, results: Sequence[VerificationCheck]) -> list[str]:
    """Tick the open post-rollback items whose key every check mapping to it passed."""
    by_key: dict[str, list[VerificationCheck]] = {}
    for result in results:
        if result.ticks:
            by_key.setdefault(result.ticks, []).append(result)
    passed_keys = {
        key: group
        for key, group in by_key.items()
        if all(result.status == CheckStatus.PASSED for result in group)
    }
    if not passed_keys:
        return []
    items = ChecklistItem.objects.filter(
        checklist__incident_id=run.incident_id,
        checklist__kind=ChecklistKind.POST_ROLLBACK,
        check_key__in=list(passed_keys),
        done_at__isnull=True,
    ).order_by("checklist__position", "position", "id")
    ticked = []
    for item in items:
        names = ", ".join(
            f"{result.name} on {result.service}" for result in passed_keys[item.check_key]
        )
        checklist_item_set(
            item=item,
            done=True,
            actor=None,
            automatically=True,
            reason=f"run #{run.pk} verification passed: {names}",
        )
        ticked.append(item.check_key)
    return ticked


def _summary(results: Sequence[VerificationCheck], outcome: str) -> str:
    picked = [result for result in results if result.status == outcome]
    return "; ".join(f"{result.name} on {result.service}: {result.message}" for result in picked)


@transaction.atomic
def _conclude(run_id: int, round_: VerificationRound, planned: Sequence[PlannedCheck]) -> str:
    run = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run_id)
    if _open_round(run_id, round_.key) is None:
        return ""
    recorded = {
        check.index: check
        for check in round_.checks.exclude(status=VerificationCheckStatus.PENDING)
    }
    results: list[VerificationCheck] = []
    for check in planned:
        results.append(
            recorded.get(check.index)
            or VerificationCheck(
                index=check.index,
                service=check.service,
                name=check.name,
                kind=check.kind,
                status=VerificationCheckStatus.INCONCLUSIVE,
                message="no result was recorded",
            )
        )
    outcomes = {result.status for result in results}
    if CheckStatus.FAILED in outcomes:
        outcome = FAILED
    elif CheckStatus.INCONCLUSIVE in outcomes or not results:
        outcome = INCONCLUSIVE
    else:
        outcome = PASSED
    ticked = _tick_checklist(run, results)
    counts = ", ".join(
        f"{sum(1 for r in results if r.status == status)} {status}"
        for status in (PASSED, FAILED, INCONCLUSIVE)
        if any(r.status == status for r in results)
    )
    payload: dict[str, Any] = {
        "run": run.pk,
        "phase": PHASE,
        "round": round_.key,
        "number": round_.number,
        "outcome": outcome,
        "ticked": ticked,
    }
    now = timezone.now()

    def conclude(event: str, body: str) -> None:
        _close(round_, event, outcome, body)
        timeline_append(
            incident=run.incident,
            kind=TimelineKind.RUN,
            body=body,
            actor_label=ACTOR,
            payload={**payload, "event": event, "state": run.state},
        )

    if run.state != RunState.RUNNING:
        conclude(
            RECORDED,
            f"Run #{run.pk} verification finished while the run was "
            f"{run.get_state_display().lower()} ({counts}); the run stays as it is"
            + ("; resuming it verifies again" if run.state == RunState.PAUSED else ""),
        )
        return RECORDED
    if outcome == FAILED:
        reason = "verification failed: " + _summary(results, FAILED)
        run.state = RunState.FAILED
        run.finished_at = now
        run.failure_reason = reason
        run.save(update_fields=["state", "finished_at", "failure_reason"])
        conclude(FAILED, f"Run #{run.pk} failed: {reason} ({counts})")
        send_run_finished(run)
        return FAILED
    if outcome == INCONCLUSIVE:
        run.state = RunState.PAUSED
        run.paused_at = now
        run.save(update_fields=["state", "paused_at"])
        unknown = _summary(results, INCONCLUSIVE) or "no checks reported"
        conclude(
            INCONCLUSIVE,
            f"Run #{run.pk} paused: verification inconclusive ({counts}): {unknown}. "
            "Missing data is never a pass: resume the run to verify again, or cancel it.",
        )
        return INCONCLUSIVE
    conclude(PASSED, f"Run #{run.pk} verified: all {len(results)} check(s) passed")
    steps = list(run.steps.select_related("service").order_by("group", "position"))
    run_succeed(run, steps, verified=True)
    return PASSED


# -- reading, for the room -------------------------------------------------------------------


def pause_reason(run: Run) -> str:
    """The timeline's sentence when the run's latest round paused it as inconclusive, else ""."""
    if run.state != RunState.PAUSED:
        return ""
    latest = _latest_round(run)
    if latest is None or latest.state != VerificationState.INCONCLUSIVE:
        return ""
    return latest.summary


@dataclass
class CheckRow:
    """One check of a round as the room shows it."""

    name: str
    kind: str
    service: str
    outcome: str = "pending"
    observed: Any = None
    threshold: Any = None
    message: str = ""


@dataclass
class RunVerification:
    """A run's latest verification round: its checks and how it ended ("" while running)."""

    number: int
    started_at: datetime
    conclusion: str = ""
    rows: list[CheckRow] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        return self.conclusion or "running"


def attach_to_runs(runs: Iterable[Run]) -> None:
    """Set `run.verification` (a RunVerification, or None) on each run, in two queries: the
    latest round of every run, and their checks."""
    runs = list(runs)
    for run in runs:
        run.verification = None  # type: ignore[attr-defined]
    if not runs:
        return
    by_id = {run.pk: run for run in runs}
    latest_rounds = (
        VerificationRound.objects.filter(run_id__in=by_id)
        .order_by("run_id", "-number")
        .distinct("run_id")
        .prefetch_related("checks")
    )
    for round_ in latest_rounds:
        outcome = round_.outcome
        by_id[round_.run_id].verification = RunVerification(  # type: ignore[attr-defined]
            round_.number,
            round_.started_at,
            conclusion=NOT_RUN if outcome == VerificationOutcome.NOT_RUN else outcome,
            rows=[
                CheckRow(
                    check.name,
                    check.kind,
                    check.service,
                    check.status,
                    check.observed,
                    check.threshold,
                    check.message,
                )
                for check in round_.checks.all()
            ],
        )
