"""The support lead's operations on the public page's components and groups: create, edit,
reorder, delete, and choose the services that feed each (the console's page, the
`status_components` command and the admin's repairs all end here).

Each operation checks everything before it writes, in one transaction: a refusal is a
`ComponentRefused` naming the field, and nothing is saved. A component's public name and
description are its own; nothing here copies an internal service's. Groups are components
with `is_group`: they hold components, are fed by no service and do not nest. Positions
count from 1 among siblings (the top level, or one group's members) and are renumbered on
every change, so they stay a plain 1..n.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from incidents.errors import DomainError
from incidents.models import Environment, Service
from incidents.roles import STATUS_PAGE_PERMISSION, User, require_role
from statuspage.models import FINISHED_PUBLIC_STATUSES, Component, PublicIncident
from statuspage.public_cache import public_changed
from statuspage.status_changes import component_history_start

logger = logging.getLogger(__name__)

NAME_MAX = 100
DESCRIPTION_MAX = 300
DOING = "manage the status page's components"

# Line and paragraph separators and the explicit bidirectional embeddings, overrides and
# isolates: a one-line public name needs none of them, and they can make the text around
# the name read in another order. Right-to-left text itself, and the marks (U+200E/F) and
# joiners emoji use, are fine.
_REFUSED_FORMATS = frozenset(
    ["\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)

FIELD_LABELS = {
    "name": "Name",
    "description": "Description",
    "group": "Group",
    "services": "Services",
    "only_show_if_degraded": "Only show if degraded",
    "order": "Order",
    "component": "Component",
}


class ComponentRefused(DomainError):
    """Input the rules refuse; `field` names the input it is about."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{FIELD_LABELS.get(field, field)}: {message}")


def check_text(field: str, value: str, *, limit: int, required: bool) -> str:
    """`value` stripped and NFC-normalised, or ComponentRefused: blank when required, more
    than `limit` characters, or holding a control character."""
    text = unicodedata.normalize("NFC", value.strip())
    if required and not text:
        raise ComponentRefused(field, "give it one; it cannot be blank.")
    if len(text) > limit:
        raise ComponentRefused(field, f"at most {limit} characters (this has {len(text)}).")
    char = refused_character(text)
    if char is not None:
        raise ComponentRefused(field, f"control characters are not allowed (U+{ord(char):04X}).")
    return text


def refused_character(text: str, *, allowed: str = "") -> str | None:
    """The first character of `text` a public text refuses (a control character, a
    surrogate, one of _REFUSED_FORMATS), those in `allowed` aside; None when there is none."""
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in _REFUSED_FORMATS:
            return char
    return None


def one_group(values: Sequence[str]) -> int | None:
    """The group id a form or the command names (none: the top level), or ComponentRefused
    when more than one is named: a component belongs to at most one group."""
    chosen = [value.strip() for value in values if value.strip()]
    if len(set(chosen)) > 1:
        raise ComponentRefused("group", "a component belongs to at most one group.")
    if not chosen:
        return None
    # An id is a bigint: longer digit strings name no row (and would overflow the query).
    if not (chosen[0].isascii() and chosen[0].isdigit()) or len(chosen[0]) > 18:
        raise ComponentRefused("group", f"{chosen[0][:40]!r} is not a group.")
    return int(chosen[0])


def siblings(group_id: int | None) -> QuerySet[Component]:
    """The components sharing a parent (the top level when `group_id` is None), in order."""
    return Component.objects.filter(group_id=group_id).order_by("position", "name", "pk")


def _renumber(group_id: int | None, order: Sequence[int] | None = None) -> None:
    members = list(siblings(group_id).select_for_update(no_key=True))
    if order is not None:
        where = {pk: index for index, pk in enumerate(order)}
        members.sort(key=lambda member: where[member.pk])
    for position, member in enumerate(members, start=1):
        if member.position != position:
            member.position = position
            member.save(update_fields=["position"])


@dataclass
class _Checked:
    name: str
    description: str
    group: Component | None
    services: list[Service] = field(default_factory=list)


