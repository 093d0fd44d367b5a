"""Keeps a session that still owes its second factor (accounts.two_factor) on the
two-factor page: every other page, the admin included, redirects there (a fetch from htmx is
told 403 with where to go), except signing out, static files and the health endpoints."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect
from django.urls import reverse

from accounts.two_factor import two_factor_required

OPEN_PREFIXES = ("/static/", "/healthz", "/readyz", "/status/")


class RequireTwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if two_factor_required(user) and not user.is_verified():  # type: ignore[union-attr]
            open_paths = {reverse("two_factor"), reverse("two_factor_cancel"), reverse("logout")}
            if request.path not in open_paths and not request.path.startswith(OPEN_PREFIXES):
                target = f"{reverse('two_factor')}?{urlencode({'next': request.get_full_path()})}"
                if request.headers.get("HX-Request"):
                    response = HttpResponseForbidden("Sign-in needs your second factor.")
                    response["HX-Redirect"] = target
                    return response
                return HttpResponseRedirect(target)
        return self.get_response(request)
