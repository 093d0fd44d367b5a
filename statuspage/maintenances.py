"""The support lead's scheduled maintenances: schedule one, edit it while it is scheduled,
post updates that move it forward (scheduled → in progress → verifying → completed), cancel
it; and the beat's automatic start and completion at the window's edges. The console's
pages, `manage.py status_maintenance` and the API all end here.

Each operation checks everything before it writes, in one transaction, under a lock on the
maintenance: a refusal is a `MaintenanceRefused` naming the field, and nothing is saved.
Every published update is announced after commit (`maintenance_update_published`) and drops
the public page's cached copies.

Components. When a maintenance starts (in progress, or straight to verifying), its
components go under maintenance and the states they had are kept in `previous_statuses`;
each change is recorded in the uptime history with the maintenance. When it completes,
each goes back to the state it had, unless something else has had the last word: a
component whose latest recorded change was not made by a maintenance (an incident's
update, a repair in the admin) keeps its state, and one that another active maintenance
still covers stays under maintenance until that one completes.

Cancelling is what Statuspage does: the maintenance is completed with an update saying it
was cancelled; only a scheduled one (nothing has been touched yet) can be cancelled.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User as Person
from django.db import transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.roles import STATUS_PAGE_PERMISSION, User, require_role
from statuspage import markup
from statuspage.components import refused_character
from statuspage.maintenance_selectors import ACTIVE
from statuspage.models import (
    Component,
    ComponentStatus,
    ComponentStatusChange,
    Maintenance,
    MaintenanceImpact,
    MaintenanceStatus,
    MaintenanceUpdate,
)
from statuspage.public_cache import public_changed
from statuspage.services import MAX_BODY_CHARS
from statuspage.signals import maintenance_update_published
from statuspage.status_changes import component_status_set

logger = logging.getLogger(__name__)

NAME_MAX = 200
BODY_MAX = MAX_BODY_CHARS
DOING = "manage scheduled maintenances"
# Forward only: a status may follow those before it in this order (or repeat itself).
ORDER: list[str] = [
    MaintenanceStatus.SCHEDULED,
    MaintenanceStatus.IN_PROGRESS,
    MaintenanceStatus.VERIFYING,
    MaintenanceStatus.COMPLETED,
]
STARTED_TEXT = "The scheduled maintenance has started."
COMPLETED_TEXT = "The scheduled maintenance is complete."
CANCELLED_TEXT = "This maintenance has been cancelled; it will not take place."
NOT_HELD_TEXT = "This maintenance did not take place; its window has ended."

FIELD_LABELS = {
    "name": "Name",
    "body": "Update",
    "scheduled_for": "Start",
    "scheduled_until": "End",
    "components": "Components",
    "impact": "Impact",
    "status": "Status",
    "maintenance": "Maintenance",
    "reason": "Reason",
}
# The window's bounds: a start more than a year ahead, or a window longer than a month, is
# a typing slip (and a far-off instant would not fit the database once in UTC). An end
# must be to come, so a start is never more than WINDOW_MAX in the past either.
START_AHEAD_MAX = timedelta(days=365)
WINDOW_MAX = timedelta(days=30)


class MaintenanceRefused(DomainError):
    """Input the rules refuse; `field` names the input it is about."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{FIELD_LABELS.get(field, field)}: {message}")


def _refuse_characters(field: str, text: str, *, allowed: str = "") -> None:
    char = refused_character(text, allowed=allowed)
    if char is not None:
        raise MaintenanceRefused(field, f"control characters are not allowed (U+{ord(char):04X}).")


def check_name(value: str) -> str:
    """The public name: markup removed, then stripped, NFC, one line of 1 to NAME_MAX
    characters. The checks read the cleaned text, the one saved (and the characters the
    given one too): cleaning decodes entities (`&#10;` is a line break) and may lengthen
    it (a blocked link)."""
    _refuse_characters("name", value.strip())  # cleaning would drop a NUL silently
    text = unicodedata.normalize("NFC", markup.clean_source(value).strip())
    _refuse_characters("name", text)
    if len(text) > NAME_MAX:
        raise MaintenanceRefused("name", f"at most {NAME_MAX} characters (this has {len(text)}).")
    if not text:
        raise MaintenanceRefused("name", "give it a public name (markup alone is not one).")
    return text


