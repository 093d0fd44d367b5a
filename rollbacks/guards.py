"""What the rollbacks ask of a change to their incident (registered with incidents.guards
from RollbacksConfig.ready): the severity may not be lowered while a plan or an approval
request waits under the higher severity's policy. A plan is judged when approval is asked
and again when it starts; a severity lowered in between would let it start with fewer
approvers than the incident warranted when it was drafted. Dry runs need no approval and
are not counted; a running run was approved as the policy stood when it started."""

from __future__ import annotations

from incidents.guards import register_severity_guard
from incidents.models import Incident, Severity
from rollbacks.models import ApprovalRequestStatus, Run, RunState

WAITING = (RunState.DRAFT, RunState.AWAITING_APPROVAL, RunState.APPROVED)


def severity_lowering_refusal(incident: Incident, current: str, wanted: str) -> str | None:
    if Severity.values.index(wanted) <= Severity.values.index(current):
        return None  # raising is always allowed
    waiting = (
        Run.objects.filter(incident=incident, dry_run=False, state__in=WAITING)
        .order_by("pk")
        .first()
    )
    if waiting is not None:
        return (
            f"Plan #{waiting.pk} is {waiting.get_state_display().lower()} under the {current} "
            f"approval policy; lowering the severity to {wanted} would change the approvals it "
            "needs. Start or cancel it first."
        )
    pending = incident.approval_requests.filter(status=ApprovalRequestStatus.PENDING).first()
    if pending is not None:
        return (
            f"Approval request #{pending.pk} is pending under the {current} approval policy; "
            "withdraw it before lowering the severity."
        )
    return None


def register() -> None:
    register_severity_guard("rollbacks", severity_lowering_refusal)
