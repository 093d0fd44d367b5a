"""Changes to post-mortems. Each function is one transaction: it checks the actor's role,
changes the post-mortem, and records a revision saying who changed what. Starting and
moving between states also write a post-mortem entry on the incident's timeline.

Editing belongs to incident commanders and responders; publishing (and reopening a published
post-mortem) to incident commanders alone.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User as Person
from django.db import transaction
from django.utils import timezone

from incidents.errors import DomainError, PermissionDenied
from incidents.models import Incident, IncidentStatus, TimelineEntry, TimelineKind
from incidents.roles import RESPONDER, User
from incidents.timeline import timeline_append
from postmortems.models import (
    NARRATIVE_FIELDS,
    ActionItem,
    Postmortem,
    PostmortemRevision,
    PostmortemState,
    RevisionAction,
    TimelineStar,
)
from rollbacks.models import Run, RunState

COMMAND = "incidents.command_incident"

# Entry kinds starred when a post-mortem starts: the turns of the story. People adjust.
KEY_KINDS = frozenset(
    {
        TimelineKind.INCIDENT_OPENED,
        TimelineKind.STATUS_CHANGE,
        TimelineKind.SEVERITY_CHANGE,
        TimelineKind.DECISION,
        TimelineKind.RUN,
    }
)

# What must be written before a post-mortem goes to review (and so before publishing).
REQUIRED_FOR_REVIEW = {
    "summary": "a summary",
    "root_cause": "the root cause",
    "resolution": "the resolution",
}


class EditConflict(DomainError):
    """Someone else saved the same fields after the editor loaded the form."""


def can_edit(actor: User) -> bool:
    """Incident commanders and responders write post-mortems."""
    if not isinstance(actor, Person) or not actor.is_active:
        return False
    return actor.has_perm(COMMAND) or actor.groups.filter(name=RESPONDER).exists()


def can_publish(actor: User) -> bool:
    return isinstance(actor, Person) and actor.is_active and actor.has_perm(COMMAND)


def _require_editor(actor: User, doing: str) -> Person:
    if not can_edit(actor):
        raise PermissionDenied(f"Only incident commanders and responders can {doing}.")
    assert isinstance(actor, Person)
    return actor


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Person):
        return value.get_username()
    return value


def _record(
    postmortem: Postmortem,
    *,
    actor: Person | None,
    action: str,
    changes: dict[str, tuple[Any, Any]] | None = None,
    note: str = "",
) -> PostmortemRevision:
    """Number and store one revision of a locked post-mortem."""
    postmortem.revision += 1
    postmortem.updated_at = timezone.now()
    postmortem.save()
    return PostmortemRevision.objects.create(
        postmortem=postmortem,
        number=postmortem.revision,
        action=action,
        author=actor,
        changes={
            field: [_json_value(before), _json_value(after)]
            for field, (before, after) in (changes or {}).items()
        },
        note=note[:300],
    )


def _lock(postmortem: Postmortem) -> Postmortem:
    return (
        Postmortem.objects.select_for_update(no_key=True)
        .select_related("incident")
        .get(pk=postmortem.pk)
    )


def _span(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    return f"{minutes} min {seconds:02d} s"


def _resolution_from_runs(incident: Incident) -> str:
    """A first draft of the resolution from the rollbacks that succeeded (drills and dry
    runs left out)."""
    runs = (
        Run.objects.filter(incident=incident, state=RunState.SUCCEEDED, drill=False, dry_run=False)
        .prefetch_related("steps__service")
        .order_by("started_at", "id")
    )
    sentences = []
    for run in runs:
        moves = [f"{step.service.name} to {step.target_label}" for step in run.steps.all()]
        took = _span(run.duration)
        sentence = f"Rollback #{run.pk} returned {', '.join(moves) or 'no service'}"
        sentences.append(sentence + (f" in {took}." if took else "."))
    return " ".join(sentences)


@transaction.atomic
def postmortem_start(*, incident: Incident, actor: User) -> Postmortem:
    """Start the incident's post-mortem, filled in from the record: the incident's summary,
    a resolution drafted from successful rollbacks, and the key timeline entries starred."""
    person = _require_editor(actor, "start a post-mortem")
    locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
    if Postmortem.objects.filter(incident=locked).exists():
        raise DomainError("This incident already has a post-mortem.")
    postmortem = Postmortem.objects.create(
        incident=locked,
        summary=locked.summary or locked.title,
        resolution=_resolution_from_runs(locked),
        created_by=person,
    )
    key_entries = TimelineEntry.objects.filter(incident=locked, kind__in=KEY_KINDS).values_list(
        "id", flat=True
    )
    TimelineStar.objects.bulk_create(
        TimelineStar(postmortem=postmortem, entry_id=entry_id, starred_by=None)
        for entry_id in key_entries
    )
    _record(
        postmortem, actor=person, action=RevisionAction.STARTED, note="Filled in from the record"
    )
    timeline_append(
        incident=locked,
        kind=TimelineKind.POSTMORTEM,
        body=f"Post-mortem started by {person.get_username()}",
        actor=person,
        payload={"postmortem": postmortem.pk, "state": postmortem.state},
    )
    return postmortem


@transaction.atomic
def postmortem_edit(
    *, postmortem: Postmortem, actor: User, values: dict[str, Any], base_revision: int
) -> Postmortem:
    """Save the narrative fields in `values` that differ from what is stored.

    `base_revision` is the revision the editor started from: if anyone has since saved a
    different value in a field this edit changes too, nothing is saved (EditConflict).
    """
    person = _require_editor(actor, "edit post-mortems")
    locked = _lock(postmortem)
    if locked.state == PostmortemState.PUBLISHED:
        raise DomainError("This post-mortem is published; reopen it as a draft to edit it.")
    unknown = set(values) - set(NARRATIVE_FIELDS)
    if unknown:
        raise DomainError(f"These are not post-mortem fields: {', '.join(sorted(unknown))}.")
    changes = {
        field: (getattr(locked, field), value)
        for field, value in values.items()
        if getattr(locked, field) != value
    }
    if not changes:
        return locked
    if base_revision < locked.revision:
        later = locked.revisions.filter(number__gt=base_revision, action=RevisionAction.EDITED)
        touched = {field for revision in later for field in revision.changes}
        clashing = sorted(touched & set(changes))
        if clashing:
            names = ", ".join(field.replace("_", " ") for field in clashing)
            raise EditConflict(
                f"Someone saved {names} after you opened this page; reload to see their "
                "text, then make your change again."
            )
    for field, (_, value) in changes.items():
        setattr(locked, field, value)
    _record(locked, actor=person, action=RevisionAction.EDITED, changes=changes)
    return locked


@transaction.atomic
def postmortem_change_state(*, postmortem: Postmortem, actor: User, to_state: str) -> Postmortem:
    """Move the post-mortem along draft → in review → published (or back to draft).

    Review needs a summary, a root cause and a resolution; publishing also needs the
    incident resolved and the Incident Commander role, as does reopening a published one.
    """
    person = _require_editor(actor, "change a post-mortem's state")
    locked = _lock(postmortem)
    if to_state not in PostmortemState.values:
        raise DomainError(f"Unknown post-mortem state {to_state!r}.")
    if not locked.can_become(to_state):
        raise DomainError(
            f"A post-mortem cannot go from {locked.get_state_display()} to "
            f"{PostmortemState(to_state).label}."
        )
    publishing = to_state == PostmortemState.PUBLISHED
    reopening = locked.state == PostmortemState.PUBLISHED
    if (publishing or reopening) and not can_publish(person):
        raise PermissionDenied("Only an incident commander can publish or reopen a post-mortem.")
    if to_state in (PostmortemState.IN_REVIEW, PostmortemState.PUBLISHED):
        missing = [
            label
            for field, label in REQUIRED_FOR_REVIEW.items()
            if not getattr(locked, field).strip()
        ]
        if missing:
            raise DomainError(f"Write {', '.join(missing)} first.")
    if publishing and locked.incident.status != IncidentStatus.RESOLVED:
        raise DomainError("Resolve the incident before publishing its post-mortem.")
    before = locked.state
    locked.state = to_state
    if publishing:
        locked.published_at, locked.published_by = timezone.now(), person
    elif reopening:
        locked.published_at, locked.published_by = None, None
    _record(
        locked, actor=person, action=RevisionAction.STATE, changes={"state": (before, to_state)}
    )
    what = "reopened as a draft" if reopening else PostmortemState(to_state).label.lower()
    timeline_append(
        incident=locked.incident,
        kind=TimelineKind.POSTMORTEM,
        body=f"Post-mortem {what} by {person.get_username()}",
        actor=person,
        payload={"postmortem": locked.pk, "from": before, "to": to_state},
    )
    return locked


@transaction.atomic
def postmortem_star(
    *, postmortem: Postmortem, entry: TimelineEntry, actor: User, starred: bool
) -> bool:
    """Star or unstar one of the incident's timeline entries; returns whether it is starred."""
    person = _require_editor(actor, "star timeline entries")
    locked = _lock(postmortem)
    if entry.incident_id != locked.incident_id:
        raise DomainError("That timeline entry belongs to another incident.")
    if locked.state == PostmortemState.PUBLISHED:
        raise DomainError("This post-mortem is published; reopen it as a draft to change stars.")
    existing = TimelineStar.objects.filter(postmortem=locked, entry=entry)
    if starred == existing.exists():
        return starred
    if starred:
        TimelineStar.objects.create(postmortem=locked, entry=entry, starred_by=person)
    else:
        existing.delete()
    _record(
        locked,
        actor=person,
        action=RevisionAction.STARRED if starred else RevisionAction.UNSTARRED,
        note=f"Entry {entry.pk}: {entry.body[:200]}",
    )
    return starred


