"""The decision helper's endpoints and the recovery clock's refresh, for the incident room.

The room includes `incidents/_recovery.html` and `incidents/_decision.html` and renders them
from `incidents.decisions.selectors.room_context`; these views re-render the same partials
for htmx.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from incidents.decisions import services
from incidents.decisions.forms import SignalsForm
from incidents.decisions.readings import signals_read
from incidents.decisions.rules import decide, thresholds
from incidents.decisions.selectors import decision_latest, room_context
from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.models import Incident
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.roles import VIEW_PERMISSION as VIEW

BAD_REQUEST, FORBIDDEN = 400, 403

DECISION = "incidents/_decision.html"
RECOVERY = "incidents/_recovery.html"

PAGE = "incidents/decision_page.html"  # the partial in the site frame, without htmx


def _incident(incident_id: int) -> Incident:
    return get_object_or_404(Incident, pk=incident_id)


def _context(request: HttpRequest, incident: Incident, **extra: Any) -> dict[str, Any]:
    return (
        {"incident": incident, "can_command": request.user.has_perm(COMMAND)}
        | room_context(incident)
        | extra
    )


def _render_decision(
    request: HttpRequest, incident: Incident, *, status: int = 200, **extra: Any
) -> HttpResponse:
    context = _context(request, incident, **extra)
    template = DECISION if getattr(request, "htmx", False) else PAGE
    return render(request, template, context, status=status)


@require_POST
@permission_required(COMMAND, raise_exception=True)
def decision_record(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Decide on the posted signals and write the decision on the timeline."""
    incident = _incident(incident_id)
    form = SignalsForm(request.POST)
    if not form.is_valid():
        return _render_decision(
            request,
            incident,
            status=BAD_REQUEST,
            decision_form=form,
            decision_error=form_errors_text(form),
        )
    try:
        services.decision_record(incident=incident, signals=form.signals(), actor=request.user)
    except PermissionDenied as error:
        return _render_decision(
            request, incident, status=FORBIDDEN, decision_form=form, decision_error=str(error)
        )
    except DomainError as error:
        return _render_decision(
            request, incident, status=BAD_REQUEST, decision_form=form, decision_error=str(error)
        )
    if getattr(request, "htmx", False):
        return _render_decision(request, incident)
    return HttpResponseRedirect(reverse("incident_room", args=[incident.pk]) + "#decision")


@require_POST
@permission_required(COMMAND, raise_exception=True)
def decision_preview(request: HttpRequest, incident_id: int) -> HttpResponse:
    """What the helper would say on the posted signals; records nothing."""
    incident = _incident(incident_id)
    form = SignalsForm(request.POST)
    context: dict[str, Any] = {
        "incident": incident,
        "decision_latest": decision_latest(incident),
    }
    status = 200
    if form.is_valid():
        context["decision_preview"] = decide(form.signals(), incident)
    else:
        context["decision_error"] = form_errors_text(form)
        status = BAD_REQUEST
    return render(request, f"{DECISION}#verdict", context, status=status)


@require_GET
@permission_required(COMMAND, raise_exception=True)
def decision_read(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The signals read from Prometheus for the incident's services, put in the form with
    what the helper would say on them; records nothing (the commander records)."""
    incident = _incident(incident_id)
    reading = signals_read(list(incident.services.all()), watch_level=thresholds().error_rate_watch)
    form = SignalsForm({key: str(value) for key, value in reading.initial().items()})
    preview = decide(form.signals(), incident) if form.is_valid() else None
    return _render_decision(
        request, incident, decision_form=form, decision_preview=preview, signals_reading=reading
    )


@require_GET
@permission_required(VIEW, raise_exception=True)
def recovery_panel(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The recovery clock and figures, re-rendered (e.g. after an instant is recorded)."""
    incident = _incident(incident_id)
    return render(request, RECOVERY, _context(request, incident))
