"""The console's page for importing services from what a platform runs
(rollbacks.services.discovery): choose a source, list what it has beside the console's
services, tick, import. For Incident Commanders and staff."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from incidents.errors import DomainError
from incidents.views import signed_in_person
from rollbacks.service_forms import SourceForm
from rollbacks.services.discovery import discovery_import, discovery_scan, may_discover

BAD_REQUEST, FORBIDDEN = 400, 403


@require_http_methods(["GET", "POST"])
def service_discover(request: HttpRequest) -> HttpResponse:
    person = signed_in_person(request)
    if not may_discover(person):
        return HttpResponse("Only Incident Commanders and staff import services.", status=FORBIDDEN)
    data = request.POST if request.method == "POST" else request.GET
    form = SourceForm(data if "source" in data else None)
    rows, error, status = [], "", 200
    if form.is_bound and form.is_valid():
        source, environment = form.cleaned_data["source"], form.cleaned_data["environment"]
        try:
            if request.method == "POST":
                imported = discovery_import(
                    source=source,
                    params=form.params(),
                    environment=environment,
                    names=request.POST.getlist("import"),
                    actor=person,
                )
                messages.success(
                    request,
                    f"Imported {len(imported)} service(s): "
                    + (", ".join(s.name for s in imported) or "nothing had changed"),
                )
                return redirect(f"{reverse('service_discover')}?{form.listing_query()}")
            rows = discovery_scan(
                source=source, params=form.params(), environment=environment, actor=person
            )
        except DomainError as failure:
            error, status = str(failure), BAD_REQUEST
    elif form.is_bound:
        status = BAD_REQUEST
    context = {"form": form, "rows": rows, "error": error, "query": request.GET.urlencode()}
    return render(request, "rollbacks/service_discover.html", context, status=status)
