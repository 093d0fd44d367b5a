"""What rollbacks adds to the incident room, the dashboard and the room's live stream.

register() hands these to incidents.room when the app is ready (rollbacks.apps): the
rollback panel and the plan builder above the timeline, the approvals card in the side
column, the requests awaiting the viewer's approval on the dashboard, the panel sent
again on the live stream after run, step, check and approval entries, and a step's log
lines as they are stored.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string

from incidents.models import Incident, TimelineKind
from incidents.roles import APPROVE_PERMISSION
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.room import (
    DashboardSection,
    LinesRead,
    LiveLines,
    LivePanel,
    PanelHtml,
    RoomSection,
    register_dashboard_section,
    register_live_lines,
    register_live_panel,
    register_room_section,
)
from rollbacks import selectors as rollback_selectors
from rollbacks.forms import ApprovalRequestForm, RollbackPlanForm
from rollbacks.models import StepLog

# Entries after which the live stream sends the rollback panel again.
RUN_KINDS = frozenset(
    {
        TimelineKind.RUN,
        TimelineKind.STEP_STARTED,
        TimelineKind.STEP_OUTPUT,
        TimelineKind.STEP_FINISHED,
        TimelineKind.CHECK_RESULT,
        TimelineKind.APPROVAL,
    }
)
# Lines of a step's log sent in one `log` event at most.
LOG_BATCH = 1000


def runs_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The rollback panel's runs, each step with the tail of its log."""
    return {"runs": rollback_selectors.incident_runs(incident)}


def plan_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The plan builder's form: a target choice per service of the incident's environment."""
    return {"plan_form": RollbackPlanForm(incident=incident)}


def approvals_context(request: HttpRequest, incident: Incident) -> dict[str, Any]:
    """The approvals card: the incident's requests with their decisions, and the controls
    this viewer may use."""
    return {
        "approval_requests": rollback_selectors.incident_approval_requests(incident),
        "approval_request_form": ApprovalRequestForm(),
        "can_command": request.user.has_perm(COMMAND),
        "can_approve": request.user.has_perm(APPROVE_PERMISSION),
    }


def awaiting_context(request: HttpRequest) -> dict[str, Any]:
    """The requests waiting for this viewer's approval (none for someone who cannot approve)."""
    if not request.user.has_perm(APPROVE_PERMISSION):
        return {"awaiting": []}
    return {"awaiting": rollback_selectors.approvals_awaiting(request.user)}


def runs_panel(incident_id: int) -> PanelHtml:
    """The rollback panel as the live stream sends it, for viewers and for commanders."""
    incident = Incident.objects.get(pk=incident_id)
    runs = rollback_selectors.incident_runs(incident)
    # Controls post through htmx with the page's CSRF header; no token goes in the markup.
    context = {"incident": incident, "runs": runs, "live": True}
    template = "rollbacks/_runs.html#runs"
    return PanelHtml(
        viewer=render_to_string(template, context | {"can_command": False}),
        commander=render_to_string(template, context | {"can_command": True}),
    )


def step_log_lines(step_id: int, after: int | None) -> LinesRead:
    """A step's log lines after line `after` (its last lines when `after` is None) as the
    JSON of a `log` event, the line reached, and whether more may follow (a full batch)."""
    lines = StepLog.objects.filter(step_id=step_id)
    if after is None:
        recent = list(reversed(lines.order_by("-seq")[: rollback_selectors.LOG_TAIL_LINES]))
    else:
        recent = list(lines.filter(seq__gt=after).order_by("seq")[:LOG_BATCH])
    if not recent:
        return LinesRead(None, after or 0, False)
    payload = {
        "step": step_id,
        "lines": [[line.seq, line.at.strftime("%H:%M:%S"), line.line] for line in recent],
    }
    return LinesRead(
        json.dumps(payload), recent[-1].seq, after is not None and len(recent) == LOG_BATCH
    )


def register() -> None:
    """Register the rollback cards, panel and log lines with the incident room."""
    register_room_section(RoomSection("runs", "main", "rollbacks/_runs.html", runs_context))
    register_room_section(RoomSection("plan", "main", "rollbacks/_plan_builder.html", plan_context))
    register_room_section(
        RoomSection(
            "approvals",
            "side",
            "rollbacks/_approvals.html",
            approvals_context,
            refetch_after=frozenset({TimelineKind.APPROVAL}),
        )
    )
    register_dashboard_section(
        DashboardSection("awaiting", "rollbacks/_awaiting.html", awaiting_context)
    )
    register_live_panel(LivePanel("runs", RUN_KINDS, runs_panel))
    register_live_lines(LiveLines("log", step_log_lines))
