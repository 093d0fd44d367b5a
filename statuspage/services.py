"""The support lead's operations on the status page: save a draft (optimistic locking),
publish it as a revision, restore an old revision into the draft, start a draft from the
incident's facts.

Draft saves are a scratchpad and write no timeline entry; publishing is the fact, so every
publish writes a COMMS_PUBLISHED entry in the same transaction (announced on Redis after
commit by `incidents.services.timeline_append`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import Incident, Severity, TimelineKind
from incidents.roles import STATUS_PAGE_PERMISSION, User, require_role
from incidents.timeline import timeline_append
from statuspage import markup, texts
from statuspage.models import (
    FINISHED_PUBLIC_STATUSES,
    Component,
    ComponentStatus,
    Draft,
    Impact,
    PublicIncident,
    PublicStatus,
    Revision,
    UpdateTemplate,
)
from statuspage.public_cache import public_changed
from statuspage.signals import revision_published
from statuspage.status_changes import component_status_set

logger = logging.getLogger(__name__)

EDIT_PERMISSION = STATUS_PAGE_PERMISSION
MAX_BODY_CHARS = 10_000
TITLE_MAX_CHARS = 200

IMPACT_FOR_SEVERITY: dict[str, str] = {
    Severity.P0: Impact.CRITICAL,
    Severity.P1: Impact.MAJOR,
    Severity.P2: Impact.MINOR,
    Severity.P3: Impact.MINOR,
}
COMPONENT_STATUS_FOR_SEVERITY: dict[str, str] = {
    Severity.P0: ComponentStatus.MAJOR_OUTAGE,
    Severity.P1: ComponentStatus.PARTIAL_OUTAGE,
    Severity.P2: ComponentStatus.DEGRADED_PERFORMANCE,
    Severity.P3: ComponentStatus.DEGRADED_PERFORMANCE,
}


class DraftConflict(DomainError):
    """Someone saved the draft after the version the editor started from."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        who = draft.updated_by.get_username() if draft.updated_by else "someone"
        when = timezone.localtime(draft.updated_at)
        super().__init__(
            f"{who} saved this draft at {when:%H:%M:%S} (version {draft.version}) while you "
            "were editing. Their text is shown beside yours; nothing was overwritten. Merge "
            "what you need and save again."
        )


def draft_get(incident: Incident) -> Draft:
    """The incident's draft, or an unsaved one (version 0) filled from the incident."""
    draft = Draft.objects.select_related("updated_by").filter(incident=incident).first()
    if draft is not None:
        return draft
    return Draft(incident=incident, version=0, **draft_defaults(incident))


# A fresh draft's text when the support lead has no update template of its status.
FALLBACK_TITLE = "Service disruption: {components}"
FALLBACK_BODY = "{components}: we will post what we know here as soon as we can."


def default_update_template(status: str) -> UpdateTemplate:
    """The template a fresh draft of `status` starts from: the first of that status in the
    templates page's order (a postmortem: else the first resolved one), or an unsaved
    plain one when there is none."""
    wanted = [status, PublicStatus.RESOLVED] if status == PublicStatus.POSTMORTEM else [status]
    for each in wanted:
        found = UpdateTemplate.objects.filter(status=each).order_by("position", "name").first()
        if found is not None:
            return found
    return UpdateTemplate(title=FALLBACK_TITLE, body=FALLBACK_BODY, status=status)


def draft_fields_from_template(
    incident: Incident, template: UpdateTemplate, *, status: str | None = None
) -> dict[str, Any]:
    """Draft fields from `template` filled with the incident's public facts: its status (or
    `status`), and its components (none: those the incident's services feed) at its
    `component_status` (blank: operational once resolved, else what the severity suggests).
    {components} names the components the draft marks."""
    public_status = status or template.status
    chosen: list[Component] = []
    if template.pk is not None:
        chosen = list(template.components.filter(is_group=False).select_related("group"))
    components = sorted(chosen, key=texts.page_order) or texts.affected_components(incident)
    component_status = template.component_status or (
        ComponentStatus.OPERATIONAL
        if public_status in FINISHED_PUBLIC_STATUSES
        else COMPONENT_STATUS_FOR_SEVERITY[incident.severity]
    )
    facts = texts.public_facts(texts.incident_facts(incident))
    if chosen:
        facts["components"] = ", ".join(component.name for component in components)
    title = texts.fill(template.title, facts).strip()
    if len(title) > TITLE_MAX_CHARS:  # a long list of components: the title is cut, not refused
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return {
        "name": title or "Service disruption",
        "status": public_status,
        "impact": IMPACT_FOR_SEVERITY[incident.severity],
        "body": texts.fill(template.body, facts),
        "component_statuses": {str(c.pk): component_status for c in components},
    }