def _check(
    *,
    component: Component | None,
    is_group: bool,
    name: str,
    description: str,
    group_id: int | None,
    only_show_if_degraded: bool,
    service_ids: Collection[int],
) -> _Checked:
    checked = _Checked(
        name=check_text("name", name, limit=NAME_MAX, required=True),
        description=check_text("description", description, limit=DESCRIPTION_MAX, required=False),
        group=None,
    )
    if group_id is not None:
        if is_group:
            raise ComponentRefused("group", "groups do not nest; a group sits at the top level.")
        checked.group = (
            Component.objects.select_for_update(no_key=True)
            .filter(pk=group_id, is_group=True)
            .first()
        )
        if checked.group is None:
            raise ComponentRefused("group", f"there is no group {group_id}.")
    if is_group and service_ids:
        raise ComponentRefused(
            "services", "a group is fed by its components, not by services; choose none."
        )
    if is_group and only_show_if_degraded:
        raise ComponentRefused(
            "only_show_if_degraded", "a group is shown while one of its components is."
        )
    wanted = set(service_ids)
    checked.services = list(Service.objects.filter(pk__in=wanted).order_by("name"))
    missing = wanted - {service.pk for service in checked.services}
    if missing:
        raise ComponentRefused("services", f"there is no service {min(missing)}.")
    for service in checked.services:
        if service.environment != Environment.PRODUCTION:
            raise ComponentRefused(
                "services",
                f"only production services feed the public page ({service} is not one).",
            )
    taken = siblings(checked.group.pk if checked.group else None)
    if component is not None:
        taken = taken.exclude(pk=component.pk)
    folded = checked.name.casefold()
    if any(other.casefold() == folded for other in taken.values_list("name", flat=True)):
        where = f"in {checked.group.name}" if checked.group else "at the top level"
        raise ComponentRefused("name", f"{checked.name!r} is already listed {where}.")
    return checked


def _saved(component: Component) -> None:
    try:
        with transaction.atomic():
            component.save()
    except IntegrityError:
        # The same name saved at the same moment by someone else.
        raise ComponentRefused("name", f"{component.name!r} was just taken.") from None


@transaction.atomic
def component_create(
    *,
    actor: User,
    name: str,
    description: str = "",
    is_group: bool = False,
    group_id: int | None = None,
    only_show_if_degraded: bool = False,
    service_ids: Collection[int] = (),
) -> Component:
    """A new component (or group, `is_group`), last among its siblings, fed by the services
    `service_ids` (production only; none for a group)."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    checked = _check(
        component=None,
        is_group=is_group,
        name=name,
        description=description,
        group_id=group_id,
        only_show_if_degraded=only_show_if_degraded,
        service_ids=service_ids,
    )
    parent = checked.group.pk if checked.group else None
    component = Component(
        name=checked.name,
        description=checked.description,
        is_group=is_group,
        group=checked.group,
        only_show_if_degraded=only_show_if_degraded,
        position=siblings(parent).count() + 1,
    )
    _saved(component)
    component_history_start(component)
    component.services.set(checked.services)
    _renumber(parent)
    public_changed()
    logger.info("status component %s created by %s", component.pk, actor)
    return component


@transaction.atomic
def component_update(
    *,
    actor: User,
    component: Component,
    name: str,
    description: str,
    group_id: int | None,
    only_show_if_degraded: bool,
    service_ids: Collection[int],
) -> Component:
    """Change what the page shows of `component` and the services that feed it. Moving it
    to another group (or the top level) puts it last there. Its state changes only by a
    publish, never here."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    locked = Component.objects.select_for_update(no_key=True).filter(pk=component.pk).first()
    if locked is None:  # another support lead deleted it meanwhile
        raise ComponentRefused("component", "it was deleted meanwhile; reload the page.")
    checked = _check(
        component=locked,
        is_group=locked.is_group,
        name=name,
        description=description,
        group_id=group_id,
        only_show_if_degraded=only_show_if_degraded,
        service_ids=service_ids,
    )
    before = locked.group_id
    after = checked.group.pk if checked.group else None
    locked.name, locked.description = checked.name, checked.description
    locked.group = checked.group
    locked.only_show_if_degraded = only_show_if_degraded
    if before != after:
        locked.position = siblings(after).count() + 1
    _saved(locked)
    if not locked.is_group:
        locked.services.set(checked.services)
    if before != after:
        _renumber(before)
        _renumber(after)
    public_changed()
    return locked


