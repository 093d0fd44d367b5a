from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from api.tokens import token_create
from tests.factories import UserFactory


class ApiClient:
    """Django's test client speaking JSON with a bearer token."""

    def __init__(self, text: str, user: Any = None) -> None:
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {text}")
        self.text = text
        self.user = user

    def demote(self, role: str) -> ApiClient:
        """The owner keeps the token but now holds only `role` (roles change after tokens)."""
        from django.contrib.auth.models import Group

        self.user.groups.set([Group.objects.get(name=role)])
        return self

    def call(self, method: str, path: str, body: Any = None) -> Any:
        send = getattr(self.client, method)
        if body is None:
            return send(f"/api/v1{path}")
        return send(f"/api/v1{path}", body, content_type="application/json")


@pytest.fixture
def api_as(roles: dict) -> Callable[..., ApiClient]:
    """api_as(["Incident Commander"], "read", "runs:write") → a client with such a token."""

    def make(role_names: list[str], *scopes: str, user: Any = None) -> ApiClient:
        person = user or UserFactory(roles=role_names)
        _, text = token_create(user=person, name="pipeline", scopes=scopes)
        return ApiClient(text, person)

    return make
