"""Drafting a rollback plan and previewing it: `run_create` turns services and targets into
a run's steps, each with the version its service runs now; `run_dry_run` asks every step's
backend what it would change, without changing anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from django.db import transaction
from django.utils import timezone

from executors.base import BackendError, Change
from executors.registry import backend_class
from incidents.errors import DomainError
from incidents.models import Incident, Release, Service, TimelineKind
from incidents.roles import COMMAND_PERMISSION, User, require_role
from incidents.services import incident_lock
from incidents.timeline import timeline_append
from rollbacks import conf
from rollbacks.engine.backends import backend_for, release_label, target_for
from rollbacks.live_versions import live_versions_read
from rollbacks.models import Run, RunState, Scenario, Step, StepState
from rollbacks.services.run_locks import run_lock, run_require_state
from rollbacks.services.step_options import ACKNOWLEDGE_OPTION, data_loss, step_params

DEFAULT_STEP_TIMEOUT = 600
MAX_STEP_TIMEOUT = 3600


@dataclass(frozen=True)
class StepSpec:
    """One step of a plan to draft.

    The target is a `release` of the service, or `previous=True` (the revision before the
    live one), or neither when `params` alone say what to do (e.g. {"operation":
    "restart"}, or a feature flag turned off). Steps with the same `group` run together;
    `group=None` puts the step in a group of its own after the previous step's.
    """

    service: Service
    release: Release | None = None
    previous: bool = False
    group: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    # What the step's group does, in a few words (a playbook's group label).
    group_label: str = ""
    timeout_seconds: int = DEFAULT_STEP_TIMEOUT


@dataclass(frozen=True)
class StepPreview:
    """What one step would do, from its backend's plan. `error` is set when planning
    failed (the other fields are then empty)."""

    step: Step
    summary: str
    current_version: str | None
    changes: tuple[Change, ...]
    error: str = ""

    @property
    def is_noop(self) -> bool:
        return not self.error and not self.changes


def plan_steps_text(steps: Sequence[Step]) -> str:
    """A plan's steps as timeline entries list them: "web v2 → v1 [group 1]; …", with the
    commander's acknowledgement of the data a restore loses, word for word."""
    return "; ".join(
        f"{step.service.name} {step.from_version or '?'} → {step.target_label}"
        + (f" [group {step.group}]" if len({s.group for s in steps}) > 1 else "")
        + (
            f" (data loss acknowledged: “{step.params[ACKNOWLEDGE_OPTION]}”)"
            if step.params.get(ACKNOWLEDGE_OPTION)
            else ""
        )
        for step in steps
    )


def plan_kind_label(run: Run) -> str:
    """ "Dry-run", "Drill" or "Rollback", as timeline entries name a plan and its run."""
    return "Dry-run" if run.dry_run else "Drill" if run.drill else "Rollback"


def _check_spec(spec: StepSpec, incident: Incident, drill: bool) -> None:
    service = spec.service
    if spec.release is not None and spec.release.service_id != service.pk:
        raise DomainError(f"Release {spec.release.version} is not a release of {service.name}.")
    if spec.release is not None and spec.previous:
        raise DomainError(f"{service.name}: choose a release or the previous revision, not both.")
    if not isinstance(spec.params, Mapping):
        raise DomainError(f"{service.name}: step parameters must be an object.")
    if not 1 <= spec.timeout_seconds <= MAX_STEP_TIMEOUT:
        raise DomainError(f"{service.name}: the timeout must be 1 to {MAX_STEP_TIMEOUT} seconds.")
    if spec.group is not None and spec.group < 1:
        raise DomainError(f"{service.name}: parallel groups are numbered from 1.")
    if not drill and service.environment != incident.environment:
        raise DomainError(
            f"{service.name} is a {service.environment} service; this incident is in "
            f"{incident.environment} (draft a drill to rehearse elsewhere)."
        )
    try:
        backend_class(service.backend).validate_config(service.target_config)
    except KeyError:
        raise DomainError(f"{service.name}: unknown backend {service.backend!r}.") from None
    except BackendError as error:
        raise DomainError(f"{service.name}: invalid target config: {error}") from error