@transaction.atomic
def components_reorder(*, actor: User, group_id: int | None, order: Sequence[int]) -> None:
    """Put the children of group `group_id` (the top level when None) in `order`, which
    must name each of them once."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    if group_id is not None and not Component.objects.filter(pk=group_id, is_group=True).exists():
        raise ComponentRefused("group", f"there is no group {group_id}.")
    present = set(siblings(group_id).select_for_update(no_key=True).values_list("pk", flat=True))
    if len(order) != len(set(order)) or set(order) != present:
        raise ComponentRefused(
            "order", "name each component of that level once, and only those; reload the page."
        )
    _renumber(group_id, order)
    public_changed()


@transaction.atomic
def component_move(*, actor: User, component: Component, offset: int) -> None:
    """Move `component` `offset` places among its siblings (negative: up), stopping at
    either end."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    locked = Component.objects.select_for_update(no_key=True).filter(pk=component.pk).first()
    if locked is None:  # another support lead deleted it meanwhile
        raise ComponentRefused("component", "it was deleted meanwhile; reload the page.")
    order = list(siblings(locked.group_id).values_list("pk", flat=True))
    index = order.index(locked.pk)
    order.insert(max(0, min(len(order) - 1, index + offset)), order.pop(index))
    components_reorder(actor=actor, group_id=locked.group_id, order=order)


@transaction.atomic
def component_delete(*, actor: User, component: Component) -> None:
    """Remove `component` from the page. A group's components stay, at the top level in
    the group's place. Refused while an unresolved public incident lists the component
    (or one of the group's), so customers do not lose sight of it mid-incident."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    locked = Component.objects.select_for_update(no_key=True).filter(pk=component.pk).first()
    if locked is None:  # another support lead deleted it meanwhile
        raise ComponentRefused("component", "it was deleted meanwhile; reload the page.")
    members = list(siblings(locked.pk).select_for_update(no_key=True)) if locked.is_group else []
    listed = (
        PublicIncident.objects.filter(components__in=[locked, *members])
        .exclude(status__in=FINISHED_PUBLIC_STATUSES)
        .first()
    )
    if listed is not None:
        raise ComponentRefused(
            "component",
            f"the unresolved incident {listed.name!r} lists it; resolve that first.",
        )
    # The group itself is still there while its members move up.
    top_names = {name.casefold() for name in siblings(None).values_list("name", flat=True)}
    clash = next((m.name for m in members if m.name.casefold() in top_names), None)
    if clash is not None:
        raise ComponentRefused(
            "component",
            f"its member {clash!r} would land beside a top-level component (or the group) of "
            "that name; rename one first.",
        )
    top = list(siblings(None).values_list("pk", flat=True))
    place = top.index(locked.pk) if locked.group_id is None else len(top)
    Component.objects.filter(pk__in=[member.pk for member in members]).update(group=None)
    parent = locked.group_id
    locked.delete()
    if members:
        order = [pk for pk in top if pk != locked.pk]
        order[place:place] = [member.pk for member in members]
        _renumber(None, order)
    else:
        _renumber(parent)
    public_changed()
    logger.info("status component %s deleted by %s", component.pk, actor)


# -- a starting layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedComponent:
    """A component of a starting layout, fed by the production services named."""

    name: str
    description: str
    services: tuple[str, ...]
    only_show_if_degraded: bool = False


@dataclass(frozen=True)
class PlannedGroup:
    name: str
    description: str
    components: tuple[PlannedComponent, ...]


@transaction.atomic
def components_lay_out(layout: Sequence[PlannedGroup | PlannedComponent]) -> list[Component]:
    """Create the components of `layout` that the page lacks, fed by those of their
    services that exist; return the ones created. A planned component none of whose
    services exists is left out, and a group with no component left is too. What exists
    (by name, in its place) is left as the support lead made it: safe to run again.

    A set-up step (the demo's `status_components`): it acts for nobody, so it checks no
    role, and its layout is written in code rather than typed by a person."""
    production = {
        service.name: service
        for service in Service.objects.filter(environment=Environment.PRODUCTION)
    }
    created: list[Component] = []

    def placed(planned: PlannedComponent, group: Component | None) -> None:
        feeds = [production[name] for name in planned.services if name in production]
        parent = group.pk if group else None
        if not feeds or siblings(parent).filter(name=planned.name).exists():
            return
        component = Component.objects.create(
            name=planned.name,
            description=planned.description,
            group=group,
            only_show_if_degraded=planned.only_show_if_degraded,
            position=siblings(parent).count() + 1,
        )
        component_history_start(component)
        component.services.set(feeds)
        created.append(component)

    for item in layout:
        if isinstance(item, PlannedComponent):
            placed(item, None)
            continue
        if not any(name in production for member in item.components for name in member.services):
            continue
        group = siblings(None).filter(name=item.name).first()
        if group is not None and not group.is_group:
            continue  # a component of that name holds the place: the support lead's call
        if group is None:
            group = Component.objects.create(
                name=item.name,
                description=item.description,
                is_group=True,
                position=siblings(None).count() + 1,
            )
            created.append(group)
        for member in item.components:
            placed(member, group)
    if created:
        public_changed()
    return created
