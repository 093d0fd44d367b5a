"""How the API knows its caller: `Authorization: Bearer bko_…` (api.tokens), a scope per
operation, and a rate per token. A missing or unknown token answers 401, a token without
the operation's scope 403, a token over its rate 429 with Retry-After."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja.security import HttpBearer
from ninja.throttling import SimpleRateThrottle

from api.models import ApiToken
from api.tokens import token_authenticate
from api.validation import InputError
from incidents.errors import PermissionDenied

logger = logging.getLogger(__name__)


class MissingScope(PermissionDenied):
    pass


def refuse_null_characters(request: HttpRequest) -> None:
    """PostgreSQL text holds no NUL character: one anywhere in the input is a 400 here, not a
    database error later (path, query and JSON body, escaped or not)."""
    where = []
    if "\x00" in request.path:
        where.append("path")
    if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
        where.append("query")
    body = request.body
    if b"\x00" in body or b"\\u0000" in body:
        where.append("body")
    if where:
        raise InputError({part: ["Null characters are not allowed."] for part in where})


class TokenAuth(HttpBearer):
    """A bearer token that holds `scope`. The request's user becomes the token's owner, so
    the services check that person's roles as they do for the browser."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        refuse_null_characters(request)
        # Not HttpBearer's own: in DEBUG it logs a malformed header, secret and all.
        scheme, _, text = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not text.strip():
            return None
        return self.authenticate(request, text.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = token_authenticate(token)
        if found is None:
            return None
        if self.scope not in found.scopes:
            raise MissingScope(f"This token lacks the {self.scope!r} scope.")
        request.user = found.user
        return found


class TokenRateThrottle(SimpleRateThrottle):  # type: ignore[misc]
    """API_RATE calls per token (e.g. "120/m"), counted in the cache (Redis). Unknown tokens
    are not counted: a token is 256 random bits, beyond guessing."""

    scope = "api_token"

    def __init__(self) -> None:
        super().__init__(rate=settings.API_RATE)

    def allow_request(self, request: HttpRequest) -> bool:
        """Counted in Redis; while Redis does not answer, calls go through uncounted (a
        pipeline's rollback call must not fail because the rate counter is down)."""
        try:
            return bool(super().allow_request(request))
        except Exception as error:  # redis-py's errors, raised through Django's cache
            logger.warning("API rate not counted: the cache failed (%s)", type(error).__name__)
            return True

    def get_cache_key(self, request: HttpRequest) -> str | None:
        # The rate is read per call, so a changed setting applies without a restart.
        self.rate = settings.API_RATE
        self.num_requests, self.duration = self.parse_rate(self.rate)
        token: Any = getattr(request, "auth", None)
        return f"throttle_api_token_{token.pk}" if token is not None else None


def person_of(request: HttpRequest) -> User:
    """The person a request acts as: the token's owner, or the console's signed-in user
    (LoginRequiredMiddleware keeps anonymous visitors off the console's pages)."""
    if not isinstance(request.user, User):
        raise PermissionDenied("Sign in first.")
    return request.user


def scope(name: str) -> list[TokenAuth]:
    return [TokenAuth(name)]