def draft_defaults(incident: Incident, *, status: str | None = None) -> dict[str, Any]:
    """Draft fields from the update template for `status` (by default the public status
    matching the incident's own), filled from the incident's facts."""
    public_status = status or texts.PUBLIC_STATUS_FOR[incident.status]
    return draft_fields_from_template(
        incident, default_update_template(public_status), status=public_status
    )


def _check_fields(
    *, name: str, status: str, impact: str, body: str, component_statuses: Mapping[str, str]
) -> dict[str, str]:
    if not name.strip():
        raise DomainError("Give the incident a public name.")
    if len(name.strip()) > TITLE_MAX_CHARS:
        raise DomainError(f"The public name is limited to {TITLE_MAX_CHARS} characters.")
    if status not in PublicStatus.values:
        raise DomainError(f"Unknown public status {status!r}.")
    if impact not in Impact.values:
        raise DomainError(f"Unknown impact {impact!r}.")
    if len(body) > MAX_BODY_CHARS:
        raise DomainError(f"The update is limited to {MAX_BODY_CHARS} characters.")
    cleaned: dict[str, str] = {}
    # A group's state is its components' worst: it is never set on its own.
    known = set(
        Component.objects.filter(
            is_group=False,
            pk__in=[key for key in component_statuses if str(key).isascii() and str(key).isdigit()],
        ).values_list("pk", flat=True)
    )
    for key, value in component_statuses.items():
        if not (str(key).isascii() and str(key).isdigit()) or int(key) not in known:
            raise DomainError(f"Unknown component {key!r}.")
        if value not in ComponentStatus.values:
            raise DomainError(f"Unknown component status {value!r}.")
        cleaned[str(int(key))] = value
    return cleaned


@transaction.atomic
def draft_save(
    *,
    incident: Incident,
    actor: User,
    version: int,
    name: str,
    status: str,
    impact: str,
    body: str,
    component_statuses: Mapping[str, str],
) -> Draft:
    """Save the draft if nobody saved it since `version` (0: no draft yet); else raise
    DraftConflict carrying the other person's draft."""
    person = require_role(actor, EDIT_PERMISSION, "edit the status page")
    statuses = _check_fields(
        name=name, status=status, impact=impact, body=body, component_statuses=component_statuses
    )
    draft = Draft.objects.select_for_update(no_key=True).filter(incident=incident).first()
    if draft is None:
        if version != 0:
            raise DomainError("This draft no longer exists; reload the page.")
        draft = Draft(incident=incident, version=0)
    elif draft.version != version:
        raise DraftConflict(draft)
    draft.name = name.strip()
    draft.status = status
    draft.impact = impact
    draft.body = body.replace("\r\n", "\n")
    draft.component_statuses = statuses
    draft.version += 1
    draft.updated_by = person
    draft.updated_at = timezone.now()
    if draft.pk is None:
        try:
            with transaction.atomic():
                draft.save(force_insert=True)
        except IntegrityError:
            # Two first saves at once: the other one won.
            raise DraftConflict(Draft.objects.get(incident=incident)) from None
    else:
        draft.save()
    return draft


