"""One rollback at a time per service.

Two runs that change the same service would both "succeed", leaving it at whichever applied
last. So a run that is about to start (or to be sent for approval, or to carry on after a
retried step) first locks the rows of the services its steps touch, in id order, and looks
for other runs that touch any of them and are in flight: running or paused when it starts,
also awaiting approval or approved when it asks for approval. Locking the service rows is
what makes two commanders starting at the same moment take turns: the second one sees the
first one's run as running, and is refused with the run named and linked.

`supersede=True` cancels those runs first (on their own incidents' timelines, saying which
run superseded them) and goes on, in the same transaction: if the start is then refused for
another reason, nothing was cancelled.

Dry runs change nothing, so they neither block nor are blocked. Drills do change their
(non-production) services, so they count like any run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.urls import reverse

from incidents.errors import DomainError
from incidents.models import Service, TimelineKind
from incidents.roles import User
from incidents.timeline import timeline_append
from rollbacks.models import Run, RunState

STARTING_BLOCKED_BY = (RunState.RUNNING, RunState.PAUSED)
REQUESTING_BLOCKED_BY = (
    RunState.AWAITING_APPROVAL,
    RunState.APPROVED,
    RunState.RUNNING,
    RunState.PAUSED,
)

CancelRun = Callable[..., Run]


def run_link(run: Run) -> str:
    """Where a run is shown: its incident's room, at the run."""
    return reverse("incident_room", args=[run.incident_id]) + f"#run-{run.pk}"


class RunConflict(DomainError):
    """Runs in flight touch services this run would change."""

    def __init__(self, run: Run, blockers: Sequence[Run], shared: dict[int, list[str]]) -> None:
        described = "; ".join(
            f"run #{other.pk} ({other.get_state_display().lower()}, incident "
            f"#{other.incident_id}) changes {', '.join(shared[other.pk])}: {run_link(other)}"
            for other in blockers
        )
        super().__init__(
            f"Another rollback is in flight on the same service: {described}. Wait for it, "
            f"cancel it, or supersede it (cancel it and go on with run #{run.pk})."
        )
        self.blockers = list(blockers)


def services_lock(run: Run) -> list[int]:
    """Lock the rows of the services the run's steps touch (in id order, so that two runs
    never wait on each other); their ids."""
    ids = sorted(set(run.steps.values_list("service_id", flat=True)))
    list(Service.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk"))
    return ids


def runs_in_flight(run: Run, service_ids: Sequence[int], states: Sequence[str]) -> list[Run]:
    """The other runs in `states` that touch any of `service_ids` (dry runs left out)."""
    return list(
        Run.objects.filter(state__in=states, dry_run=False, steps__service_id__in=service_ids)
        .exclude(pk=run.pk)
        .select_related("incident")
        .distinct()
        .order_by("pk")
    )


def run_claim_services(
    *,
    run: Run,
    actor: User,
    blocked_by: Sequence[str],
    supersede: bool,
    cancel: CancelRun,
) -> list[Run]:
    """Make sure no other run in `blocked_by` states touches the run's services, cancelling
    them with `cancel` (rollbacks.services.run_cancel) when `supersede`; RunConflict when
    there are such runs and not `supersede`. Returns the runs it cancelled. Call it inside
    the transaction that changes the run's state."""
    if run.dry_run:
        return []
    service_ids = services_lock(run)
    blockers = runs_in_flight(run, service_ids, blocked_by)
    if not blockers:
        return []
    names = dict(Service.objects.filter(pk__in=service_ids).values_list("pk", "name"))
    shared = {
        other.pk: sorted(
            {
                names[service_id]
                for service_id in other.steps.values_list("service_id", flat=True)
                if service_id in names
            }
        )
        for other in blockers
    }
    if not supersede:
        raise RunConflict(run, blockers, shared)
    for other in blockers:
        cancel(
            run=other,
            actor=actor,
            reason=f"superseded by run #{run.pk} of incident #{run.incident_id} "
            f"({', '.join(shared[other.pk])})",
        )
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=f"Run #{run.pk} supersedes "
        + ", ".join(
            f"run #{other.pk} of incident #{other.incident_id} ({', '.join(shared[other.pk])})"
            for other in blockers
        )
        + ": cancelled",
        actor=actor,
        payload={"run": run.pk, "superseded": [other.pk for other in blockers]},
    )
    return blockers
