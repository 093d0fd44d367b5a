"""The PagerDuty alert of an incident resolved in the console is resolved too.

Rollback notices page on-call and resolve the alert when a run succeeds
(statuspage.pagerduty). An incident resolved by a person after a failed rollback would
leave its alert open, so `incident_resolved` (incidents.signals) writes a notice whose only
delivery is a PagerDuty `resolve` of `backout-incident-<id>`, sent and retried like every
other delivery and shown on the status desk.

Nothing is written when PagerDuty never heard of the incident (no trigger was delivered) or
when the last event it received for the incident was already a resolve.
"""

from __future__ import annotations

from incidents.models import Incident, IncidentStatus
from statuspage import conf, pagerduty
from statuspage.comms import notice_create
from statuspage.models import Channel, Delivery, DeliveryState, Notice, NoticeKind


def _alert_open(incident_id: int) -> bool:
    """Whether a trigger reached PagerDuty for the incident and no resolve came after it."""
    delivered = (
        Delivery.objects.filter(
            channel=Channel.PAGERDUTY,
            state=DeliveryState.SENT,
            notice__incident_id=incident_id,
        )
        .select_related("notice", "notice__run")
        .order_by("sent_at", "pk")
    )
    actions = [pagerduty.event_action(delivery.notice) for delivery in delivered]
    return "trigger" in actions and actions[-1] != "resolve"


def incident_resolved_notice(*, incident_id: int) -> Notice | None:
    """Write the PagerDuty resolve for a resolved incident whose alert is open (see the
    module docstring); None when there is nothing to resolve. Written once per resolution."""
    if not conf.pagerduty_routing_key():
        return None
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None or incident.status != IncidentStatus.RESOLVED:
        return None
    if incident.resolved_at is None or not _alert_open(incident_id):
        return None
    # A finish notice without a run is a resolve (pagerduty.event_action): no new kind needed.
    return notice_create(
        incident=incident,
        kind=NoticeKind.ROLLBACK_FINISHED,
        dedupe_key=f"incident:{incident.pk}:resolved:{incident.resolved_at.timestamp():.6f}",
        subject=f"Incident #{incident.pk} resolved in Backout",
        body=f"Incident #{incident.pk} “{incident.title}” was resolved in the console; "
        f"its PagerDuty alert {pagerduty.dedup_key(incident.pk)} is resolved with it.",
        channels=[Channel.PAGERDUTY],
    )
