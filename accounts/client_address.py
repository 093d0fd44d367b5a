"""The address a sign-in came from, as django-axes counts failures against it.

Behind ``SIGN_IN_PROXY_COUNT`` trusted proxies (the environment's AXES_PROXY_COUNT), each
proxy appends the address it was reached from to ``X-Forwarded-For``; the client is the entry
that many places from the right. Anything to the left of it was written by the client and is
not believed. Without proxies the header is ignored and the socket's address is used, so a
client cannot pick the address it is counted under.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str | None:
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.SIGN_IN_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    return forwarded[-min(proxies, len(forwarded))]
