"""The support lead's update templates page (behind login, the Support Lead role): list
the templates in order, add, edit, move and delete them. Views parse a form, call one
service of statuspage.update_templates, render; a refusal answers 400 naming the field (403
without the role) and saves nothing. Starting a draft from a template is on the desk
(statuspage.views.draft_start_template)."""

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
from statuspage import texts, update_templates
from statuspage.forms import MoveForm, UpdateTemplateForm
from statuspage.models import Component, UpdateTemplate

EDIT = STATUS_PAGE_PERMISSION
BAD_REQUEST, FORBIDDEN = 400, 403


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _form_context(form: UpdateTemplateForm) -> dict[str, Any]:
    """What the template fields need: the components to choose from, in page order
    (groups are headings, not choices), and the limits."""
    chosen = {str(value) for value in (form["components"].value() or [])}
    listed = sorted(
        Component.objects.filter(is_group=False).select_related("group"), key=texts.page_order
    )
    return {
        "form": form,
        "component_choices": [
            {
                "component": component,
                "group_name": component.group.name if component.group else "",
                "checked": str(component.pk) in chosen,
            }
            for component in listed
        ],
        "placeholders": [f"{{{name}}}" for name in texts.PUBLIC_FACT_NAMES],
        "name_max": update_templates.NAME_MAX,
        "title_max": update_templates.TITLE_MAX,
        "body_max": update_templates.BODY_MAX,
    }


def _render_list(
    request: HttpRequest,
    *,
    status: int = 200,
    form: UpdateTemplateForm | None = None,
    error: str = "",
    flash: str = "",
) -> HttpResponse:
    context = {
        "update_templates": update_templates.update_templates_listed(),
        "error": error,
        "flash": flash,
        **_form_context(form or UpdateTemplateForm()),
    }
    template = "statuspage/update_templates.html"
    if _is_htmx(request):
        template += "#templates"
    return render(request, template, context, status=status)


def _render_edit(
    request: HttpRequest,
    template: UpdateTemplate,
    form: UpdateTemplateForm,
    *,
    status: int = 200,
    error: str = "",
) -> HttpResponse:
    context = {"update_template": template, "error": error, **_form_context(form)}
    return render(request, "statuspage/update_template_edit.html", context, status=status)


def _done(request: HttpRequest, flash: str) -> HttpResponse:
    if _is_htmx(request):
        return _render_list(request, flash=flash)
    messages.success(request, flash)
    return HttpResponseRedirect(reverse("status_templates"))


def _status_for(error: DomainError) -> int:
    return FORBIDDEN if isinstance(error, PermissionDenied) else BAD_REQUEST


def _shown_on(form: UpdateTemplateForm, error: DomainError) -> None:
    """The service's refusal beside the field it names, when the form has that field."""
    field = getattr(error, "field", None)
    form.add_error(field if field in form.fields else None, str(error))


@require_http_methods(["GET"])
@permission_required(EDIT, raise_exception=True)
def templates_page(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@require_POST
@permission_required(EDIT, raise_exception=True)
def template_create(request: HttpRequest) -> HttpResponse:
    form = UpdateTemplateForm(request.POST)
    if not form.is_valid():
        return _render_list(request, status=BAD_REQUEST, form=form, error=form_errors_text(form))
    try:
        created = update_templates.update_template_create(
            actor=request.user, **form.template_fields()
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_list(request, status=_status_for(error), form=form, error=str(error))
    return _done(request, f"Template {created.name} added.")


@require_http_methods(["GET", "POST"])
@permission_required(EDIT, raise_exception=True)
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    """The edit form (GET) and its saving (POST)."""
    template = get_object_or_404(UpdateTemplate, pk=template_id)
    if request.method == "GET":
        form = UpdateTemplateForm(initial=UpdateTemplateForm.initial_for(template))
        return _render_edit(request, template, form)
    form = UpdateTemplateForm(request.POST)
    if not form.is_valid():
        return _render_edit(
            request, template, form, status=BAD_REQUEST, error=form_errors_text(form)
        )
    try:
        saved = update_templates.update_template_update(
            actor=request.user, template=template, **form.template_fields()
        )
    except DomainError as error:
        _shown_on(form, error)
        return _render_edit(request, template, form, status=_status_for(error), error=str(error))
    messages.success(request, f"Template {saved.name} saved.")
    return HttpResponseRedirect(reverse("status_templates"))


@require_POST
@permission_required(EDIT, raise_exception=True)
def template_move(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_object_or_404(UpdateTemplate, pk=template_id)
    form = MoveForm(request.POST)
    if not form.is_valid():
        return _render_list(request, status=BAD_REQUEST, error=form_errors_text(form))
    offset = -1 if form.cleaned_data["direction"] == "up" else 1
    try:
        update_templates.update_template_move(actor=request.user, template=template, offset=offset)
    except DomainError as error:
        return _render_list(request, status=_status_for(error), error=str(error))
    return _done(request, f"{template.name} moved {form.cleaned_data['direction']}.")


@require_POST
@permission_required(EDIT, raise_exception=True)
def template_delete(request: HttpRequest, template_id: int) -> HttpResponse:
    template = get_object_or_404(UpdateTemplate, pk=template_id)
    try:
        update_templates.update_template_delete(actor=request.user, template=template)
    except DomainError as error:
        return _render_list(request, status=_status_for(error), error=str(error))
    return _done(request, f"Template {template.name} deleted.")
