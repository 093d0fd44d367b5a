"""Scheduled maintenances in the console (behind login, the Support Lead role): the list
(active, upcoming, past) with the schedule form, and a maintenance's page with its updates,
the post-update form, the edit form while it is scheduled and cancelling. And the public
page of one maintenance (no login). Views parse a form, call one service of
statuspage.maintenances, render; a refusal answers 400 naming the field (403 without the
role) and saves nothing."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.roles import STATUS_PAGE_PERMISSION
from statuspage import (
    branding,
    conf,
    maintenance_json,
    maintenance_selectors,
    maintenances,
    selectors,
)
from statuspage.maintenance_forms import (
    MaintenanceCancelForm,
    MaintenanceForm,
    MaintenanceUpdateForm,
    zone_name,
)
from statuspage.models import Component, Maintenance, MaintenanceStatus
from statuspage.views import public_base_url, public_headers, public_json_response

EDIT = STATUS_PAGE_PERMISSION
BAD_REQUEST, FORBIDDEN = 400, 403
PAST_SHOWN = 50


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _status_for(error: DomainError) -> int:
    return FORBIDDEN if isinstance(error, PermissionDenied) else BAD_REQUEST


def _shown_on(form: Any, error: DomainError) -> None:
    """The service's refusal beside the field it names, when the form has that field."""
    field = getattr(error, "field", None)
    form.add_error(field if field in form.fields else None, str(error))


def _choosable() -> list[Component]:
    """The components a maintenance may cover (not groups), in page order with their group."""
    listed = Component.objects.filter(is_group=False).select_related("group")
    return sorted(
        listed,
        key=lambda c: (
            (c.group.position, c.group.name) if c.group else (c.position, c.name),
            c.position if c.group else -1,
            c.name,
        ),
    )


def _chosen(form: Any) -> set[str]:
    value = form["components"].value() or []
    return {str(item) for item in value}


def _list_context(*, form: MaintenanceForm | None = None, error: str = "") -> dict[str, Any]:
    shown = maintenance_selectors.shown()
    form = form or MaintenanceForm()
    return {
        "active": [m for m in shown if m.is_active],
        "upcoming": [m for m in shown if not m.is_active],
        "past": maintenance_selectors.past(PAST_SHOWN),
        "form": form,
        "components": _choosable(),
        "chosen": _chosen(form),
        "zone": zone_name(),
        "name_max": maintenances.NAME_MAX,
        "body_max": maintenances.BODY_MAX,
        "error": error,
    }


def _render_list(request: HttpRequest, *, status: int = 200, **kwargs: Any) -> HttpResponse:
    template = "statuspage/maintenances.html"
    if _is_htmx(request):
        template += "#maintenances"
    return render(request, template, _list_context(**kwargs), status=status)


