"""Approvals for rollback runs: which roles a run needs by severity and scenario, requests,
decisions (never by the requester: the two-person rule, also enforced by a trigger), and
what a decision does to the run it belongs to."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import User as Person
from django.db import transaction
from django.utils import timezone

from executors.registry import backend_class
from incidents.errors import DomainError
from incidents.models import Incident, TimelineKind
from incidents.roles import APPROVE_PERMISSION, User, require_role
from incidents.services import incident_lock
from incidents.timeline import timeline_append
from rollbacks.models import (
    Approval,
    ApprovalDecision,
    ApprovalPolicy,
    ApprovalRequest,
    ApprovalRequestStatus,
    Run,
    RunState,
    Scenario,
)


def policy_reasons(
    *, severity: str, scenario: str, restoring: Sequence[str] = ()
) -> list[dict[str, str]]:
    """Each approver role the active policies ask for, once, with the policy that asks and
    why it applies: {"role", "policy", "why"}, in a stable order. `restoring` names the
    services the plan restores data on; such a plan also counts as a data-corruption one."""
    reasons: list[dict[str, str]] = []
    restores_data = bool(restoring)
    for policy in ApprovalPolicy.objects.filter(active=True).order_by("name"):
        if not policy.applies_to(severity=severity, scenario=scenario, restores_data=restores_data):
            continue
        why = _why(policy, severity=severity, scenario=scenario, restoring=restoring)
        for role in policy.required_roles:
            if role not in {reason["role"] for reason in reasons}:
                reasons.append({"role": role, "policy": policy.name, "why": why})
    return reasons


def _why(policy: ApprovalPolicy, *, severity: str, scenario: str, restoring: Sequence[str]) -> str:
    restores = f"{', '.join(restoring)} restore{'s' if len(restoring) == 1 else ''} data"
    if policy.restores_data:
        return restores
    if policy.scenario == Scenario.DATA_CORRUPTION and scenario != Scenario.DATA_CORRUPTION:
        return f"{restores}: a data restore"
    if policy.scenario != Scenario.ANY:
        return Scenario(policy.scenario).label.lower()
    return f"severity {severity}" if policy.severities else "every rollback"


def plan_restoring(run: Run) -> list[str]:
    """The services on which the run's steps restore data (their backend says so)."""
    names = []
    for backend, name in run.steps.values_list("backend", "service__name").order_by("position"):
        try:
            restores = backend_class(backend).restores_data
        except KeyError:
            restores = False
        if restores and name not in names:
            names.append(name)
    return names


def run_policy(run: Run) -> list[dict[str, str]]:
    """The approvals the run needs as things stand (its incident's severity, its scenario,
    what its steps do), with why: what the room shows before approval is requested."""
    return policy_reasons(
        severity=run.incident.severity, scenario=run.scenario, restoring=plan_restoring(run)
    )


def required_roles_for(*, severity: str, scenario: str, restoring: Sequence[str] = ()) -> list[str]:
    """The approver roles every active matching policy asks for, in a stable order."""
    return [
        reason["role"]
        for reason in policy_reasons(severity=severity, scenario=scenario, restoring=restoring)
    ]


def reasons_text(reasons: Sequence[dict[str, str]]) -> str:
    """ "DBA (Database restores need a DBA: orders-db restores data), CTO (…)"."""
    return ", ".join(
        f"{reason['role']} ({reason['policy']}: {reason['why']})" for reason in reasons
    )


@transaction.atomic
def approval_request_open(
    *,
    incident: Incident,
    requested_by: User,
    scenario: str,
    reason: str,
    restoring: Sequence[str] = (),
) -> ApprovalRequest:
    """Ask for the approvals the incident's severity and scenario need, and those a plan
    restoring data on the `restoring` services needs.

    With no matching policy the request is approved at once, and the timeline says so.
    """
    requester = require_role(
        requested_by, "incidents.command_incident", "request rollback approval"
    )
    if scenario not in Scenario.values:
        raise DomainError(f"Unknown scenario {scenario!r}.")
    if not reason.strip():
        raise DomainError("Say why the rollback is needed.")
    locked = incident_lock(incident)
    if not locked.is_open:
        raise DomainError("The incident is resolved; reopen it first.")
    if locked.approval_requests.filter(status=ApprovalRequestStatus.PENDING).exists():
        raise DomainError("An approval request is already pending for this incident.")
    reasons = policy_reasons(severity=locked.severity, scenario=scenario, restoring=restoring)
    roles = [item["role"] for item in reasons]
    request = ApprovalRequest.objects.create(
        incident=locked,
        scenario=scenario,
        reason=reason.strip(),
        requested_by=requester,
        required_roles=roles,
        reasons=reasons,
        status=ApprovalRequestStatus.PENDING if roles else ApprovalRequestStatus.APPROVED,
        decided_at=None if roles else timezone.now(),
    )
    needed = reasons_text(reasons) if reasons else "no approval (no policy applies)"
    timeline_append(
        incident=locked,
        kind=TimelineKind.APPROVAL,
        body=f"Rollback approval requested ({Scenario(scenario).label}); needs {needed}",
        actor=requested_by,
        payload={
            "request": request.pk,
            "required_roles": roles,
            "reasons": reasons,
            "status": request.status,
        },
    )
    return request


