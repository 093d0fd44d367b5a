"""What the status page's management commands share beyond incidents.management.lookups:
naming a component from a terminal."""

from __future__ import annotations

from django.core.management.base import CommandError

from incidents.management.lookups import shown
from statuspage.models import Component


def component_named(reference: str) -> Component:
    """The component `reference` names (an id, or a name held by one component), or a
    CommandError naming the option."""
    if reference.isascii() and reference.isdigit() and len(reference) <= 18:
        found = Component.objects.filter(pk=int(reference)).first()
    elif "\x00" in reference:  # PostgreSQL text cannot hold NUL: no component is named so
        found = None
    else:
        named = list(Component.objects.filter(name=reference))
        if len(named) > 1:
            ids = ", ".join(str(component.pk) for component in named)
            raise CommandError(f"component: several are named {reference!r}; give an id ({ids}).")
        found = named[0] if named else None
    if found is None:
        raise CommandError(f"component: none is named {shown(reference)!r}.")
    return found
