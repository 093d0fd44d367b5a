"""The plan builder's parts, fetched as the commander works: the versions the shown rows
run now, services found by search and added as rows, and a service's step options with what
the infrastructure offers for them (revisions, restorable window, saved backups).

None of them changes anything; the plan itself is drafted by rollbacks.views.run_create.
"""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from incidents.models import Incident, Service
from incidents.roles import COMMAND_PERMISSION as COMMAND
from incidents.views import BAD_REQUEST, NUMBER, incident_or_404
from rollbacks import conf
from rollbacks.forms import MAX_PLAN_SERVICES, RollbackPlanForm, ServiceSearchForm
from rollbacks.live_versions import live_versions_read
from rollbacks.services.step_options import option_views

SEARCH_RESULTS = 20


def _service_ids(request: HttpRequest) -> list[int] | None:
    values = request.GET.getlist("service")
    if len(values) > MAX_PLAN_SERVICES or not all(NUMBER.fullmatch(v) for v in values):
        return None
    return [int(value) for value in values]


def _environment_service(incident: Incident, service_id: int) -> Service:
    return get_object_or_404(Service, pk=service_id, environment=incident.environment)


@require_GET
@permission_required(COMMAND, raise_exception=True)
def incident_versions(request: HttpRequest, incident_id: int) -> HttpResponse:
    """The live and previous versions of the rows shown (`service` ids, else the affected
    services), each backend asked concurrently and waited for no longer than its kind's
    limit (ROLLBACK_LIVE_READ_SECONDS)."""
    incident = incident_or_404(incident_id)
    ids = _service_ids(request)
    if ids is None:
        return HttpResponse(f"service: at most {MAX_PLAN_SERVICES} service ids", status=BAD_REQUEST)
    form = RollbackPlanForm(incident=incident, added=ids)
    services = form.services if not ids else [s for s in form.services if s.pk in set(ids)]
    live = live_versions_read(services, timeout=conf.live_read_seconds)
    rows = form.rows(live={pk: (version or "", why) for pk, (version, why) in live.items()})
    rows = [row for row in rows if row.service.pk in live]
    return render(request, "rollbacks/_plan_builder.html#versions-update", {"rows": rows})


@require_GET
@permission_required(COMMAND, raise_exception=True)
def plan_search(request: HttpRequest, incident_id: int) -> HttpResponse:
    """Services of the incident's environment matching `q` (name or description), not
    already shown (`service` ids), to add to the plan."""
    incident = incident_or_404(incident_id)
    form = ServiceSearchForm(request.GET)
    shown = _service_ids(request)
    if not form.is_valid() or shown is None:
        return HttpResponse("q: at most 80 characters", status=BAD_REQUEST)
    query = form.cleaned_data["q"]
    found = Service.objects.filter(environment=incident.environment).exclude(pk__in=shown)
    if query:
        found = found.filter(Q(name__icontains=query) | Q(description__icontains=query))
    results = list(found.order_by("name")[: SEARCH_RESULTS + 1])
    context = {
        "incident": incident,
        "results": results[:SEARCH_RESULTS],
        "more": len(results) > SEARCH_RESULTS,
        "query": query,
    }
    return render(request, "rollbacks/_plan_builder.html#search-results", context)


@require_GET
@permission_required(COMMAND, raise_exception=True)
def plan_row(request: HttpRequest, incident_id: int, service_id: int) -> HttpResponse:
    """One more row of the plan builder, for a service found by search."""
    incident = incident_or_404(incident_id)
    service = _environment_service(incident, service_id)
    form = RollbackPlanForm(incident=incident, added=[service.pk])
    row = next(row for row in form.rows() if row.service.pk == service.pk)
    response = render(
        request,
        "rollbacks/_plan_builder.html#version-row",
        {"incident": incident, "row": row, "fetch_live": True},
    )
    # The search results are asked again, now without the service just added.
    response["HX-Trigger-After-Swap"] = "plan-row-added"
    return response


@require_GET
@permission_required(COMMAND, raise_exception=True)
def plan_options(request: HttpRequest, incident_id: int, service_id: int) -> HttpResponse:
    """A service's step options, each with its choices and notes read from the
    infrastructure now (an unreachable one is said, and the fields still offered)."""
    incident = incident_or_404(incident_id)
    service = _environment_service(incident, service_id)
    views, problem = option_views(service)
    context = {"incident": incident, "service": service, "options": views, "problem": problem}
    return render(request, "rollbacks/_plan_builder.html#step-options", context)
