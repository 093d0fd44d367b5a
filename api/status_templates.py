"""The status page's update templates over the API: list and read them, create, change,
reorder and delete them, and start an incident's draft from one. Each write goes through
the templates page's form and statuspage.update_templates, as the console's pages do; a
refused field answers 400 naming it, and a draft saved by someone else since the version
given answers 409 with that draft."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from api.auth import scope
from api.models import READ, STATUS_PAGE_WRITE
from api.schemas import ERRORS, Problem
from api.validation import InputError, validated
from incidents.models import Incident
from incidents.roles import STATUS_PAGE_PERMISSION, require_role
from statuspage import update_templates
from statuspage.forms import StartFromTemplateForm, UpdateTemplateForm
from statuspage.models import Draft, UpdateTemplate
from statuspage.services import DraftConflict

router = Router(tags=["status page"])
PATH = "/status-page/templates"


class ComponentRef(Schema):
    id: int
    name: str


class TemplateIn(Schema):
    name: str = Field(description="Unique, at most 100 characters; for the support lead")
    title: str = Field(description="The public name it gives an incident, at most 200")
    body: str = Field(description="Markdown, at most 10,000 characters, with {placeholders}")
    status: str = Field("investigating", description="investigating, identified, monitoring…")
    components: list[int] = Field(
        default_factory=list, description="Component ids it marks affected (not groups)"
    )
    component_status: str = Field(
        "", description="Their state; empty: as the incident's severity suggests"
    )


class TemplateChange(Schema):
    name: str | None = None
    title: str | None = None
    body: str | None = None
    status: str | None = None
    components: list[int] | None = None
    component_status: str | None = None


class TemplateOut(Schema):
    id: int
    name: str
    title: str
    body: str
    status: str
    components: list[ComponentRef]
    component_status: str
    position: int
    updated_by: str | None
    updated_at: datetime


class TemplateOrder(Schema):
    order: list[int] = Field(description="Every template's id once, in the order wanted")


class TemplateUse(Schema):
    template: int = Field(description="The template's id")
    version: int = Field(description="The draft version you started from (0: no draft yet)")


class DraftOut(Schema):
    incident: int
    version: int
    name: str
    status: str
    impact: str
    body: str
    component_statuses: dict[str, str]
    updated_by: str | None
    updated_at: datetime


class DraftConflictOut(Problem):
    draft: DraftOut


def template_out(template: UpdateTemplate) -> dict[str, Any]:
    return {
        "id": template.pk,
        "name": template.name,
        "title": template.title,
        "body": template.body,
        "status": template.status,
        "components": [{"id": c.pk, "name": c.name} for c in template.components.all()],
        "component_status": template.component_status,
        "position": template.position,
        "updated_by": template.updated_by.get_username() if template.updated_by else None,
        "updated_at": template.updated_at,
    }


def draft_out(draft: Draft) -> dict[str, Any]:
    return {
        "incident": draft.incident_id,
        "version": draft.version,
        "name": draft.name,
        "status": draft.status,
        "impact": draft.impact,
        "body": draft.body,
        "component_statuses": draft.component_statuses,
        "updated_by": draft.updated_by.get_username() if draft.updated_by else None,
        "updated_at": draft.updated_at,
    }


def template_fields(data: dict[str, Any]) -> dict[str, Any]:
    """`data` through the templates page's form: the service's keyword arguments."""
    form = UpdateTemplateForm(data=data)
    if not form.is_valid():
        raise InputError(
            {
                ("input" if field == "__all__" else field): [str(m) for m in messages]
                for field, messages in form.errors.items()
            }
        )
    return form.template_fields()


def refused_by_field(error: update_templates.TemplateRefused) -> InputError:
    return InputError({error.field: [str(error)]})


def support_lead(request: HttpRequest) -> None:
    """The role first: someone without it learns nothing about their input."""
    require_role(request.user, STATUS_PAGE_PERMISSION, update_templates.DOING)


@router.get(PATH, response={200: list[TemplateOut], **ERRORS}, auth=scope(READ))
def templates_list(request: HttpRequest) -> list[dict[str, Any]]:
    """Every update template, in the support lead's order."""
    require_role(request.user, "incidents.view_incident", "read update templates")
    return [template_out(template) for template in update_templates.update_templates_listed()]


