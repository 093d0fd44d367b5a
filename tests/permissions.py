"""The two checks every role × view table makes (tests/*/test_*permissions*.py)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse


def assert_sent_to_login(client: Any, method: str, url: str, data: dict[str, Any]) -> None:
    """An anonymous visitor is sent to the login page."""
    response = getattr(client, method)(url, data)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def assert_reached_only_if_allowed(
    client: Any, method: str, url: str, data: dict[str, Any], *, allowed: bool
) -> None:
    """The signed-in user gets the page (or its redirect) when allowed, else 403."""
    response = getattr(client, method)(url, data)
    if allowed:
        assert response.status_code in (200, 302), response.content[:500]
    else:
        assert response.status_code == 403, response.content[:500]