@require_GET
@permission_required(EDIT, raise_exception=True)
def maintenances_page(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@require_POST
@permission_required(EDIT, raise_exception=True)
def maintenance_create(request: HttpRequest) -> HttpResponse:
    form = MaintenanceForm(request.POST)
    if not form.is_valid():
        return _render_list(request, status=BAD_REQUEST, form=form, error=form_errors_text(form))
    data = form.cleaned_data
    try:
        created = maintenances.maintenance_schedule(
            actor=request.user,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            body=data["body"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
            notify_subscribers=data["notify_subscribers"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_list(request, status=_status_for(error), form=form, error=str(error))
    messages.success(request, f"{created.name} is scheduled and on the public page.")
    target = reverse("status_maintenance", args=[created.pk])
    if _is_htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


def _detail_context(
    maintenance: Maintenance,
    *,
    edit_form: MaintenanceForm | None = None,
    update_form: MaintenanceUpdateForm | None = None,
    cancel_form: MaintenanceCancelForm | None = None,
    error: str = "",
    flash: str = "",
) -> dict[str, Any]:
    fresh = maintenance_selectors.with_updates(
        Maintenance.objects.filter(pk=maintenance.pk)
    ).first()
    if fresh is None:
        raise Http404("No such maintenance.")
    edit_form = edit_form or MaintenanceForm(
        initial=MaintenanceForm.initial_for(fresh), with_body=False
    )
    next_status = {
        MaintenanceStatus.SCHEDULED: MaintenanceStatus.IN_PROGRESS,
        MaintenanceStatus.IN_PROGRESS: MaintenanceStatus.VERIFYING,
    }.get(MaintenanceStatus(fresh.status), MaintenanceStatus.COMPLETED)
    return {
        "maintenance": fresh,
        "updates": list(fresh.updates.all()),
        "edit_form": edit_form,
        "update_form": update_form or MaintenanceUpdateForm(initial={"status": next_status}),
        "cancel_form": cancel_form or MaintenanceCancelForm(),
        "components": _choosable(),
        "chosen": _chosen(edit_form),
        "zone": zone_name(),
        "name_max": maintenances.NAME_MAX,
        "body_max": maintenances.BODY_MAX,
        "error": error,
        "flash": flash,
    }


def _render_detail(
    request: HttpRequest, maintenance: Maintenance, *, status: int = 200, **kwargs: Any
) -> HttpResponse:
    template = "statuspage/maintenance.html"
    if _is_htmx(request):
        template += "#maintenance"
    context = _detail_context(maintenance, **kwargs)
    return render(request, template, context, status=status)


def _done(request: HttpRequest, maintenance: Maintenance, flash: str) -> HttpResponse:
    if _is_htmx(request):
        return _render_detail(request, maintenance, flash=flash)
    messages.success(request, flash)
    return HttpResponseRedirect(reverse("status_maintenance", args=[maintenance.pk]))


@require_GET
@permission_required(EDIT, raise_exception=True)
def maintenance_page(request: HttpRequest, maintenance_id: int) -> HttpResponse:
    return _render_detail(request, get_object_or_404(Maintenance, pk=maintenance_id))


@require_POST
@permission_required(EDIT, raise_exception=True)
def maintenance_edit(request: HttpRequest, maintenance_id: int) -> HttpResponse:
    maintenance = get_object_or_404(Maintenance, pk=maintenance_id)
    form = MaintenanceForm(request.POST, with_body=False)
    if not form.is_valid():
        return _render_detail(
            request, maintenance, status=BAD_REQUEST, edit_form=form, error=form_errors_text(form)
        )
    data = form.cleaned_data
    try:
        saved = maintenances.maintenance_edit(
            actor=request.user,
            maintenance=maintenance,
            name=data["name"],
            scheduled_for=data["scheduled_for"],
            scheduled_until=data["scheduled_until"],
            component_ids=data["components"],
            impact=data["impact"],
            auto_start=data["auto_start"],
            auto_complete=data["auto_complete"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_detail(
            request, maintenance, status=_status_for(error), edit_form=form, error=str(error)
        )
    return _done(request, saved, f"{saved.name} saved.")


@require_POST
@permission_required(EDIT, raise_exception=True)
def maintenance_update(request: HttpRequest, maintenance_id: int) -> HttpResponse:
    maintenance = get_object_or_404(Maintenance, pk=maintenance_id)
    form = MaintenanceUpdateForm(request.POST)
    if not form.is_valid():
        return _render_detail(
            request,
            maintenance,
            status=BAD_REQUEST,
            update_form=form,
            error=form_errors_text(form),
        )
    data = form.cleaned_data
    try:
        update = maintenances.maintenance_update_post(
            actor=request.user,
            maintenance=maintenance,
            status=data["status"],
            body=data["body"],
            notify_subscribers=data["notify_subscribers"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_detail(
            request, maintenance, status=_status_for(error), update_form=form, error=str(error)
        )
    return _done(request, maintenance, f"Update published ({update.get_status_display()}).")


@require_POST
@permission_required(EDIT, raise_exception=True)
def maintenance_cancel(request: HttpRequest, maintenance_id: int) -> HttpResponse:
    maintenance = get_object_or_404(Maintenance, pk=maintenance_id)
    form = MaintenanceCancelForm(request.POST)
    if not form.is_valid():
        return _render_detail(
            request,
            maintenance,
            status=BAD_REQUEST,
            cancel_form=form,
            error=form_errors_text(form),
        )
    try:
        maintenances.maintenance_cancel(
            actor=request.user,
            maintenance=maintenance,
            reason=form.cleaned_data["reason"],
            notify_subscribers=form.cleaned_data["notify_subscribers"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_detail(
            request, maintenance, status=_status_for(error), cancel_form=form, error=str(error)
        )
    return _done(request, maintenance, "Cancelled; the public page says so.")


# -- public, no login ---------------------------------------------------------------------------


@login_not_required
@require_GET
def public_maintenance(request: HttpRequest, maintenance_id: int) -> HttpResponse:
    """One maintenance with all its updates, for everyone (the JSON's `shortlink`); kept a
    few seconds in the public page's cache, like the page itself."""

    def page() -> str | None:
        found = maintenance_selectors.with_updates(Maintenance.objects.filter(pk=maintenance_id))
        maintenance = found.first()
        if maintenance is None:
            return None
        context = {
            "maintenance": maintenance,
            "updates": list(maintenance.updates.all()),
            "page_name": conf.page_name(),
            "zone": zone_name(),
            "now": timezone.now(),
        }
        return render_to_string("statuspage/maintenance_public.html", context, request=request)

    rendered = selectors.cached_public(f"maintenance {maintenance_id} {request.get_host()}", page)
    if rendered is None:
        raise Http404("No such maintenance.")
    response = HttpResponse(rendered)
    response["Content-Security-Policy"] = branding.public_page_policy()
    return public_headers(response)


def _listing(request: HttpRequest, name: str, choose: Any) -> HttpResponse:
    base = public_base_url(request)

    def build() -> dict[str, Any]:
        state = selectors.public_state()
        return {
            "page": selectors.page_json(state, base),
            "scheduled_maintenances": maintenance_json.maintenances_json(
                choose(), base_url=base, component_shape=selectors.component_json
            ),
        }

    return public_json_response(selectors.cached_public(f"{name} {base}", build))


@login_not_required
@require_GET
def maintenances_json(request: HttpRequest) -> HttpResponse:
    """scheduled-maintenances.json: the 50 latest, whatever their state."""
    return _listing(request, "maintenances", maintenance_selectors.recent)


@login_not_required
@require_GET
def upcoming_json(request: HttpRequest) -> HttpResponse:
    """scheduled-maintenances/upcoming.json: those still scheduled."""
    return _listing(request, "maintenances upcoming", maintenance_selectors.upcoming)


@login_not_required
@require_GET
def active_json(request: HttpRequest) -> HttpResponse:
    """scheduled-maintenances/active.json: those in progress or verifying."""
    return _listing(request, "maintenances active", maintenance_selectors.active)
