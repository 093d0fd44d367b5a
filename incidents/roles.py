"""Roles are Django groups. Each role grants a fixed set of permissions; approver
capacities (who an approval policy may ask for) are groups too, without permissions."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.contrib.auth.models import User as Person
from django.db import transaction

from incidents.errors import PermissionDenied

# Who acts on the record: a person, or an anonymous visitor the permission checks refuse.
User = Person | AnonymousUser

INCIDENT_COMMANDER = "Incident Commander"
APPROVER = "Approver"
SUPPORT_LEAD = "Support Lead"
RESPONDER = "Responder"
VIEWER = "Viewer"

# The two permissions most pages and services check.
VIEW_PERMISSION = "incidents.view_incident"
COMMAND_PERMISSION = "incidents.command_incident"
# Approving rollbacks, and speaking to customers on the status page.
APPROVE_PERMISSION = "incidents.approve_rollback"
STATUS_PAGE_PERMISSION = "incidents.edit_status_page"

_READ = [VIEW_PERMISSION, "incidents.view_service", "incidents.view_release"]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _READ,
    RESPONDER: [*_READ, "incidents.add_note", "incidents.tick_checklist"],
    SUPPORT_LEAD: [*_READ, "incidents.add_note", STATUS_PAGE_PERMISSION],
    APPROVER: [*_READ, "incidents.add_note", APPROVE_PERMISSION],
    INCIDENT_COMMANDER: [
        *_READ,
        "incidents.add_incident",
        COMMAND_PERMISSION,
        "incidents.add_note",
        "incidents.tick_checklist",
        "incidents.change_release",
    ],
}

# The capacities approval policies name. A person approves in a capacity they hold.
APPROVER_CAPACITIES = ["On-call", "Engineering Lead", "CTO", "Security Lead", "DBA"]


@transaction.atomic
def ensure_roles() -> dict[str, Group]:
    """Create or refresh every role group and capacity group; return the groups by name."""
    groups: dict[str, Group] = {}
    for role, permission_names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = []
        for dotted in permission_names:
            app_label, codename = dotted.split(".")
            permissions.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(permissions)
        groups[role] = group
    for capacity in APPROVER_CAPACITIES:
        groups[capacity], _ = Group.objects.get_or_create(name=capacity)
    return groups


def require_role(actor: User, permission: str, doing: str) -> Person:
    """The actor as a signed-in person holding `permission`, or PermissionDenied saying
    what they tried (`doing`, e.g. "approve rollbacks")."""
    if not isinstance(actor, Person) or not actor.has_perm(permission):
        raise PermissionDenied(f"You do not have the role needed to {doing}.")
    return actor
