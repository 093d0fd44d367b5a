"""System check of the status page's branding settings (run by `manage.py check`, `migrate`
and at start-up), so a colour or URL the public pages cannot use stops the deploy with the
setting named, rather than a broken page later."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from statuspage import branding


@register()
def status_page_branding(app_configs: Any, **kwargs: Any) -> list[Error]:
    try:
        branding.brand()
    except branding.BrandingError as error:
        return [
            Error(
                str(error),
                hint="See docs/status-page.md (Looks and branding).",
                id="statuspage.E001",
            )
        ]
    return []
