"""The support lead's update templates: named starting points for a public update (title,
body, public status, the components it marks affected and at what state). Create, edit,
reorder and delete them, and start an incident's draft from one. The console's templates
page, the desk, the `status_templates` command and the API all end here.

Each operation checks everything before it writes, in one transaction: a refusal is a
`TemplateRefused` naming the field, and nothing is saved. A template names only the facts
fit for the public (statuspage.texts.PUBLIC_FACT_NAMES): an unknown {placeholder} is
refused by name, so a typo is caught when the template is saved, not when a customer reads
"{componets}". Positions count from 1 and are renumbered on every change. A fresh draft
starts from the first template of its status (statuspage.services.draft_defaults), so the
order is also the support lead's choice of default.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import Incident
from incidents.roles import STATUS_PAGE_PERMISSION, User, require_role
from statuspage import services, texts
from statuspage.models import Component, ComponentStatus, Draft, PublicStatus, UpdateTemplate

logger = logging.getLogger(__name__)

NAME_MAX = 100
TITLE_MAX = services.TITLE_MAX_CHARS
BODY_MAX = services.MAX_BODY_CHARS
DOING = "manage the status page's update templates"

FIELD_LABELS = {
    "name": "Name",
    "title": "Title",
    "body": "Body",
    "status": "Status",
    "components": "Components",
    "component_status": "Component status",
    "order": "Order",
    "template": "Template",
}

# Line and paragraph separators and the explicit bidirectional embeddings, overrides and
# isolates: they can make the text around them read in another order. Right-to-left text
# itself, and the marks (U+200E/F) and joiners emoji use, are fine.
_REFUSED_FORMATS = frozenset(
    ["\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
)


class TemplateRefused(DomainError):
    """Input the rules refuse; `field` names the input it is about."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{FIELD_LABELS.get(field, field)}: {message}")


def check_text(
    field: str, value: str, *, limit: int, multiline: bool = False, placeholders: bool = True
) -> str:
    """`value` stripped and NFC-normalised (line ends made \\n), or TemplateRefused: blank,
    over `limit` characters, a control character (a `multiline` one may hold new lines and
    tabs) or, where `placeholders` are filled, an unknown {placeholder}."""
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n").strip())
    if not text:
        raise TemplateRefused(field, "give it one; it cannot be blank.")
    if len(text) > limit:
        raise TemplateRefused(field, f"at most {limit:,} characters (this has {len(text):,}).")
    allowed = "\n\t" if multiline else ""
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in ("Cc", "Cs") or char in _REFUSED_FORMATS:
            raise TemplateRefused(field, f"control characters are not allowed (U+{ord(char):04X}).")
    unknown = texts.unknown_placeholders(text) if placeholders else []
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in texts.PUBLIC_FACT_NAMES)
        shown = ", ".join(f"{{{name[:40]}}}" for name in unknown[:5])
        raise TemplateRefused(
            field, f"unknown placeholder {shown}; a public update may use {known}."
        )
    return text


@dataclass
class _Checked:
    name: str
    title: str
    body: str
    components: list[Component] = field(default_factory=list)


def _check(
    *,
    template: UpdateTemplate | None,
    name: str,
    title: str,
    body: str,
    status: str,
    component_ids: Collection[int],
    component_status: str,
) -> _Checked:
    checked = _Checked(
        name=check_text("name", name, limit=NAME_MAX, placeholders=False),
        title=check_text("title", title, limit=TITLE_MAX),
        body=check_text("body", body, limit=BODY_MAX, multiline=True),
    )
    if status not in PublicStatus.values:
        raise TemplateRefused("status", f"{status[:40]!r} is not a public status.")
    if component_status and component_status not in ComponentStatus.values:
        raise TemplateRefused(
            "component_status", f"{component_status[:40]!r} is not a component status."
        )
    wanted = set(component_ids)
    found = {c.pk: c for c in Component.objects.filter(pk__in=wanted).select_related("group")}
    missing = wanted - set(found)
    if missing:
        raise TemplateRefused("components", f"there is no component {min(missing)}.")
    for component in found.values():
        if component.is_group:
            raise TemplateRefused(
                "components",
                f"{component.name} is a group; choose its components (a group shows their "
                "worst state).",
            )
    checked.components = sorted(found.values(), key=texts.page_order)
    others = UpdateTemplate.objects.all()
    if template is not None:
        others = others.exclude(pk=template.pk)
    folded = checked.name.casefold()
    if any(other.casefold() == folded for other in others.values_list("name", flat=True)):
        raise TemplateRefused("name", f"{checked.name!r} is taken by another template.")
    return checked


