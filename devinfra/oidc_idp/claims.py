"""What the stand-in provider says about a person: standard claims from the directory file,
a `groups` scope, and the `amr` (authentication methods) claim in the ID token."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from oidc_provider.lib.claims import ScopeClaims


@cache
def directory() -> dict[str, dict[str, Any]]:
    """The people of the directory file, by user name."""
    data = json.loads(Path(os.environ["IDP_DIRECTORY"]).read_text())
    return {person["username"]: person for person in data["people"]}


def person_of(user: Any) -> dict[str, Any]:
    return directory().get(user.get_username(), {})


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    person = person_of(user)
    claims.update(
        name=person.get("name", ""),
        preferred_username=person.get("preferred_username", user.get_username()),
        email=person.get("email", ""),
        email_verified=bool(person.get("email_verified", True)),
    )
    return claims


class GroupsScopeClaims(ScopeClaims):  # type: ignore[misc]
    """The `groups` scope: the directory groups a person belongs to."""

    info_groups = ("Groups", "The groups you belong to.")

    def scope_groups(self) -> dict[str, Any]:
        return {"groups": list(person_of(self.user).get("groups", []))}


def add_authentication_methods(
    id_token: dict[str, Any], user: Any, **kwargs: Any
) -> dict[str, Any]:
    """`amr` as RFC 8176 names them: a password, and "mfa" for people marked so."""
    id_token["amr"] = ["pwd", "mfa"] if person_of(user).get("mfa") else ["pwd"]
    return id_token
