"""A service's releases in the console: every release with its backup and known-good mark,
a form to register one (its backup read from the infrastructure, as the API and
`manage.py release register` do), and marking any release known-good or not, with a reason."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.models import Service
from incidents.roles import VIEW_PERMISSION
from incidents.selectors import release_suspected_by
from incidents.services import service_signals_set
from incidents.views import signed_in_person
from rollbacks.automation import auto_rollback_set
from rollbacks.service_forms import AutoRollbackForm, SignalQueriesForm
from rollbacks.services.releases import ARTIFACT_MAX, NOTES_MAX, VERSION_MAX, release_register

BAD_REQUEST = 400
SHOWN = 100


class ReleaseForm(forms.Form):
    version = forms.CharField(max_length=VERSION_MAX)
    artifact = forms.CharField(max_length=ARTIFACT_MAX, help_text="Image, task definition, SHA…")
    notes = forms.CharField(
        max_length=NOTES_MAX, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


@permission_required(VIEW_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def service_releases(request: HttpRequest, service_id: int) -> HttpResponse:
    service = get_object_or_404(Service, pk=service_id)
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "auto_rollback":
        return auto_rollback_post(request, service)
    posting_signals = action == "signals"
    form = ReleaseForm(request.POST if request.method == "POST" and not posting_signals else None)
    signals_form = SignalQueriesForm(
        request.POST if posting_signals else None, initial=service.signal_queries or {}
    )
    status = 200
    if posting_signals:
        if signals_form.is_valid():
            try:
                service_signals_set(
                    service=service,
                    queries=signals_form.cleaned_data,
                    actor=signed_in_person(request),
                )
            except PermissionDenied as error:
                return HttpResponse(str(error), status=403)
            except DomainError as error:
                signals_form.add_error(None, str(error))
            else:
                messages.success(request, f"Saved the signal queries of {service.name}.")
                return redirect("service_releases", service_id=service.pk)
        status = BAD_REQUEST
    elif request.method == "POST":
        if not request.user.has_perm("incidents.change_release"):
            return HttpResponse("You do not have the role needed to register releases.", status=403)
        if form.is_valid():
            try:
                release, created, said = release_register(
                    service=service,
                    version=form.cleaned_data["version"],
                    artifact=form.cleaned_data["artifact"],
                    notes=form.cleaned_data["notes"],
                    actor=signed_in_person(request),
                )
            except DomainError as error:
                form.add_error(None, str(error))
            else:
                verb = "Registered" if created else "Already registered:"
                messages.success(request, f"{verb} {service.name} {release.version} ({said}).")
                return redirect("service_releases", service_id=service.pk)
        status = BAD_REQUEST
    releases = list(
        service.releases.select_related("known_good_by").order_by("-shipped_at", "-id")[:SHOWN]
    )
    suspect = release_suspected_by(releases[0]) if releases else None
    context = {
        "service": service,
        "releases": releases,
        "suspect": suspect,
        "form": form,
        "signals_form": signals_form,
        "auto_form": AutoRollbackForm(initial=service.auto_rollback or {}),
        "can_command": request.user.has_perm("incidents.command_incident"),
        "can_change": request.user.has_perm("incidents.change_release"),
    }
    return render(request, "rollbacks/service_releases.html", context, status=status)


def auto_rollback_post(request: HttpRequest, service: Service) -> HttpResponse:
    form = AutoRollbackForm(request.POST)
    if not form.is_valid():
        return HttpResponse(form_errors_text(form), status=BAD_REQUEST, content_type="text/plain")
    try:
        auto_rollback_set(
            service=service, policy=form.cleaned_data, actor=signed_in_person(request)
        )
    except PermissionDenied as error:
        return HttpResponse(str(error), status=403)
    except DomainError as error:
        return HttpResponse(str(error), status=BAD_REQUEST, content_type="text/plain")
    messages.success(request, f"Saved the automatic rollback policy of {service.name}.")
    return redirect("service_releases", service_id=service.pk)
