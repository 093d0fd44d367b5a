"""Values every page's layout may use from rollbacks: the approvals badge in base.html."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from rollbacks import selectors as rollback_selectors


def approvals_badge(request: HttpRequest) -> dict[str, Callable[[], int]]:
    """`approvals_waiting`: how many rollback requests wait for this approver (counted only
    when a page shows it)."""
    user: Any = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"approvals_waiting": lambda: len(rollback_selectors.approvals_awaiting(user))}
