"""The JSON API at /api/v1/ (django-ninja): the OpenAPI document at /api/v1/openapi.json,
its reference page at /api/v1/docs, and the console's token pages. docs/api.md tells how a
pipeline uses it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from api import (
    alerts,
    discovery,
    incidents,
    maintenances,
    releases,
    runs,
    services,
    status_components,
    status_templates,
    subscribers,
    views,
)
from api.auth import TokenRateThrottle
from api.validation import InputError
from incidents.errors import DomainError, PermissionDenied

api = NinjaAPI(
    title="Backout API",
    version="1",
    description="Releases, incidents and rollbacks for pipelines and tools. Every call "
    "carries `Authorization: Bearer <token>`; tokens are made in the console (API tokens) "
    "and each holds scopes: read, releases:write, incidents:write, runs:write, alerts:write, "
    "services:write, statuspage:write.",
    urls_namespace="api",
    throttle=[TokenRateThrottle()],
)
api.add_router("/", incidents.router)
api.add_router("/", releases.router)
api.add_router("/", runs.router)
api.add_router("/", alerts.router)
api.add_router("/", services.router)
api.add_router("/", discovery.router)
api.add_router("/", maintenances.router)
api.add_router("/", status_components.router)
api.add_router("/", status_templates.router)
api.add_router("/", subscribers.router)


def problem(request: HttpRequest, status: int, detail: str, **errors: Any) -> HttpResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors.get("errors"):
        body["errors"] = errors["errors"]
    return api.create_response(request, body, status=status)


@api.exception_handler(InputError)
def input_refused(request: HttpRequest, error: InputError) -> HttpResponse:
    return problem(request, 400, f"Refused: {error}", errors=error.errors)


@api.exception_handler(ValidationError)
def shape_refused(request: HttpRequest, error: ValidationError) -> HttpResponse:
    """Input of the wrong shape or type: each field named by where it is (body.title)."""
    fields: dict[str, list[str]] = {}
    for item in error.errors:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "payload")
        fields.setdefault(where or "input", []).append(str(item.get("msg", "invalid")))
    return problem(
        request, 400, "The request's input is not what this operation takes.", errors=fields
    )


@api.exception_handler(PermissionDenied)
def not_allowed(request: HttpRequest, error: PermissionDenied) -> HttpResponse:
    return problem(request, 403, str(error))


@api.exception_handler(DomainError)
def refused(request: HttpRequest, error: DomainError) -> HttpResponse:
    return problem(request, 400, str(error))


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    response = problem(
        request, 401, "Give a valid API token: Authorization: Bearer bko_… (see /api/v1/docs)."
    )
    response["WWW-Authenticate"] = 'Bearer realm="backout"'
    return response


def open_to_tokens(patterns: list[Any]) -> list[Any]:
    """The API's views answer tokens, not sessions: the console's login requirement
    (LoginRequiredMiddleware) does not apply to them."""
    for pattern in patterns:
        pattern.callback.login_required = False
    return patterns


# Not unpacked into module names: `app_name` here would namespace the console's include.
ninja_urls = api.urls
urlpatterns = [
    path("api/v1/", (open_to_tokens(ninja_urls[0]), ninja_urls[1], ninja_urls[2])),
    path("account/api-tokens/", views.token_list, name="api_tokens"),
    path("account/api-tokens/<int:token_id>/revoke", views.token_revoke, name="api_token_revoke"),
]
