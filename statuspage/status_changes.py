"""The one way a component's state changes: the new state is saved and recorded in the
uptime history (`ComponentStatusChange`) in the same transaction, with what changed it."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from statuspage.models import Component, ComponentStatusChange, Maintenance, PublicIncident
from statuspage.public_cache import public_changed


@transaction.atomic
def component_status_set(
    component: Component,
    status: str,
    *,
    at: datetime | None = None,
    public_incident: PublicIncident | None = None,
    maintenance: Maintenance | None = None,
) -> bool:
    """Give `component` the state `status` from `at` (now) on; False when it had it already
    (nothing is written). A group's state is its members': it is never set."""
    if component.is_group:
        raise ValueError("A group's state is its components' worst; set theirs.")
    if component.status == status:
        return False
    moment = at or timezone.now()
    component.status = status
    component.updated_at = moment
    component.save(update_fields=["status", "updated_at"])
    ComponentStatusChange.objects.create(
        component=component,
        status=status,
        changed_at=moment,
        public_incident=public_incident,
        maintenance=maintenance,
    )
    public_changed()
    return True


def component_history_start(component: Component) -> None:
    """Record a new component's first state (from its creation on)."""
    if not component.is_group:
        ComponentStatusChange.objects.create(
            component=component, status=component.status, changed_at=component.created_at
        )
