"""The status page's components over the API: listed with `read`, and created, changed,
reordered and deleted with `statuspage:write` by a Support Lead, through
statuspage.components as the console's components page does. A refused field answers 400
naming it and saves nothing. A component's state is not set here: a published update or a
maintenance sets it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status

from api.auth import scope
from api.models import READ, STATUS_PAGE_WRITE
from api.schemas import ERRORS
from api.validation import InputError
from incidents.roles import STATUS_PAGE_PERMISSION, require_role
from statuspage import components, selectors
from statuspage.models import Component

router = Router(tags=["status page"])
PATH = "/status-page/components"


class ComponentIn(Schema):
    name: str = Field(description="Public name, unique among its siblings, at most 100")
    description: str = Field("", description="Public description, at most 300 characters")
    is_group: bool = Field(False, description="A group of components (groups do not nest)")
    group: int | None = Field(None, description="The id of the group it sits in")
    only_show_if_degraded: bool = False
    services: list[int] = Field(
        default_factory=list, description="Ids of the production services that feed it"
    )


class ComponentChange(Schema):
    name: str | None = None
    description: str | None = None
    group: int | None = Field(None, description="A group's id; 0 for the top level")
    only_show_if_degraded: bool | None = None
    services: list[int] | None = None


class ComponentOut(Schema):
    id: int
    name: str
    description: str
    is_group: bool
    group: int | None
    position: int
    only_show_if_degraded: bool
    status: str
    services: list[str]


class ComponentOrder(Schema):
    group: int | None = Field(None, description="The group whose members these are; none: top")
    order: list[int] = Field(description="Every component of that level once, in order")


def component_out(component: Component) -> dict[str, Any]:
    return {
        "id": component.pk,
        "name": component.name,
        "description": component.description,
        "is_group": component.is_group,
        "group": component.group_id,
        "position": component.position,
        "only_show_if_degraded": component.only_show_if_degraded,
        "status": component.status,
        "services": sorted(service.name for service in component.services.all()),
    }


def listed() -> list[dict[str, Any]]:
    """Every component in page order: a group, then its members."""
    every = Component.objects.prefetch_related("services").order_by("position", "name", "pk")
    return [
        component_out(component)
        for line in selectors.component_lines(list(every))
        for component in (line.component, *line.members)
    ]


def support_lead(request: HttpRequest) -> None:
    """The role first: someone without it learns nothing about their input."""
    require_role(request.user, STATUS_PAGE_PERMISSION, components.DOING)


def refused(error: components.ComponentRefused) -> InputError:
    return InputError({error.field: [str(error)]})


@router.get(PATH, response={200: list[ComponentOut], **ERRORS}, auth=scope(READ))
def components_list(request: HttpRequest) -> list[dict[str, Any]]:
    """Every component and group, groups' members after them in page order."""
    require_role(request.user, "incidents.view_incident", "read the status page's components")
    return listed()


@router.post(PATH, response={201: ComponentOut, **ERRORS}, auth=scope(STATUS_PAGE_WRITE))
def component_add(request: HttpRequest, payload: ComponentIn) -> Status:
    """Add a component or group, last among its siblings."""
    support_lead(request)
    try:
        created = components.component_create(
            actor=request.user,
            name=payload.name,
            description=payload.description,
            is_group=payload.is_group,
            group_id=payload.group,
            only_show_if_degraded=payload.only_show_if_degraded,
            service_ids=payload.services,
        )
    except components.ComponentRefused as error:
        raise refused(error) from None
    return Status(201, component_out(created))


@router.put(
    f"{PATH}/order", response={200: list[ComponentOut], **ERRORS}, auth=scope(STATUS_PAGE_WRITE)
)
def components_order(request: HttpRequest, payload: ComponentOrder) -> list[dict[str, Any]]:
    """Put one level's components in `order`. (Routed before the paths with an id.)"""
    support_lead(request)
    try:
        components.components_reorder(
            actor=request.user, group_id=payload.group, order=payload.order
        )
    except components.ComponentRefused as error:
        raise refused(error) from None
    return listed()


@router.patch(
    f"{PATH}/{{component_id}}",
    response={200: ComponentOut, **ERRORS},
    auth=scope(STATUS_PAGE_WRITE),
)
def component_change(
    request: HttpRequest, component_id: int, payload: ComponentChange
) -> dict[str, Any]:
    """Change the fields given and keep the others (`group`: 0 moves it to the top level)."""
    support_lead(request)
    component = get_object_or_404(Component, pk=component_id)
    given = payload.dict(exclude_unset=True)
    if not given:
        raise InputError({"input": ["Give at least one field to change."]})
    group = given.get("group", component.group_id)
    try:
        saved = components.component_update(
            actor=request.user,
            component=component,
            name=given["name"] if given.get("name") is not None else component.name,
            description=(
                given["description"]
                if given.get("description") is not None
                else component.description
            ),
            group_id=None if group in (0, None) else group,
            only_show_if_degraded=(
                given["only_show_if_degraded"]
                if given.get("only_show_if_degraded") is not None
                else component.only_show_if_degraded
            ),
            service_ids=(
                given["services"]
                if given.get("services") is not None
                else [service.pk for service in component.services.all()]
            ),
        )
    except components.ComponentRefused as error:
        raise refused(error) from None
    return component_out(saved)


@router.delete(
    f"{PATH}/{{component_id}}", response={204: None, **ERRORS}, auth=scope(STATUS_PAGE_WRITE)
)
def component_remove(request: HttpRequest, component_id: int) -> Status:
    """Delete a component (a group only once it is empty; its history goes with it)."""
    support_lead(request)
    component = get_object_or_404(Component, pk=component_id)
    try:
        components.component_delete(actor=request.user, component=component)
    except components.ComponentRefused as error:
        raise refused(error) from None
    return Status(204, None)
