"""System checks of the sign-in settings (run by `manage.py check` and at start-up)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from incidents.roles import APPROVER_CAPACITIES, ROLE_PERMISSIONS

# The groups a role map may name: the roles and the approver capacities.
MAPPABLE_GROUPS = (*ROLE_PERMISSIONS, *APPROVER_CAPACITIES)
SSO_ENDPOINTS = (
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
)


@register()
def sso_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = []
    for value, names in settings.OIDC_ROLE_MAP.items():
        unknown = sorted(set(names) - set(MAPPABLE_GROUPS))
        if unknown:
            errors.append(
                Error(
                    f"OIDC_ROLE_MAP[{value!r}] names {', '.join(unknown)}: not a role or an "
                    "approver capacity",
                    hint=f"Known: {', '.join(MAPPABLE_GROUPS)}.",
                    id="accounts.E001",
                )
            )
    if settings.SSO_ENABLED:
        missing = [name for name in SSO_ENDPOINTS if not getattr(settings, name)]
        if not settings.OIDC_RP_CLIENT_SECRET:
            missing.append("OIDC_RP_CLIENT_SECRET")
        if missing:
            errors.append(
                Error(
                    f"Single sign-on is on (OIDC_RP_CLIENT_ID is set) but {', '.join(missing)} "
                    "is not",
                    hint="`manage.py sso discover <issuer URL>` prints the endpoint settings.",
                    id="accounts.E002",
                )
            )
    return errors
