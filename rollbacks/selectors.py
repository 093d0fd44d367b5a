"""Read-side queries of the rollback pages, each with a constant number of queries (and,
per draft run, the two that say which approvals it will need)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Prefetch

from incidents.models import Incident
from rollbacks.approvals import run_policy
from rollbacks.models import ApprovalRequest, ApprovalRequestStatus, Run, RunState, Step, StepLog


def incident_approval_requests(incident: Incident) -> list[ApprovalRequest]:
    """Approval requests, newest first, with their decisions."""
    return list(
        incident.approval_requests.select_related("requested_by").prefetch_related(
            "approvals__approver"
        )
    )


def approvals_awaiting(user: User | AnonymousUser) -> list[ApprovalRequest]:
    """Pending requests that still need a role `user` holds and that `user` did not request."""
    if not user.is_authenticated:
        return []
    held = set(user.groups.values_list("name", flat=True))
    pending = (
        ApprovalRequest.objects.filter(status=ApprovalRequestStatus.PENDING)
        .exclude(requested_by=user)
        .exclude(approvals__approver=user)
        .select_related("incident", "requested_by")
        .prefetch_related("approvals")
    )
    return [request for request in pending if held & set(request.missing_roles())]


LOG_TAIL_LINES = 50
LOG_PAGE_LINES = 500


def incident_runs(incident: Incident) -> list[Run]:
    """The incident's rollback runs, newest first, each step with the last
    LOG_TAIL_LINES lines of its log (`step.log_tail`), in four queries whatever the number
    of steps; each tail is an index range read however long the log is."""
    steps = Step.objects.select_related("service", "release").order_by("position")
    runs = list(
        incident.runs.select_related("created_by", "confirmed_by", "approval_request")
        .prefetch_related(Prefetch("steps", queryset=steps))
        .order_by("-id")
    )
    all_steps = [step for run in runs for step in run.steps.all()]
    tails: dict[int, list[StepLog]] = {step.pk: [] for step in all_steps}
    if all_steps:
        recent = StepLog.objects.raw(
            "SELECT line.* FROM unnest(%s::bigint[]) AS wanted(step_id)"
            " CROSS JOIN LATERAL (SELECT * FROM incidents_steplog"
            " WHERE step_id = wanted.step_id ORDER BY seq DESC LIMIT %s) AS line"
            " ORDER BY line.step_id, line.seq",
            [list(tails), LOG_TAIL_LINES],
        )
        for line in recent:
            tails[line.step_id].append(line)
    for step in all_steps:
        step.log_tail = tails[step.pk]  # type: ignore[attr-defined]
    for run in runs:
        # What approval a draft will need, shown before the commander asks for it.
        run.policy_preview = run_policy(run) if run.state == RunState.DRAFT else None  # type: ignore[attr-defined]
    return runs


def step_log_page(
    step: Step, *, before: int | None = None, after: int | None = None
) -> list[StepLog]:
    """A window of up to LOG_PAGE_LINES lines of a step's log, in order: the lines just
    before `before`, just after `after`, or the last ones; an index range read."""
    lines = StepLog.objects.filter(step=step)
    if after is not None:
        return list(lines.filter(seq__gt=after).order_by("seq")[:LOG_PAGE_LINES])
    if before is not None:
        lines = lines.filter(seq__lt=before)
    return list(reversed(lines.order_by("-seq")[:LOG_PAGE_LINES]))
