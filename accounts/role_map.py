"""OIDC_ROLE_MAP, read by the settings (so nothing here may import Django's models): a JSON
object from a value of the roles claim to the role, or roles, it grants, e.g.

    {"sre-oncall": ["Incident Commander", "On-call"], "support": "Support Lead"}

Its shape is checked here, when the settings load; the role names by the `accounts.E001`
system check (accounts.checks), once the roles can be read."""

from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured


def parse_role_map(text: str) -> dict[str, list[str]]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImproperlyConfigured(f"OIDC_ROLE_MAP is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ImproperlyConfigured("OIDC_ROLE_MAP must be a JSON object: claim value → role(s)")
    role_map: dict[str, list[str]] = {}
    for value, roles in data.items():
        names = [roles] if isinstance(roles, str) else roles
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ImproperlyConfigured(f"OIDC_ROLE_MAP[{value!r}] must be a role or a list of them")
        role_map[value] = names
    return role_map