def _saved(template: UpdateTemplate) -> None:
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        # The same name saved at the same moment by someone else.
        raise TemplateRefused("name", f"{template.name!r} was just taken.") from None


def _renumber(order: Sequence[int] | None = None) -> None:
    listed = list(
        UpdateTemplate.objects.select_for_update(no_key=True).order_by("position", "name", "pk")
    )
    if order is not None:
        where = {pk: index for index, pk in enumerate(order)}
        listed.sort(key=lambda template: where[template.pk])
    for position, template in enumerate(listed, start=1):
        if template.position != position:
            template.position = position
            template.save(update_fields=["position"])


def update_templates_listed() -> list[UpdateTemplate]:
    """Every template in the support lead's order, with its components."""
    return list(
        UpdateTemplate.objects.prefetch_related("components").order_by("position", "name", "pk")
    )


@transaction.atomic
def update_template_create(
    *,
    actor: User,
    name: str,
    title: str,
    body: str,
    status: str = PublicStatus.INVESTIGATING,
    component_ids: Collection[int] = (),
    component_status: str = "",
) -> UpdateTemplate:
    """A new template, last in the order."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    checked = _check(
        template=None,
        name=name,
        title=title,
        body=body,
        status=status,
        component_ids=component_ids,
        component_status=component_status,
    )
    template = UpdateTemplate(
        name=checked.name,
        title=checked.title,
        body=checked.body,
        status=status,
        component_status=component_status,
        position=UpdateTemplate.objects.count() + 1,
        updated_by=person,
        updated_at=timezone.now(),
    )
    _saved(template)
    template.components.set(checked.components)
    _renumber()
    logger.info("update template %s created by %s", template.pk, person)
    return template


@transaction.atomic
def update_template_update(
    *,
    actor: User,
    template: UpdateTemplate,
    name: str,
    title: str,
    body: str,
    status: str,
    component_ids: Collection[int],
    component_status: str,
) -> UpdateTemplate:
    """Change every field of `template` (its place in the order stays)."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    locked = UpdateTemplate.objects.select_for_update(no_key=True).filter(pk=template.pk).first()
    if locked is None:  # another support lead deleted it meanwhile
        raise TemplateRefused("template", "it was deleted meanwhile; reload the page.")
    checked = _check(
        template=locked,
        name=name,
        title=title,
        body=body,
        status=status,
        component_ids=component_ids,
        component_status=component_status,
    )
    locked.name, locked.title, locked.body = checked.name, checked.title, checked.body
    locked.status, locked.component_status = status, component_status
    locked.updated_by, locked.updated_at = person, timezone.now()
    _saved(locked)
    locked.components.set(checked.components)
    return locked


@transaction.atomic
def update_templates_reorder(*, actor: User, order: Sequence[int]) -> None:
    """Put the templates in `order`, which must name each of them once."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    present = set(
        UpdateTemplate.objects.select_for_update(no_key=True).values_list("pk", flat=True)
    )
    if len(order) != len(set(order)) or set(order) != present:
        raise TemplateRefused("order", "name each template once, and only those; reload the page.")
    _renumber(order)


@transaction.atomic
def update_template_move(*, actor: User, template: UpdateTemplate, offset: int) -> None:
    """Move `template` `offset` places (negative: up), stopping at either end."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    order = list(
        UpdateTemplate.objects.select_for_update(no_key=True)
        .order_by("position", "name", "pk")
        .values_list("pk", flat=True)
    )
    if template.pk not in order:
        raise TemplateRefused("template", "it was deleted meanwhile; reload the page.")
    index = order.index(template.pk)
    order.insert(max(0, min(len(order) - 1, index + offset)), order.pop(index))
    update_templates_reorder(actor=actor, order=order)


@transaction.atomic
def update_template_delete(*, actor: User, template: UpdateTemplate) -> None:
    """Remove `template`; drafts started from it keep their text."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    deleted, _ = UpdateTemplate.objects.filter(pk=template.pk).delete()
    if not deleted:
        raise TemplateRefused("template", "it was deleted meanwhile; reload the page.")
    _renumber()
    logger.info("update template %s deleted by %s", template.pk, person)


@transaction.atomic
def update_template_use(
    *, actor: User, template: UpdateTemplate, incident: Incident, version: int
) -> Draft:
    """Replace the incident's draft with `template` filled from the incident's facts
    (services.draft_fields_from_template), under the draft's version rule: a draft saved
    by someone else since `version` raises DraftConflict and is left as it is."""
    require_role(actor, STATUS_PAGE_PERMISSION, "edit the status page")
    fields = services.draft_fields_from_template(incident, template)
    return services.draft_save(incident=incident, actor=actor, version=version, **fields)
