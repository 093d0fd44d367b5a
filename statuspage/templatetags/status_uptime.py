"""`{{ uptime|uptime_of:component }}`: a component's bars from the page's uptime (a template
cannot index a mapping by a variable)."""

from __future__ import annotations

from django import template

from statuspage.models import Component
from statuspage.uptime import ComponentUptime, PageUptime

register = template.Library()


@register.filter
def uptime_of(uptime: PageUptime | None, component: Component) -> ComponentUptime | None:
    """The bars of `component` (a group's are its members' combined), or None."""
    return uptime.of(component) if uptime is not None else None
