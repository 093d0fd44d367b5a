"""Recording a decision: the helper decides, and the decision goes on the timeline."""

from __future__ import annotations

from django.db import transaction

from incidents.decisions.rules import Signals, decide
from incidents.errors import DomainError
from incidents.models import Incident, IncidentStatus, TimelineEntry, TimelineKind
from incidents.roles import User, require_role
from incidents.timeline import timeline_append


@transaction.atomic
def decision_record(*, incident: Incident, signals: Signals, actor: User) -> TimelineEntry:
    """Decide on the signals and write the decision, with the signals, on the timeline."""
    require_role(actor, "incidents.command_incident", "record a rollback decision")
    locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    if locked.status == IncidentStatus.RESOLVED:
        raise DomainError("The incident is resolved; reopen it before deciding again.")
    decision = decide(signals, locked)
    return timeline_append(
        incident=locked,
        kind=TimelineKind.DECISION,
        body=f"Decision helper: {decision.verdict}. {decision.reason}",
        actor=actor,
        payload={
            "verdict": decision.verdict,
            "reason": decision.reason,
            "rule": decision.rule,
            "severity": locked.severity,
            "signals": signals.as_payload(),
        },
    )