@transaction.atomic
def approval_decide(
    *,
    request: ApprovalRequest,
    approver: Person,
    decision: str,
    role: str | None = None,
    comment: str = "",
) -> ApprovalRequest:
    """Record one approver's decision. The requester may never approve their own request.

    `role` picks which missing capacity the approval covers when the approver holds
    several; by default the first missing one they hold.
    """
    require_role(approver, APPROVE_PERMISSION, "approve rollbacks")
    if decision not in ApprovalDecision.values:
        raise DomainError(f"Unknown decision {decision!r}.")
    locked = ApprovalRequest.objects.select_for_update(no_key=True).get(pk=request.pk)
    if locked.status != ApprovalRequestStatus.PENDING:
        raise DomainError(f"This request is already {locked.get_status_display().lower()}.")
    if locked.requested_by_id == approver.pk:
        raise DomainError("You requested this rollback; someone else must approve it.")
    if locked.approvals.filter(approver=approver).exists():
        raise DomainError("You have already decided on this request.")
    held = set(approver.groups.values_list("name", flat=True))
    candidates = [name for name in locked.missing_roles() if name in held]
    if role is not None:
        if role not in locked.required_roles:
            raise DomainError(f"This request does not need a {role} approval.")
        if role not in held:
            raise DomainError(f"You do not hold the {role} role.")
        candidates = [role] if role in locked.missing_roles() else []
    if not candidates:
        raise DomainError("None of the roles this request still needs is yours.")
    chosen = candidates[0]
    Approval.objects.create(
        request=locked, approver=approver, role=chosen, decision=decision, comment=comment.strip()
    )
    if decision == ApprovalDecision.REJECT:
        locked.status = ApprovalRequestStatus.REJECTED
    elif not locked.missing_roles():
        locked.status = ApprovalRequestStatus.APPROVED
    if locked.status != ApprovalRequestStatus.PENDING:
        locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_at"])
    _follow_run(locked)
    verb = "approved" if decision == ApprovalDecision.APPROVE else "rejected"
    outcome = {
        ApprovalRequestStatus.PENDING: f"still needs {', '.join(locked.missing_roles())}",
        ApprovalRequestStatus.APPROVED: "all approvals given",
        ApprovalRequestStatus.REJECTED: "request rejected",
    }[ApprovalRequestStatus(locked.status)]
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.APPROVAL,
        body=f"{approver.get_username()} {verb} as {chosen}; {outcome}"
        + (f". “{comment.strip()}”" if comment.strip() else ""),
        actor=approver,
        payload={
            "request": locked.pk,
            "decision": decision,
            "role": chosen,
            "status": locked.status,
        },
    )
    return locked


def _follow_run(request: ApprovalRequest) -> None:
    """Move the rollback run this request belongs to in the transaction that recorded the
    decision."""
    run_follow_approval(request=request)


@transaction.atomic
def approval_withdraw(*, request: ApprovalRequest, actor: User) -> ApprovalRequest:
    """The commander withdraws a pending request (e.g. the plan changed)."""
    require_role(actor, "incidents.command_incident", "withdraw approval requests")
    locked = ApprovalRequest.objects.select_for_update(no_key=True).get(pk=request.pk)
    if locked.status != ApprovalRequestStatus.PENDING:
        raise DomainError("Only a pending request can be withdrawn.")
    locked.status = ApprovalRequestStatus.WITHDRAWN
    locked.decided_at = timezone.now()
    locked.save(update_fields=["status", "decided_at"])
    _follow_run(locked)
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.APPROVAL,
        body="Approval request withdrawn",
        actor=actor,
        payload={"request": locked.pk, "status": locked.status},
    )
    return locked


def run_follow_approval(*, request: ApprovalRequest) -> Run | None:
    """Move the run an approval request belongs to: approved, or back to draft when the
    request is rejected or withdrawn. Called when the request is saved, in its transaction."""
    run = (
        Run.objects.select_for_update(no_key=True)
        .select_related("incident")
        .filter(approval_request_id=request.pk)
        .first()
    )
    if run is None:
        return None
    if request.status == ApprovalRequestStatus.APPROVED and run.state == RunState.AWAITING_APPROVAL:
        run.state = RunState.APPROVED
        body = f"Plan #{run.pk} has every approval it needs; type the confirmation to start it"
    elif request.status in (
        ApprovalRequestStatus.REJECTED,
        ApprovalRequestStatus.WITHDRAWN,
    ) and run.state in (RunState.AWAITING_APPROVAL, RunState.APPROVED):
        run.state = RunState.DRAFT
        body = f"Plan #{run.pk} is back to draft: its approval request was {request.status}"
    else:
        return run
    run.save(update_fields=["state"])
    timeline_append(
        incident=run.incident,
        kind=TimelineKind.RUN,
        body=body,
        actor_label="approvals",
        payload={"run": run.pk, "state": run.state, "request": request.pk},
    )
    return run
