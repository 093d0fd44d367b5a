"""The brand's stylesheet for the public pages (statuspage.branding): the colour from
settings as two custom properties, served from the page's own origin because the pages'
Content-Security-Policy allows no inline style. No login; on the status host too."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from statuspage import branding

# The page links the stylesheet with the brand's version in its URL: a new colour is a new
# URL, so a long cache is safe.
CACHE_SECONDS = 24 * 3600


@login_not_required
@require_GET
def brand_css(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        branding.brand_stylesheet(branding.brand_or_fallback()),
        content_type="text/css; charset=utf-8",
    )
    response["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    return response