@router.put(
    f"{PATH}/order", response={200: list[TemplateOut], **ERRORS}, auth=scope(STATUS_PAGE_WRITE)
)
def templates_order(request: HttpRequest, payload: TemplateOrder) -> list[dict[str, Any]]:
    """Put the templates in `order`; a fresh draft starts from the first of its status.
    (Routed before the paths with a template id, which would take "order" for one.)"""
    support_lead(request)
    try:
        update_templates.update_templates_reorder(actor=request.user, order=payload.order)
    except update_templates.TemplateRefused as error:
        raise refused_by_field(error) from None
    return [template_out(template) for template in update_templates.update_templates_listed()]


@router.get(f"{PATH}/{{template_id}}", response={200: TemplateOut, **ERRORS}, auth=scope(READ))
def template_read(request: HttpRequest, template_id: int) -> dict[str, Any]:
    require_role(request.user, "incidents.view_incident", "read update templates")
    return template_out(get_object_or_404(UpdateTemplate, pk=template_id))


@router.post(PATH, response={201: TemplateOut, **ERRORS}, auth=scope(STATUS_PAGE_WRITE))
def template_create(request: HttpRequest, payload: TemplateIn) -> Status:
    """Add a template, last in the order (as the templates page does)."""
    support_lead(request)
    fields = template_fields(payload.dict())
    try:
        created = update_templates.update_template_create(actor=request.user, **fields)
    except update_templates.TemplateRefused as error:
        raise refused_by_field(error) from None
    return Status(201, template_out(created))


@router.patch(
    f"{PATH}/{{template_id}}",
    response={200: TemplateOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def template_change(
    request: HttpRequest, template_id: int, payload: TemplateChange
) -> dict[str, Any]:
    """Change the fields given, keep the others."""
    support_lead(request)
    template = get_object_or_404(UpdateTemplate, pk=template_id)
    given = {key: value for key, value in payload.dict().items() if value is not None}
    if not given:
        raise InputError({"input": ["Give at least one field to change."]})
    kept = {
        "name": template.name,
        "title": template.title,
        "body": template.body,
        "status": template.status,
        "components": [component.pk for component in template.components.all()],
        "component_status": template.component_status,
    }
    fields = template_fields({**kept, **given})
    try:
        saved = update_templates.update_template_update(
            actor=request.user, template=template, **fields
        )
    except update_templates.TemplateRefused as error:
        raise refused_by_field(error) from None
    return template_out(saved)


@router.delete(
    f"{PATH}/{{template_id}}", response={204: None, **ERRORS}, auth=scope(STATUS_PAGE_WRITE)
)
def template_delete(request: HttpRequest, template_id: int) -> Status:
    support_lead(request)
    template = get_object_or_404(UpdateTemplate, pk=template_id)
    update_templates.update_template_delete(actor=request.user, template=template)
    return Status(204, None)


@router.post(
    "/incidents/{incident_id}/status-draft/from-template",
    response={200: DraftOut, 409: DraftConflictOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def draft_from_template(request: HttpRequest, incident_id: int, payload: TemplateUse) -> Any:
    """Replace the incident's status-page draft with a template filled from its facts. A
    draft saved since `version` answers 409 with that draft, left as it is."""
    support_lead(request)
    incident = get_object_or_404(Incident, pk=incident_id)
    cleaned = validated(StartFromTemplateForm, payload.dict())
    template = UpdateTemplate.objects.filter(pk=cleaned["template"]).first()
    if template is None:
        raise InputError({"template": [f"There is no template {cleaned['template']}."]})
    try:
        draft = update_templates.update_template_use(
            actor=request.user, template=template, incident=incident, version=cleaned["version"]
        )
    except DraftConflict as conflict:
        return Status(409, {"detail": str(conflict), "draft": draft_out(conflict.draft)})
    return draft_out(draft)