def check_body(value: str, *, field: str = "body") -> str:
    """An update's Markdown: raw HTML removed (as revisions are), then NFC, at most BODY_MAX
    characters, no control characters but line breaks and tabs; never empty. As for names,
    the checks read the cleaned text."""
    source = value.replace("\r\n", "\n")
    _refuse_characters(field, source, allowed="\n\t")  # cleaning would drop a NUL silently
    text = unicodedata.normalize("NFC", markup.clean_source(source))
    if len(text) > BODY_MAX:
        raise MaintenanceRefused(field, f"at most {BODY_MAX} characters (this has {len(text)}).")
    _refuse_characters(field, text, allowed="\n\t")
    if not text.strip():
        raise MaintenanceRefused(field, "write the update (markup alone is not one).")
    return text


def check_window(
    scheduled_for: datetime, scheduled_until: datetime, *, now: datetime | None = None
) -> None:
    """Both instants with a time zone, the end after the start and to come, the start at
    most START_AHEAD_MAX ahead, the window at most WINDOW_MAX long."""
    for field, moment in (("scheduled_for", scheduled_for), ("scheduled_until", scheduled_until)):
        if not isinstance(moment, datetime) or timezone.is_naive(moment):
            raise MaintenanceRefused(field, "give a date and time with its time zone.")
    moment = now or timezone.now()
    if scheduled_for > moment + START_AHEAD_MAX:
        raise MaintenanceRefused("scheduled_for", f"at most {START_AHEAD_MAX.days} days ahead.")
    if scheduled_until <= scheduled_for:
        raise MaintenanceRefused("scheduled_until", "the end must be after the start.")
    if scheduled_until - scheduled_for > WINDOW_MAX:
        raise MaintenanceRefused(
            "scheduled_until", f"a window lasts at most {WINDOW_MAX.days} days."
        )
    if scheduled_until <= moment:
        raise MaintenanceRefused("scheduled_until", "that window has already ended.")


def check_components(component_ids: Collection[int]) -> list[Component]:
    """The components named, locked in id order; groups and unknown ids are refused (a
    group's state is its members': choose those)."""
    wanted = sorted(set(component_ids))
    found = {
        c.pk: c
        for c in Component.objects.select_for_update(no_key=True)
        .filter(pk__in=wanted)
        .order_by("pk")
    }
    for pk in wanted:
        if pk not in found:
            raise MaintenanceRefused("components", f"there is no component {pk}.")
        if found[pk].is_group:
            raise MaintenanceRefused(
                "components",
                f"{found[pk].name} is a group; choose its components (a group shows theirs).",
            )
    return [found[pk] for pk in wanted]


def _check_impact(impact: str) -> str:
    if impact not in MaintenanceImpact.values:
        raise MaintenanceRefused("impact", f"one of {', '.join(MaintenanceImpact.values)}.")
    return impact


def _locked(maintenance: Maintenance) -> Maintenance:
    locked = Maintenance.objects.select_for_update(no_key=True).filter(pk=maintenance.pk).first()
    if locked is None:
        raise MaintenanceRefused("maintenance", "it no longer exists; reload the page.")
    return locked


def _published(
    maintenance: Maintenance,
    *,
    status: str,
    body: str,
    person: Person | None,
    notify_subscribers: bool,
    at: datetime,
) -> MaintenanceUpdate:
    update = MaintenanceUpdate.objects.create(
        maintenance=maintenance,
        status=status,
        body=body,
        body_html=markup.render(body),
        notify_subscribers=notify_subscribers,
        published_by=person,
        published_at=at,
    )
    transaction.on_commit(
        lambda: maintenance_update_published.send_robust(
            sender=MaintenanceUpdate, update_id=update.pk
        )
    )
    public_changed()
    return update


