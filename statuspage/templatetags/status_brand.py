"""`{% status_brand as brand %}`: the public pages' brand (statuspage.branding) for their
shared head and header partials, whichever view renders the page."""

from __future__ import annotations

from django import template

from statuspage.branding import Brand, brand_or_fallback

register = template.Library()


@register.simple_tag
def status_brand() -> Brand:
    return brand_or_fallback()