@transaction.atomic
def action_item_add(
    *,
    postmortem: Postmortem,
    actor: User,
    title: str,
    owner: Person | None = None,
    due_on: date | None = None,
    ticket_url: str = "",
) -> ActionItem:
    """Add a follow-up. Allowed after publishing too: follow-ups are tracked until closed."""
    person = _require_editor(actor, "add action items")
    locked = _lock(postmortem)
    text = title.strip()
    if not text:
        raise DomainError("Say what needs doing.")
    if owner is not None and not owner.is_active:
        raise DomainError(f"{owner.get_username()} is not an active user.")
    item = ActionItem.objects.create(
        postmortem=locked,
        title=text,
        owner=owner,
        due_on=due_on,
        ticket_url=ticket_url,
        created_by=person,
    )
    _record(
        locked,
        actor=person,
        action=RevisionAction.ACTION_ADDED,
        changes={"action_item": (None, text)},
        note=f"Owner {owner.get_username() if owner else 'nobody yet'}, due {due_on or 'no date'}",
    )
    return item


@transaction.atomic
def action_item_set_done(*, item: ActionItem, actor: User, done: bool) -> ActionItem:
    """Close or reopen an action item, recording who and when."""
    person = _require_editor(actor, "close action items")
    # The post-mortem first, then the item: the order every post-mortem change locks in.
    postmortem = _lock(item.postmortem)
    locked_item = ActionItem.objects.select_for_update(no_key=True).get(pk=item.pk)
    if locked_item.is_done == done:
        return locked_item
    locked_item.done_at = timezone.now() if done else None
    locked_item.done_by = person if done else None
    locked_item.save(update_fields=["done_at", "done_by"])
    _record(
        postmortem,
        actor=person,
        action=RevisionAction.ACTION_DONE if done else RevisionAction.ACTION_REOPENED,
        changes={"done": (not done, done)},
        note=locked_item.title,
    )
    return locked_item
