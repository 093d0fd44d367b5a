"""The rollback pages: the room's rollback panel, the plan builder's live versions, a
step's log, approval requests and decisions, and the buttons of a run and its steps.

Like the room's own views, each parses input with a form, calls one rollback service and
answers with the refreshed incident room (incidents.views.render_room), so a button works
the same whether the room is watched live or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

import rollbacks.services
from incidents.roles import APPROVE_PERMISSION
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.roles import VIEW_PERMISSION as VIEW
from incidents.views import (
    BAD_REQUEST,
    NUMBER,
    incident_or_404,
    room_action,
    signed_in_person,
)
from rollbacks import approvals
from rollbacks import selectors as rollback_selectors
from rollbacks.forms import (
    ApprovalAskForm,
    ApprovalDecisionForm,
    ApprovalRequestForm,
    ReasonForm,
    RollbackPlanForm,
    RunConfirmForm,
    SkipForm,
)
from rollbacks.models import ApprovalRequest, Run, Step


@require_GET
@permission_required(VIEW, raise_exception=True)
def incident_runs(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The room's rollback panel alone, for polling while a run is active."""
    incident = incident_or_404(incident_id)
    return render(
        request,
        "rollbacks/_runs.html#runs",
        {
            "incident": incident,
            "runs": rollback_selectors.incident_runs(incident),
            "can_command": request.user.has_perm(COMMAND),
        },
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def step_log(request: HttpRequest, incident_id: int, run_id: int, step_id: int) -> HttpResponse:
    """A window of a step's log: the lines before `before` (or after `after`)."""
    step = _step(incident_id, run_id, step_id)
    bounds: dict[str, int | None] = {}
    for name in ("before", "after"):
        value = request.GET.get(name)
        if value is not None:
            if not NUMBER.fullmatch(value) or len(value) > 9:
                return HttpResponse(f"{name} must be a line number", status=BAD_REQUEST)
            bounds[name] = int(value)
    lines = rollback_selectors.step_log_page(step, **bounds)
    if request.GET.get("format") == "json":
        # What the live stream's `log` events carry: the page fills a gap with it.
        rows = [[line.seq, line.at.strftime("%H:%M:%S"), line.line] for line in lines]
        return JsonResponse({"step": step.pk, "lines": rows})
    context = {"incident": step.run.incident, "step": step, "lines": lines}
    return render(request, "rollbacks/_runs.html#log-page", context)


@require_POST
@permission_required(COMMAND, raise_exception=True)
def run_create(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    form = RollbackPlanForm(request.POST, incident=incident)

    def draft(data: dict[str, Any]) -> Run:
        steps = [
            rollbacks.services.StepSpec(
                service=chosen.service,
                release=chosen.release,
                previous=chosen.previous,
                group=1 if data["parallel"] else None,
                params=chosen.options,
            )
            for chosen in form.chosen_targets()
        ]
        return rollbacks.services.run_create(
            incident=incident,
            steps=steps,
            actor=request.user,
            reason=data["reason"],
            scenario=data["scenario"],
        )

    return room_action(request, incident, form, draft)


def _run(incident_id: int, run_id: int) -> Run:
    return get_object_or_404(
        Run.objects.select_related("incident"), pk=run_id, incident_id=incident_id
    )


def _step(incident_id: int, run_id: int, step_id: int) -> Step:
    return get_object_or_404(
        Step.objects.select_related("run__incident"),
        pk=step_id,
        run_id=run_id,
        run__incident_id=incident_id,
    )


RunAction = Callable[[Run, User, dict[str, Any]], object]

# What each button of a run does: the form that parses its input, and the service it calls.
RUN_ACTIONS: dict[str, tuple[type[forms.Form], RunAction]] = {
    # Dry run: every step's backend says what it would change; nothing is changed.
    "dry-run": (
        forms.Form,
        lambda run, actor, data: rollbacks.services.run_dry_run(run=run, actor=actor),
    ),
    "approval": (
        ApprovalAskForm,
        lambda run, actor, data: rollbacks.services.run_request_approval(
            run=run, actor=actor, reason=data["reason"], supersede=data["supersede"]
        ),
    ),
    # Starting needs the approval policy met and the typed confirmation to match exactly.
    "start": (
        RunConfirmForm,
        lambda run, actor, data: rollbacks.services.run_confirm_and_start(
            run=run, actor=actor, confirmation=data["confirmation"], supersede=data["supersede"]
        ),
    ),
    "pause": (
        ReasonForm,
        lambda run, actor, data: rollbacks.services.run_pause(
            run=run, actor=actor, reason=data["reason"]
        ),
    ),
    "resume": (
        forms.Form,
        lambda run, actor, data: rollbacks.services.run_resume(run=run, actor=actor),
    ),
    "cancel": (
        ReasonForm,
        lambda run, actor, data: rollbacks.services.run_cancel(
            run=run, actor=actor, reason=data["reason"]
        ),
    ),
}

StepAction = Callable[[Step, User, dict[str, Any]], object]

STEP_ACTIONS: dict[str, tuple[type[forms.Form], StepAction]] = {
    "retry": (
        forms.Form,
        lambda step, actor, data: rollbacks.services.step_retry(step=step, actor=actor),
    ),
    "skip": (
        SkipForm,
        lambda step, actor, data: rollbacks.services.step_skip(
            step=step, actor=actor, reason=data["reason"]
        ),
    ),
}


@require_POST
@permission_required(COMMAND, raise_exception=True)
def run_act(request: HttpRequest, incident_id: int, run_id: int, action: str) -> HttpResponse:
    """One of a run's buttons (RUN_ACTIONS), answered with the refreshed room."""
    run = _run(incident_id, run_id)
    form_class, perform = RUN_ACTIONS[action]
    actor = signed_in_person(request)
    return room_action(
        request, run.incident, form_class(request.POST), lambda data: perform(run, actor, data)
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def step_act(
    request: HttpRequest, incident_id: int, run_id: int, step_id: int, action: str
) -> HttpResponse:
    """Retry a failed step or skip one with a reason (STEP_ACTIONS)."""
    step = _step(incident_id, run_id, step_id)
    form_class, perform = STEP_ACTIONS[action]
    actor = signed_in_person(request)
    return room_action(
        request,
        step.run.incident,
        form_class(request.POST),
        lambda data: perform(step, actor, data),
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def approval_request_create(request: HttpRequest, incident_id: int) -> HttpResponse:
    incident = incident_or_404(incident_id)
    return room_action(
        request,
        incident,
        ApprovalRequestForm(request.POST),
        lambda data: approvals.approval_request_open(
            incident=incident,
            requested_by=request.user,
            scenario=data["scenario"],
            reason=data["reason"],
        ),
    )


def _approval_request(incident_id: int, request_id: int) -> ApprovalRequest:
    return get_object_or_404(ApprovalRequest, pk=request_id, incident_id=incident_id)


@require_POST
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def approval_decide(request: HttpRequest, incident_id: int, request_id: int) -> HttpResponse:
    approval_request = _approval_request(incident_id, request_id)
    return room_action(
        request,
        approval_request.incident,
        ApprovalDecisionForm(request.POST),
        lambda data: approvals.approval_decide(
            request=approval_request,
            approver=signed_in_person(request),
            decision=data["decision"],
            role=data["role"] or None,
            comment=data["comment"],
        ),
    )


@require_POST
@permission_required(COMMAND, raise_exception=True)
def approval_withdraw(request: HttpRequest, incident_id: int, request_id: int) -> HttpResponse:
    approval_request = _approval_request(incident_id, request_id)
    return room_action(
        request,
        approval_request.incident,
        forms.Form(request.POST),
        lambda data: approvals.approval_withdraw(request=approval_request, actor=request.user),
    )