def run_create(
    *,
    incident: Incident,
    steps: Sequence[StepSpec],
    actor: User,
    reason: str = "",
    scenario: str = Scenario.ANY,
    dry_run: bool = False,
    drill: bool = False,
) -> Run:
    """Draft a run: one step per spec, each with the version its service runs now.

    Live versions are read from the infrastructure before the transaction; a version that
    cannot be read is left blank and the timeline says why.
    """
    require_role(actor, COMMAND_PERMISSION, "draft rollback plans")
    if not steps:
        raise DomainError("A rollback plan needs at least one step.")
    if scenario not in Scenario.values:
        raise DomainError(f"Unknown scenario {scenario!r}.")
    for spec in steps:
        _check_spec(spec, incident, drill)
    connections = conf.connections()
    params = [
        step_params(
            spec.service,
            given=spec.params,
            release=spec.release,
            incident=incident,
            live=True,
            connections=connections,
        )
        for spec in steps
    ]
    live = live_versions_read([spec.service for spec in steps])

    with transaction.atomic():
        locked = incident_lock(incident)
        if not locked.is_open:
            raise DomainError("The incident is resolved; reopen it first.")
        run = Run.objects.create(
            incident=locked,
            reason=reason.strip(),
            scenario=scenario,
            dry_run=dry_run,
            drill=drill,
            created_by=cast(Any, actor) if actor.is_authenticated else None,
        )
        group = 0
        created: list[Step] = []
        unknown: dict[str, str] = {}
        for position, (spec, step_options) in enumerate(zip(steps, params, strict=True), start=1):
            group = spec.group if spec.group is not None else group + 1
            version, why = live[spec.service.pk]
            if version is None:
                unknown[spec.service.name] = why or "the backend reports no live version"
            created.append(
                Step.objects.create(
                    run=run,
                    position=position,
                    group=group,
                    group_label=spec.group_label.strip()[:200],
                    service=spec.service,
                    backend=spec.service.backend,
                    release=spec.release,
                    from_version=release_label(spec.service, version),
                    to_version=spec.release.version if spec.release else "",
                    to_artifact=spec.release.artifact if spec.release else "",
                    to_previous=spec.previous,
                    params=step_options,
                    timeout_seconds=spec.timeout_seconds,
                )
            )
        caveat = "".join(
            f"; live version of {name} unknown: {why}" for name, why in unknown.items()
        )
        timeline_append(
            incident=locked,
            kind=TimelineKind.RUN,
            body=f"{plan_kind_label(run)} plan #{run.pk} drafted: "
            f"{plan_steps_text(created)}{caveat}",
            actor=actor,
            payload={
                "run": run.pk,
                "state": run.state,
                "dry_run": dry_run,
                "drill": drill,
                "steps": [
                    {
                        "step": step.pk,
                        "position": step.position,
                        "group": step.group,
                        "service": step.service.name,
                        "from": step.from_version,
                        "to": step.target_label,
                    }
                    for step in created
                ],
                "unknown_live_versions": unknown,
            },
        )
    return run


def run_dry_run(*, run: Run, actor: User) -> list[StepPreview]:
    """Ask every step's backend what it would change, without changing anything; store and
    return the previews. A step whose plan fails gets its error, not an exception."""
    require_role(actor, COMMAND_PERMISSION, "preview rollback plans")
    run_require_state(
        run,
        (RunState.DRAFT, RunState.AWAITING_APPROVAL, RunState.APPROVED),
        "preview it",
    )
    steps = list(run.steps.select_related("service").order_by("position"))
    connections = conf.connections()
    incident = run.incident  # read here: the previews run on other threads

    def preview(step: Step) -> StepPreview:
        if step.state == StepState.SKIPPED:
            return StepPreview(step, f"skipped: {step.skip_reason}", None, ())
        try:
            backend = backend_for(step.service, connections=connections)
            plan = backend.plan(target_for(step))
            loss = data_loss(backend, step.params, incident)
        except BackendError as error:
            return StepPreview(step, "", None, (), error=str(error))
        summary = plan.summary + (f"; {loss.text()}" if loss is not None else "")
        return StepPreview(step, summary, plan.current_version, plan.changes)

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(steps)))) as pool:
        previews = list(pool.map(preview, steps))

    with transaction.atomic():
        locked = run_lock(run)
        run_require_state(
            locked,
            (RunState.DRAFT, RunState.AWAITING_APPROVAL, RunState.APPROVED),
            "preview it",
        )
        for item in previews:
            item.step.plan_summary = item.error and f"cannot plan: {item.error}" or item.summary
            item.step.planned_changes = [change.as_json() for change in item.changes]
            item.step.save(update_fields=["plan_summary", "planned_changes"])
        locked.planned_at = timezone.now()
        locked.save(update_fields=["planned_at"])
        changes = sum(len(item.changes) for item in previews)
        failed = [item for item in previews if item.error]
        body = (
            f"Dry run of plan #{locked.pk}: {changes} change(s) over {len(previews)} step(s); "
            "nothing was changed"
        )
        if failed:
            body += "; could not plan " + ", ".join(
                f"{item.step.service.name} ({item.error})" for item in failed
            )
        timeline_append(
            incident=locked.incident,
            kind=TimelineKind.RUN,
            body=body,
            actor=actor,
            payload={
                "run": locked.pk,
                "state": locked.state,
                "preview": [
                    {
                        "step": item.step.pk,
                        "summary": item.summary,
                        "error": item.error,
                        "changes": [change.as_json() for change in item.changes],
                    }
                    for item in previews
                ],
            },
        )
    return previews
