"""The status page on a host of its own (STATUS_PAGE_HOST, e.g. status.example.com).

Statuspage clients, Atlassian's embeddable widget among them, fetch
`<page>/api/v2/summary.json` from the root of the page's host. A request whose host is the
status host is answered from statuspage.public_urls: the public page, its JSON and its
feed at the root, and nothing of the console (no sign-in page, no admin: 404). Every
other host gets the console, where the page stays at /status/.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port

PUBLIC_URLCONF = "statuspage.public_urls"


def status_host() -> str:
    """The configured status host, lowercased, without a port ('' when there is none)."""
    domain, _ = split_domain_port(str(settings.STATUS_PAGE_HOST or "").strip().lower())
    return domain.rstrip(".")


def on_status_host(request: HttpRequest) -> bool:
    host = status_host()
    if not host:
        return False
    domain, _ = split_domain_port(request.get_host())
    return domain.rstrip(".") == host


class StatusHostMiddleware:
    """Route requests for the status host to the public URLs only."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if on_status_host(request):
            request.urlconf = PUBLIC_URLCONF
        return self.get_response(request)
