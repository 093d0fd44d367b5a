"""Keeps a session that still owes its second factor (accounts.two_factor) on the
two-factor page: every other page, the admin included, redirects there (a fetch from htmx is
told 403 with where to go), except signing out, static files and the health endpoints.

It serves sync and async requests alike, so the room's live stream (an async view) is not
pushed onto a thread; with REQUIRE_TWO_FACTOR off it does nothing at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.urls import reverse

from accounts.two_factor import second_factor_given, two_factor_required

OPEN_PREFIXES = ("/static/", "/healthz", "/readyz", "/status/")


def held_back(request: HttpRequest, user: Any) -> HttpResponse | None:
    """Where `user` must go first, or None when the request may go on."""
    if not two_factor_required(user) or second_factor_given(request, user):
        return None
    open_paths = {reverse("two_factor"), reverse("two_factor_cancel"), reverse("logout")}
    if request.path in open_paths or request.path.startswith(OPEN_PREFIXES):
        return None
    target = f"{reverse('two_factor')}?{urlencode({'next': request.get_full_path()})}"
    if request.headers.get("HX-Request"):
        response = HttpResponseForbidden("Sign-in needs your second factor.")
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


class RequireTwoFactorMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if settings.REQUIRE_TWO_FACTOR:
            held = held_back(request, request.user)
            if held is not None:
                return held
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if settings.REQUIRE_TWO_FACTOR:
            user = await request.auser()
            held = await sync_to_async(held_back)(request, user)
            if held is not None:
                return held
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response
