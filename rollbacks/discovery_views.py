"""The console's page for importing services from what a platform runs
(rollbacks.services.discovery): choose a source, list what it has beside the console's
services, tick, import. For Incident Commanders and staff."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from executors.discovery import PARAMETER_MAX_LENGTH, PARAMETERS, ParameterError, parameter_value
from incidents.errors import DomainError
from incidents.models import Environment
from incidents.views import signed_in_person
from rollbacks.services.discovery import discovery_import, discovery_scan, may_discover

BAD_REQUEST, FORBIDDEN = 400, 403
SOURCE_LABELS = {
    "kubernetes": "Kubernetes namespace",
    "ecs": "ECS cluster",
    "rds": "RDS instances",
    "route53": "Route 53 records",
    "static": "S3 + CloudFront sites",
}


class SourceForm(forms.Form):
    source = forms.ChoiceField(choices=list(SOURCE_LABELS.items()))
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PRODUCTION)
    namespace = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["namespace"], required=False, help_text="Kubernetes"
    )
    selector = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["selector"],
        required=False,
        label="Label selector",
        help_text="e.g. tier=web",
    )
    cluster = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["cluster"], required=False, help_text="ECS"
    )
    zone = forms.CharField(
        max_length=PARAMETER_MAX_LENGTH["zone"],
        required=False,
        help_text="Route 53 zone (optional)",
    )

    def clean(self) -> dict[str, Any]:
        """Check the values the chosen source takes as its listing will, so that one it
        cannot use is an error on its own field (a listing never sees it)."""
        cleaned = super().clean() or {}
        required, optional = PARAMETERS.get(cleaned.get("source", ""), ((), ()))
        for name in (*required, *optional):
            if cleaned.get(name):
                try:
                    parameter_value(name, cleaned[name])
                except ParameterError as error:
                    self.add_error(name, error.problem)
        return cleaned

    def params(self) -> dict[str, str]:
        required, optional = PARAMETERS[self.cleaned_data["source"]]
        return {name: self.cleaned_data[name] for name in (*required, *optional)}

    def listing_query(self) -> str:
        """The query string that lists this source again: what it was asked with and
        nothing more (never the CSRF token, nor the names ticked)."""
        asked = {k: v for k, v in self.params().items() if v}
        source, environment = self.cleaned_data["source"], self.cleaned_data["environment"]
        return urlencode({"source": source, "environment": environment, **asked})


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
