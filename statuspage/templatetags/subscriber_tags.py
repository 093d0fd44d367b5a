"""`{% components_offered state.components offered as offered %}`: what the subscribe form
offers. The subscriber pages pass the `offered` their view computed, which is used as it is;
the cached public page passes none, and it is built from the components the page has loaded
already (read from the database when none are given)."""

from __future__ import annotations

from collections.abc import Iterable

from django import template

from statuspage.models import Component
from statuspage.subscriptions import components_offered as offered_by_service

register = template.Library()


@register.simple_tag
def components_offered(
    listed: Iterable[Component] | None = None,
    offered: object = None,
) -> list[tuple[str, list[Component]]]:
    if isinstance(offered, list):  # an unset template variable arrives as ""
        return offered
    return offered_by_service(listed or None)
