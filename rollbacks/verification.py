"""Verification after a rollback: the checks each service lists in its target config run
once every step of a run has finished, and decide how the run ends.

A service lists its checks under `checks` in its target config (schema and kinds in
executors.checks: http, command, kubernetes_pods, prometheus). When the last group of a
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
(executors.checks.checklist_key), as the automation, with the timeline entry saying so.

Rounds are known from the timeline only (no model field): each entry carries
`payload.phase = "verification"`, the run id and the round's id. A delivery of a round that
is no longer the latest, or already concluded, does nothing; results are fenced the same way,
so a round delivered twice records each check once.
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

from executors.base import CheckResult, CheckStatus, ConfigError
from executors.checks import (
    VerificationDefaults,
    check_name,
    checklist_key,
    run_check,
    validate_checks,
)
from incidents.models import ChecklistItem, ChecklistKind, TimelineEntry, TimelineKind
from incidents.services import checklist_item_set
from incidents.timeline import timeline_append
from rollbacks import conf
from rollbacks.engine.dispatch import Dispatcher
from rollbacks.engine.run_finish import run_succeed
from rollbacks.models import Run, RunState, Step, StepState
from rollbacks.signals import send_run_finished

logger = logging.getLogger(__name__)

PHASE = "verification"
ACTOR = "verification"
STARTED = "started"
# How a round ends: its outcome, or "recorded" when the run had been paused or
# cancelled meanwhile (results kept, the run's state left alone).
PASSED, FAILED, INCONCLUSIVE, RECORDED = "passed", "failed", "inconclusive", "recorded"
CONCLUSIONS = (PASSED, FAILED, INCONCLUSIVE, RECORDED)
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


# -- rounds, as the timeline records them ----------------------------------------------------


@dataclass(frozen=True)
class _Round:
    id: str
    number: int
    started_at: datetime
    conclusion: str


def _entries(run: Run) -> Any:
    return TimelineEntry.objects.filter(
        incident_id=run.incident_id, payload__phase=PHASE, payload__run=run.pk
    )


def _latest_round(run: Run) -> _Round | None:
    started = _entries(run).filter(kind=TimelineKind.RUN, payload__event=STARTED).order_by("-id")
    entry = started.first()
    if entry is None:
        return None
    round_id = entry.payload["round"]
    conclusion = (
        _entries(run)
        .filter(kind=TimelineKind.RUN, payload__round=round_id, payload__event__in=CONCLUSIONS)
        .values_list("payload__event", flat=True)
        .first()
    )
    return _Round(round_id, int(entry.payload.get("number", 1)), entry.created_at, conclusion or "")


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
    if latest is not None and not latest.conclusion:
        lost_after = conf.verify_timeout_seconds() + conf.stale_after_seconds()
        if requeue and timezone.now() - latest.started_at > timedelta(seconds=lost_after):
            logger.warning("run %s: verification round %s handed out again", run.pk, latest.id)
            dispatch.verify_run(run.pk, latest.id)
        return True
    number = (latest.number if latest is not None else 0) + 1
    round_id = uuid.uuid4().hex
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
            "round": round_id,
            "number": number,
            "checks": [check.describe() for check in planned],
        },
    )
    dispatch.verify_run(run.pk, round_id)
    return True


# -- running a round -------------------------------------------------------------------------


def _run_one(check: PlannedCheck, defaults: VerificationDefaults, connections: Any) -> CheckResult:
    if check.config_error:
        return CheckResult(check.name, CheckStatus.INCONCLUSIVE, check.config_error)
    try:
        return run_check(
            check.spec, version=check.version or None, connections=connections, defaults=defaults
        )
    except Exception as error:  # a check must report, never take the round down
        logger.exception("verification check %s failed unexpectedly", check.name)
        return CheckResult(check.name, CheckStatus.INCONCLUSIVE, f"internal error: {error!r}")


def verification_execute(run_id: int, round_id: str) -> str:
    """Run a verification round's checks in parallel, record each result as it comes, then
    conclude the round. Returns the conclusion, or "" when there was nothing to do (the
    round is not the latest, is already concluded, or the run is no longer running)."""
    run = Run.objects.select_related("incident").get(pk=run_id)
    latest = _latest_round(run)
    if latest is None or latest.id != round_id or latest.conclusion:
        return ""
    if run.state != RunState.RUNNING:
        return _abandon(run_id, latest)
    steps = list(run.steps.select_related("service"))
    planned = planned_checks(run, steps)
    defaults = conf.verification_defaults()
    connections = conf.connections()
    workers = max(1, min(_MAX_PARALLEL_CHECKS, len(planned)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verification") as pool:
        futures = {pool.submit(_run_one, check, defaults, connections): check for check in planned}
        for future in as_completed(futures):
            _record_result(run, latest, futures[future], future.result())
    return _conclude(run_id, latest, planned)


@transaction.atomic
def _abandon(run_id: int, round_: _Round) -> str:
    """Close a round that reached a worker after its run was paused or cancelled, so that
    resuming the run starts a fresh one."""
    run = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run_id)
    if run.state == RunState.RUNNING or not _still_open(run, round_):
        return ""
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} verification not run: the run was "
        f"{run.get_state_display().lower()} before it began",
        actor_label=ACTOR,
        payload={
            "run": run.pk,
            "phase": PHASE,
            "round": round_.id,
            "number": round_.number,
            "event": RECORDED,
            "outcome": "not run",
            "state": run.state,
        },
    )
    return RECORDED


def _result_payload(
    run: Run, round_: _Round, check: PlannedCheck, result: CheckResult
) -> dict[str, Any]:
    return {
        "run": run.pk,
        "phase": PHASE,
        "round": round_.id,
        "number": round_.number,
        **check.describe(),
        "outcome": str(result.status),
        "observed": result.observed,
        "threshold": result.threshold,
        "message": result.detail,
        "ticks": check.ticks,
    }


def _still_open(run: Run, round_: _Round) -> bool:
    latest = _latest_round(run)
    return latest is not None and latest.id == round_.id and not latest.conclusion


@transaction.atomic
def _record_result(run: Run, round_: _Round, check: PlannedCheck, result: CheckResult) -> None:
    locked = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run.pk)
    if not _still_open(locked, round_):
        return
    if (
        _entries(locked)
        .filter(
            kind=TimelineKind.CHECK_RESULT, payload__round=round_.id, payload__index=check.index
        )
        .exists()
    ):
        return  # another delivery of this round recorded it first
    threshold = f" (want {result.threshold})" if result.threshold not in (None, "") else ""
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.CHECK_RESULT,
        body=f"Run #{locked.pk} verification: {check.name} on {check.service} "
        f"{result.status}: {result.detail}{threshold}",
        actor_label=ACTOR,
        payload=_result_payload(locked, round_, check, result),
    )


def _tick_checklist(run: Run, results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Tick the open post-rollback items whose key every check mapping to it passed."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        if result.get("ticks"):
            by_key.setdefault(result["ticks"], []).append(result)
    passed_keys = {
        key: group
        for key, group in by_key.items()
        if all(result["outcome"] == CheckStatus.PASSED for result in group)
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
            f"{result['check']} on {result['service']}" for result in passed_keys[item.check_key]
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


def _summary(results: Sequence[Mapping[str, Any]], outcome: str) -> str:
    picked = [result for result in results if result["outcome"] == outcome]
    return "; ".join(
        f"{result['check']} on {result['service']}: {result['message']}" for result in picked
    )


@transaction.atomic
def _conclude(run_id: int, round_: _Round, planned: Sequence[PlannedCheck]) -> str:
    run = Run.objects.select_for_update(no_key=True).select_related("incident").get(pk=run_id)
    if not _still_open(run, round_):
        return ""
    recorded = {
        entry.payload["index"]: entry.payload
        for entry in _entries(run).filter(kind=TimelineKind.CHECK_RESULT, payload__round=round_.id)
    }
    results: list[Mapping[str, Any]] = []
    for check in planned:
        results.append(
            recorded.get(check.index)
            or {
                **check.describe(),
                "outcome": str(CheckStatus.INCONCLUSIVE),
                "message": "no result was recorded",
                "ticks": "",
            }
        )
    outcomes = {result["outcome"] for result in results}
    if CheckStatus.FAILED in outcomes:
        outcome = FAILED
    elif CheckStatus.INCONCLUSIVE in outcomes or not results:
        outcome = INCONCLUSIVE
    else:
        outcome = PASSED
    ticked = _tick_checklist(run, results)
    counts = ", ".join(
        f"{sum(1 for r in results if r['outcome'] == status)} {status}"
        for status in (PASSED, FAILED, INCONCLUSIVE)
        if any(r["outcome"] == status for r in results)
    )
    payload: dict[str, Any] = {
        "run": run.pk,
        "phase": PHASE,
        "round": round_.id,
        "number": round_.number,
        "outcome": outcome,
        "ticked": ticked,
    }
    now = timezone.now()

    def conclude(event: str, body: str) -> None:
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
    latest = _latest_round(run)
    if latest is None or latest.conclusion != INCONCLUSIVE or run.state != RunState.PAUSED:
        return ""
    entry = (
        _entries(run)
        .filter(kind=TimelineKind.RUN, payload__round=latest.id, payload__event=INCONCLUSIVE)
        .first()
    )
    return entry.body if entry is not None else ""


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
    """Set `run.verification` (a RunVerification, or None) on each run, in one query."""
    runs = list(runs)
    for run in runs:
        run.verification = None  # type: ignore[attr-defined]
    if not runs:
        return
    by_id = {run.pk: run for run in runs}
    entries = TimelineEntry.objects.filter(
        incident_id__in={run.incident_id for run in runs},
        payload__phase=PHASE,
        kind__in=[TimelineKind.RUN, TimelineKind.CHECK_RESULT],
    ).order_by("id")
    rounds: dict[int, RunVerification] = {}
    current: dict[int, str] = {}
    rows: dict[int, dict[int, CheckRow]] = {}
    for entry in entries:
        payload = entry.payload
        run_id = payload.get("run")
        if run_id not in by_id:
            continue
        if entry.kind == TimelineKind.RUN and payload.get("event") == STARTED:
            current[run_id] = payload.get("round", "")
            rounds[run_id] = RunVerification(int(payload.get("number", 1)), entry.created_at)
            rows[run_id] = {
                int(check["index"]): CheckRow(check["check"], check["kind"], check["service"])
                for check in payload.get("checks", [])
            }
        elif payload.get("round") != current.get(run_id):
            continue
        elif entry.kind == TimelineKind.RUN and payload.get("event") in CONCLUSIONS:
            rounds[run_id].conclusion = (
                payload.get("outcome", "") if payload["event"] == RECORDED else payload["event"]
            )
        elif entry.kind == TimelineKind.CHECK_RESULT:
            row = rows[run_id].setdefault(
                int(payload.get("index", -1)),
                CheckRow(payload.get("check", "?"), payload.get("kind", "?"), payload["service"]),
            )
            row.outcome = payload.get("outcome", "")
            row.observed = payload.get("observed")
            row.threshold = payload.get("threshold")
            row.message = payload.get("message", "")
    for run_id, verification in rounds.items():
        verification.rows = [row for _, row in sorted(rows[run_id].items())]
        by_id[run_id].verification = verification  # type: ignore[attr-defined]