@transaction.atomic
def draft_publish(
    *,
    incident: Incident,
    actor: User,
    version: int,
    name: str,
    status: str,
    impact: str,
    body: str,
    component_statuses: Mapping[str, str],
    notify_subscribers: bool = False,
) -> Revision:
    """Save the draft (same version rule) and publish it: a new revision, the public
    incident and the components' states updated, a COMMS_PUBLISHED timeline entry. With
    `notify_subscribers`, the page's email subscribers are sent it after commit
    (statuspage.subscriber_sending)."""
    draft = draft_save(
        incident=incident,
        actor=actor,
        version=version,
        name=name,
        status=status,
        impact=impact,
        body=body,
        component_statuses=component_statuses,
    )
    published_name = markup.clean_source(draft.name) or "Service disruption"
    published_body = markup.clean_source(draft.body)
    if not published_body:
        raise DomainError("Write the update before publishing it.")
    now = timezone.now()
    public = PublicIncident.objects.select_for_update(no_key=True).filter(incident=incident).first()
    if public is None:
        # One instant for created and updated: a first publish never reads as updated before
        # it was created.
        public = PublicIncident.objects.create(
            incident=incident,
            name=published_name,
            status=draft.status,
            impact=draft.impact,
            created_at=now,
            updated_at=now,
        )
    previous = public.revisions.order_by("-number").first()
    revision = Revision.objects.create(
        public_incident=public,
        number=previous.number + 1 if previous else 1,
        name=published_name,
        status=draft.status,
        impact=draft.impact,
        body=published_body,
        body_html=markup.render(published_body),
        component_statuses=draft.component_statuses,
        published_by=draft.updated_by,
        published_at=now,
        notify_subscribers=bool(notify_subscribers),
    )
    public.name, public.status, public.impact = published_name, draft.status, draft.impact
    public.updated_at = now
    if draft.status == PublicStatus.MONITORING and public.monitoring_at is None:
        public.monitoring_at = now
    if draft.status in (PublicStatus.RESOLVED, PublicStatus.POSTMORTEM):
        public.resolved_at = public.resolved_at or now
    else:
        public.resolved_at = None
    public.save()
    changed_components = []
    for component in Component.objects.select_for_update(no_key=True).filter(
        pk__in=[int(key) for key in draft.component_statuses]
    ):
        public.components.add(component)
        new_status = draft.component_statuses[str(component.pk)]
        if component_status_set(component, new_status, at=now, public_incident=public):
            changed_components.append(f"{component.name} → {new_status.replace('_', ' ')}")
    timeline_append(
        incident=incident,
        kind=TimelineKind.COMMS_PUBLISHED,
        body=f"Status page revision {revision.number} published "
        f"({PublicStatus(revision.status).label}, impact {revision.impact}): {revision.name}"
        + (f"; {', '.join(changed_components)}" if changed_components else ""),
        actor=actor,
        payload={
            "revision": revision.pk,
            "number": revision.number,
            "public_incident": public.pk,
            "status": revision.status,
            "impact": revision.impact,
            "component_statuses": revision.component_statuses,
            "notify_subscribers": revision.notify_subscribers,
        },
    )
    public_changed()
    transaction.on_commit(
        lambda: revision_published.send_robust(sender=Revision, revision_id=revision.pk)
    )
    return revision


@transaction.atomic
def revision_restore(*, revision: Revision, actor: User, version: int) -> Draft:
    """Put a published revision's text back into the draft (to publish it again), without
    the states of components deleted since."""
    listed = {
        str(pk) for pk in Component.objects.filter(is_group=False).values_list("pk", flat=True)
    }
    return draft_save(
        incident=revision.public_incident.incident,
        actor=actor,
        version=version,
        name=revision.name,
        status=revision.status,
        impact=revision.impact,
        body=revision.body,
        component_statuses={
            key: value for key, value in revision.component_statuses.items() if key in listed
        },
    )


@transaction.atomic
def draft_start_from_incident(
    *, incident: Incident, actor: User, version: int, status: str | None = None
) -> Draft:
    """Replace the draft with the update template for `status` (draft_defaults), filled
    from the incident's facts (e.g. when service was restored and verified)."""
    if status is not None and status not in PublicStatus.values:
        raise DomainError(f"Unknown public status {status!r}.")
    return draft_save(
        incident=incident, actor=actor, version=version, **draft_defaults(incident, status=status)
    )
