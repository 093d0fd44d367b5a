"""The support lead's components page (behind login, the Support Lead role): list the
public page's components and groups, add, edit, move and delete them, choose the services
that feed each. Views parse a form, call one service of statuspage.components, render; a
refusal answers 400 naming the field (403 without the role) and saves nothing."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from incidents.errors import DomainError, PermissionDenied
from incidents.forms import form_errors_text
from incidents.roles import STATUS_PAGE_PERMISSION
from statuspage import components, selectors
from statuspage.forms import ComponentForm, MoveForm
from statuspage.models import Component

EDIT = STATUS_PAGE_PERMISSION
BAD_REQUEST, FORBIDDEN = 400, 403
KINDS = ("component", "group")


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _groups() -> list[Component]:
    return list(Component.objects.filter(is_group=True).order_by("position", "name", "pk"))


def _list_context(
    *,
    component_form: ComponentForm | None = None,
    group_form: ComponentForm | None = None,
    posted_group: str = "",
    error: str = "",
    flash: str = "",
) -> dict[str, Any]:
    listed = list(Component.objects.prefetch_related("services").order_by("position", "name", "pk"))
    return {
        "lines": selectors.component_lines(listed),
        "groups": [component for component in listed if component.is_group],
        "component_form": component_form or ComponentForm(prefix_ids="component"),
        "group_form": group_form or ComponentForm(prefix_ids="group"),
        "posted_group": posted_group,
        "name_max": components.NAME_MAX,
        "description_max": components.DESCRIPTION_MAX,
        "error": error,
        "flash": flash,
    }


def _render_list(request: HttpRequest, *, status: int = 200, **kwargs: Any) -> HttpResponse:
    template = "statuspage/components.html"
    if _is_htmx(request):
        template += "#components"
    return render(request, template, _list_context(**kwargs), status=status)


def _done(request: HttpRequest, flash: str) -> HttpResponse:
    if _is_htmx(request):
        return _render_list(request, flash=flash)
    messages.success(request, flash)
    return HttpResponseRedirect(reverse("status_components"))


def _status_for(error: DomainError) -> int:
    return FORBIDDEN if isinstance(error, PermissionDenied) else BAD_REQUEST


def _shown_on(form: ComponentForm, error: DomainError) -> None:
    """The service's refusal beside the field it names, when the form has that field."""
    field = getattr(error, "field", None)
    form.add_error(field if field in form.fields else None, str(error))


@require_http_methods(["GET"])
@permission_required(EDIT, raise_exception=True)
def components_page(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@require_POST
@permission_required(EDIT, raise_exception=True)
def component_create(request: HttpRequest) -> HttpResponse:
    """Add a component (`kind=component`) or a group (`kind=group`)."""
    kind = request.POST.get("kind", "component")
    if kind not in KINDS:
        return _render_list(request, status=BAD_REQUEST, error="Kind: a component or a group.")
    form = ComponentForm(request.POST, prefix_ids=kind)
    forms = {f"{kind}_form": form, "posted_group": request.POST.get("group", "")}
    if not form.is_valid():
        return _render_list(request, status=BAD_REQUEST, error=form_errors_text(form), **forms)
    data = form.cleaned_data
    try:
        created = components.component_create(
            actor=request.user,
            is_group=kind == "group",
            name=data["name"],
            description=data["description"],
            group_id=components.one_group(request.POST.getlist("group")),
            only_show_if_degraded=data["only_show_if_degraded"],
            service_ids=data["services"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_list(request, status=_status_for(error), error=str(error), **forms)
    return _done(request, f"{'Group' if created.is_group else 'Component'} {created.name} added.")


@require_http_methods(["GET", "POST"])
@permission_required(EDIT, raise_exception=True)
def component_edit(request: HttpRequest, component_id: int) -> HttpResponse:
    """The edit form (GET) and its saving (POST)."""
    component = get_object_or_404(Component.objects.select_related("group"), pk=component_id)
    if request.method == "GET":
        form = ComponentForm(initial=ComponentForm.initial_for(component))
        return _render_edit(request, component, form, posted_group=str(component.group_id or ""))
    form = ComponentForm(request.POST)
    posted_group = request.POST.get("group", "")
    if not form.is_valid():
        return _render_edit(
            request,
            component,
            form,
            posted_group=posted_group,
            status=BAD_REQUEST,
            error=form_errors_text(form),
        )
    data = form.cleaned_data
    try:
        saved = components.component_update(
            actor=request.user,
            component=component,
            name=data["name"],
            description=data["description"],
            group_id=components.one_group(request.POST.getlist("group")),
            only_show_if_degraded=data["only_show_if_degraded"],
            service_ids=data["services"],
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_edit(
            request,
            component,
            form,
            posted_group=posted_group,
            status=_status_for(error),
            error=str(error),
        )
    messages.success(request, f"{saved.name} saved.")
    return HttpResponseRedirect(reverse("status_components"))


def _render_edit(
    request: HttpRequest,
    component: Component,
    form: ComponentForm,
    *,
    posted_group: str,
    status: int = 200,
    error: str = "",
) -> HttpResponse:
    context = {
        "component": component,
        "form": form,
        "groups": _groups(),
        "posted_group": posted_group,
        "name_max": components.NAME_MAX,
        "description_max": components.DESCRIPTION_MAX,
        "error": error,
    }
    return render(request, "statuspage/component_edit.html", context, status=status)


@require_POST
@permission_required(EDIT, raise_exception=True)
def component_move(request: HttpRequest, component_id: int) -> HttpResponse:
    component = get_object_or_404(Component, pk=component_id)
    form = MoveForm(request.POST)
    if not form.is_valid():
        return _render_list(request, status=BAD_REQUEST, error=form_errors_text(form))
    offset = -1 if form.cleaned_data["direction"] == "up" else 1
    try:
        components.component_move(actor=request.user, component=component, offset=offset)
    except DomainError as error:
        return _render_list(request, status=_status_for(error), error=str(error))
    return _done(request, f"{component.name} moved {form.cleaned_data['direction']}.")


@require_POST
@permission_required(EDIT, raise_exception=True)
def component_delete(request: HttpRequest, component_id: int) -> HttpResponse:
    component = get_object_or_404(Component, pk=component_id)
    try:
        components.component_delete(actor=request.user, component=component)
    except DomainError as error:
        return _render_list(request, status=_status_for(error), error=str(error))
    return _done(request, f"{component.name} is no longer on the public page.")