@transaction.atomic
def maintenance_schedule(
    *,
    actor: User,
    name: str,
    scheduled_for: datetime,
    scheduled_until: datetime,
    body: str,
    component_ids: Collection[int] = (),
    impact: str = MaintenanceImpact.MAINTENANCE,
    auto_start: bool = True,
    auto_complete: bool = True,
    notify_subscribers: bool = False,
) -> Maintenance:
    """A new maintenance in the `scheduled` state, with its first update (`body`). Its
    window is checked by `check_window`."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    checked_name, checked_body = check_name(name), check_body(body)
    now = timezone.now()
    check_window(scheduled_for, scheduled_until, now=now)
    checked_impact = _check_impact(impact)
    components = check_components(component_ids)
    maintenance = Maintenance.objects.create(
        name=checked_name,
        impact=checked_impact,
        scheduled_for=scheduled_for,
        scheduled_until=scheduled_until,
        auto_start=auto_start,
        auto_complete=auto_complete,
        created_by=person,
        created_at=now,
        updated_at=now,
    )
    maintenance.components.set(components)
    _published(
        maintenance,
        status=MaintenanceStatus.SCHEDULED,
        body=checked_body,
        person=person,
        notify_subscribers=notify_subscribers,
        at=now,
    )
    logger.info("maintenance %s scheduled by %s", maintenance.pk, person)
    return maintenance


@transaction.atomic
def maintenance_edit(
    *,
    actor: User,
    maintenance: Maintenance,
    name: str,
    scheduled_for: datetime,
    scheduled_until: datetime,
    component_ids: Collection[int],
    impact: str,
    auto_start: bool,
    auto_complete: bool,
) -> Maintenance:
    """Change what a scheduled maintenance announces (its updates stay as published).
    Refused once it has started."""
    require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    locked = _locked(maintenance)
    if locked.status != MaintenanceStatus.SCHEDULED:
        raise MaintenanceRefused(
            "status", f"only a scheduled maintenance can be edited (this one is {locked.status})."
        )
    checked_name = check_name(name)
    check_window(scheduled_for, scheduled_until)
    checked_impact = _check_impact(impact)
    components = check_components(component_ids)
    locked.name, locked.impact = checked_name, checked_impact
    locked.scheduled_for, locked.scheduled_until = scheduled_for, scheduled_until
    locked.auto_start, locked.auto_complete = auto_start, auto_complete
    locked.updated_at = timezone.now()
    locked.save()
    locked.components.set(components)
    public_changed()
    return locked


@transaction.atomic
def maintenance_update_post(
    *,
    actor: User,
    maintenance: Maintenance,
    status: str,
    body: str,
    notify_subscribers: bool = False,
) -> MaintenanceUpdate:
    """Publish an update with `status` (the same as now, or later in scheduled → in
    progress → verifying → completed). Starting puts the components under maintenance;
    completing gives them back their states (see the module's docstring)."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    checked_body = check_body(body)
    return maintenance_advance(
        maintenance,
        status=status,
        body=checked_body,
        person=person,
        notify_subscribers=notify_subscribers,
    )


@transaction.atomic
def maintenance_cancel(
    *, actor: User, maintenance: Maintenance, reason: str = "", notify_subscribers: bool = False
) -> MaintenanceUpdate:
    """Call off a scheduled maintenance: it is completed with an update saying so (and
    `reason`, when given). Nothing had been put under maintenance."""
    person = require_role(actor, STATUS_PAGE_PERMISSION, DOING)
    checked_reason = check_body(reason, field="reason") if reason.strip() else ""
    checked_body = CANCELLED_TEXT + (f"\n\n{checked_reason}" if checked_reason else "")
    if len(checked_body) > BODY_MAX:
        room = BODY_MAX - len(CANCELLED_TEXT) - 2
        raise MaintenanceRefused(
            "reason", f"at most {room} characters (this has {len(checked_reason)})."
        )
    locked = _locked(maintenance)
    if locked.status != MaintenanceStatus.SCHEDULED:
        raise MaintenanceRefused(
            "status",
            f"only a scheduled maintenance can be cancelled (this one is {locked.status}).",
        )
    return maintenance_advance(
        locked,
        status=MaintenanceStatus.COMPLETED,
        body=checked_body,
        person=person,
        notify_subscribers=notify_subscribers,
    )


def maintenance_advance(
    maintenance: Maintenance,
    *,
    status: str,
    body: str,
    person: Person | None,
    notify_subscribers: bool = False,
    at: datetime | None = None,
) -> MaintenanceUpdate:
    """Move `maintenance` to `status` with an update (`body` already checked), inside the
    caller's transaction; `person` None for the beat. The role is the caller's to check."""
    locked = _locked(maintenance)
    if status not in ORDER:
        raise MaintenanceRefused("status", f"one of {', '.join(ORDER)}.")
    if locked.status == MaintenanceStatus.COMPLETED:
        raise MaintenanceRefused("status", "this maintenance is completed; it cannot change.")
    if ORDER.index(status) < ORDER.index(locked.status):
        raise MaintenanceRefused(
            "status",
            f"a maintenance only moves forward; it is {locked.status}, not back to {status}.",
        )
    now = at or timezone.now()
    if status in ACTIVE and locked.started_at is None:
        _start(locked, at=now)
    if status == MaintenanceStatus.COMPLETED:
        if locked.started_at is not None:
            _restore(locked, at=now)
        locked.resolved_at = now
    locked.status = status
    locked.updated_at = now
    locked.save()
    logger.info("maintenance %s now %s", locked.pk, status)
    return _published(
        locked,
        status=status,
        body=body,
        person=person,
        notify_subscribers=notify_subscribers,
        at=now,
    )


def _covering(component_ids: Collection[int], *, besides: Maintenance) -> dict[int, Maintenance]:
    """Component id → another active maintenance that has it under maintenance."""
    covering: dict[int, Maintenance] = {}
    others = (
        Maintenance.objects.filter(status__in=ACTIVE, components__in=component_ids)
        .exclude(pk=besides.pk)
        .prefetch_related("components")
        .distinct()
    )
    for other in others:
        for component in other.components.all():
            covering.setdefault(component.pk, other)
    return covering


def _latest_changes(component_ids: Collection[int]) -> dict[int, ComponentStatusChange]:
    """Component id → its latest row in the uptime history."""
    latest: dict[int, ComponentStatusChange] = {}
    for change in ComponentStatusChange.objects.filter(component_id__in=component_ids).order_by(
        "component_id", "-changed_at", "-id"
    ):
        latest.setdefault(change.component_id, change)
    return latest


def _start(maintenance: Maintenance, *, at: datetime) -> None:
    components = list(
        maintenance.components.select_for_update(no_key=True).filter(is_group=False).order_by("pk")
    )
    ids = [c.pk for c in components]
    covering = _covering(ids, besides=maintenance)
    latest = _latest_changes(ids)
    previous: dict[str, str] = {}
    for component in components:
        other = covering.get(component.pk)
        last = latest.get(component.pk)
        # Still under another window (the last word a maintenance's): what it had before
        # that one is what it goes back to. Changed since (an incident, the admin): its
        # state now is.
        before = None
        if (
            other is not None
            and component.status == ComponentStatus.UNDER_MAINTENANCE
            and last is not None
            and last.maintenance_id is not None
        ):
            before = (other.previous_statuses or {}).get(str(component.pk))
        previous[str(component.pk)] = before or component.status
        component_status_set(
            component, ComponentStatus.UNDER_MAINTENANCE, at=at, maintenance=maintenance
        )
    maintenance.previous_statuses = previous
    maintenance.started_at = at


def _restore(maintenance: Maintenance, *, at: datetime) -> None:
    previous = maintenance.previous_statuses or {}
    ids = [int(key) for key in previous if key.isdigit()]
    components = list(
        Component.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
    )
    covering = _covering(ids, besides=maintenance)
    latest = _latest_changes(ids)
    for component in components:
        last = latest.get(component.pk)
        if component.pk in covering:
            continue  # the other window gives it back when it completes
        if last is None or last.maintenance_id is None:
            continue  # an incident (or a person) has had the last word meanwhile
        component_status_set(component, previous[str(component.pk)], at=at, maintenance=maintenance)


# -- the beat ----------------------------------------------------------------------------------


@dataclass
class Advanced:
    """What one pass of the beat moved, by id."""

    started: list[int]
    completed: list[int]
    not_held: list[int]


def _claim_and_advance(
    pk: int, *, due: dict[str, object], status: str, body: str, at: datetime
) -> bool:
    with transaction.atomic():
        claimed = (
            Maintenance.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(pk=pk, **due)
            .first()
        )
        if claimed is None:
            return False  # another beat has it, or it moved on meanwhile
        maintenance_advance(claimed, status=status, body=body, person=None, at=at)
        return True


def maintenances_due_advance(*, now: datetime | None = None) -> Advanced:
    """Start the scheduled maintenances with `auto_start` whose window has begun, complete
    the active ones with `auto_complete` whose window has ended, and complete the scheduled
    ones left to be started by hand whose window has ended unstarted, saying it did not take
    place (else it would read "upcoming" for ever). Each is claimed
    with a skip-locked row lock and checked again under it, in a transaction of its own:
    two beats at once move each maintenance once, and a pass repeated does nothing."""
    moment = now or timezone.now()
    start_due: dict[str, object] = {
        "status": MaintenanceStatus.SCHEDULED,
        "auto_start": True,
        "scheduled_for__lte": moment,
    }
    complete_due: dict[str, object] = {
        "status__in": ACTIVE,
        "auto_complete": True,
        "scheduled_until__lte": moment,
    }
    not_held_due: dict[str, object] = {
        "status": MaintenanceStatus.SCHEDULED,
        "auto_start": False,
        "scheduled_until__lte": moment,
    }
    advanced = Advanced(started=[], completed=[], not_held=[])
    for pk in (
        Maintenance.objects.filter(**start_due)
        .order_by("scheduled_for", "pk")
        .values_list("pk", flat=True)
    ):
        if _claim_and_advance(
            pk, due=start_due, status=MaintenanceStatus.IN_PROGRESS, body=STARTED_TEXT, at=moment
        ):
            advanced.started.append(pk)
    for pk in (
        Maintenance.objects.filter(**complete_due)
        .order_by("scheduled_until", "pk")
        .values_list("pk", flat=True)
    ):
        if _claim_and_advance(
            pk, due=complete_due, status=MaintenanceStatus.COMPLETED, body=COMPLETED_TEXT, at=moment
        ):
            advanced.completed.append(pk)
    for pk in (
        Maintenance.objects.filter(**not_held_due)
        .order_by("scheduled_until", "pk")
        .values_list("pk", flat=True)
    ):
        if _claim_and_advance(
            pk, due=not_held_due, status=MaintenanceStatus.COMPLETED, body=NOT_HELD_TEXT, at=moment
        ):
            advanced.not_held.append(pk)
    return advanced


# -- the demo ----------------------------------------------------------------------------------

DEMO_NAME = "Order history database upgrade"
DEMO_BODY = (
    "We are upgrading the database behind order history. While we work, past orders and "
    "receipts may not load; checkout is not affected."
)


@transaction.atomic
def maintenance_demo_schedule(*, now: datetime | None = None) -> Maintenance | None:
    """The demo's maintenance: tomorrow 02:00-03:00 (console time) on "Order history".
    Nothing when a maintenance of that name is still to come or under way (safe to run
    again), or the page has no "Order history". A set-up step: it acts for nobody."""
    if (
        Maintenance.objects.filter(name=DEMO_NAME)
        .exclude(status=MaintenanceStatus.COMPLETED)
        .exists()
    ):
        return None
    component = Component.objects.filter(name="Order history", is_group=False).first()
    if component is None:
        return None
    local = timezone.localtime(now or timezone.now())
    start = (local + timedelta(days=1)).replace(hour=2, minute=0, second=0, microsecond=0)
    maintenance = Maintenance.objects.create(
        name=DEMO_NAME, scheduled_for=start, scheduled_until=start + timedelta(hours=1)
    )
    maintenance.components.set([component])
    _published(
        maintenance,
        status=MaintenanceStatus.SCHEDULED,
        body=DEMO_BODY,
        person=None,
        notify_subscribers=False,
        at=maintenance.created_at,
    )
    return maintenance
