"""The public subscriber pages (no login): subscribe, confirm, choose components, unsubscribe.
Served under /status/ on the console's host and at the status host's root alike.

CSRF. The form on /status/ sits in a page cached for every visitor (selectors.cached_public)
that runs no script, so it cannot carry a visitor's own CSRF token. The subscribe POST is
therefore exempt: it acts on nobody's session or authority (it reads no cookie, needs no
login, and the status host has no session at all), and what a forged request could do, a
stranger can do by typing the address on the page; the double opt-in stops either from
subscribing an address its owner did not confirm, and the rates stop a flood. The one-click
unsubscribe POST is exempt because RFC 8058 has mail providers send it from their servers,
with no cookie; the token in its URL is the authority, and guessing one (256 bits) is out of
reach. Confirming and choosing components are pages of their own, never cached, and keep
Django's CSRF check.

Pages holding a token answer `Cache-Control: no-store` and `Referrer-Policy: same-origin`,
so the token is kept by no cache and leaks to no other site (not `no-referrer`: with it,
browsers send `Origin: null` on the page's own POSTs, which Django's CSRF check refuses).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.client_address import client_address
from incidents.errors import DomainError
from statuspage import branding, conf, subscriptions
from statuspage.subscriptions import SubscribeFlood, SubscriberNotFound

TEMPLATE = "statuspage/subscriber.html"
BAD_REQUEST, NOT_FOUND, TOO_MANY = 400, 404, 429
MAX_CHOICES = 500


class SubscribeInput:
    """The shape of a subscribe or manage request: an address and component ids, as given
    (the rules, NUL and other control characters among them, are subscriptions' to check,
    so the reason reaches the visitor)."""

    def __init__(self, data: QueryDict) -> None:
        self.email = str(data.get("email", ""))
        self.components = list(data.getlist("component"))[:MAX_CHOICES]


def _page(request: HttpRequest, step: str, *, status: int = 200, **context: Any) -> HttpResponse:
    context.setdefault("chosen", [])
    response = render(
        request,
        TEMPLATE,
        {
            "step": step,
            "page_name": conf.page_name(),
            "offered": subscriptions.components_offered(),
            **context,
        },
        status=status,
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "same-origin"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = f"{branding.public_page_policy()}; form-action 'self'"
    return response


def _chosen_ids(values: list[str]) -> list[str]:
    return [value for value in values if value.isascii() and value.isdigit()]


@login_not_required
@csrf_exempt
@require_http_methods(["GET", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    """GET: the form on a page of its own. POST (from it or from the cached /status/): the
    same answer whether or not the address was known; 400 naming the field; 429 when
    flooded."""
    if request.method == "GET":
        return _page(request, "subscribe")
    form = SubscribeInput(request.POST)
    email = form.email
    try:
        subscriptions.subscriber_subscribe(
            email=email, component_ids=form.components, client=client_address(request)
        )
    except SubscribeFlood as flood:
        response = _page(
            request,
            "subscribe",
            status=TOO_MANY,
            error=str(flood),
            email=email,
            chosen=_chosen_ids(form.components),
        )
        response["Retry-After"] = str(flood.retry_after)
        return response
    except DomainError as error:
        return _page(
            request,
            "subscribe",
            status=BAD_REQUEST,
            error=str(error),
            email=email,
            chosen=_chosen_ids(form.components),
        )
    return _page(request, "check_inbox", email=email)


@login_not_required
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a page with a Confirm button (mail scanners open links; they do not press
    buttons). POST: confirm."""
    try:
        if request.method == "GET":
            subscriber = subscriptions.subscriber_by_token(token)
            return _page(request, "confirm", subscriber=subscriber)
        subscriber = subscriptions.subscriber_confirm(token=token)
    except SubscriberNotFound as error:
        return _page(request, "gone", status=NOT_FOUND, error=str(error))
    return _page(
        request,
        "confirmed",
        subscriber=subscriber,
        chosen=[str(pk) for pk in subscriber.components.values_list("pk", flat=True)],
    )


@login_not_required
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest, token: str) -> HttpResponse:
    """Choose the components to hear about (none ticked: every one)."""
    try:
        subscriber = subscriptions.subscriber_by_token(token)
    except SubscriberNotFound as error:
        return _page(request, "gone", status=NOT_FOUND, error=str(error))
    if request.method == "GET":
        chosen = [str(pk) for pk in subscriber.components.values_list("pk", flat=True)]
        return _page(request, "manage", subscriber=subscriber, chosen=chosen)
    form = SubscribeInput(request.POST)
    try:
        subscriptions.subscriber_components_set(token=token, component_ids=form.components)
    except SubscriberNotFound as error:
        return _page(request, "gone", status=NOT_FOUND, error=str(error))
    except DomainError as error:
        return _page(
            request,
            "manage",
            status=BAD_REQUEST,
            subscriber=subscriber,
            error=str(error),
            chosen=_chosen_ids(form.components),
        )
    chosen = [str(pk) for pk in subscriber.components.values_list("pk", flat=True)]
    return _page(
        request, "manage", subscriber=subscriber, chosen=chosen, flash="Your choice is saved."
    )


@login_not_required
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: a page with an Unsubscribe button. POST (that button, or a mail provider's
    RFC 8058 one-click request): the subscriber is deleted."""
    try:
        if request.method == "GET":
            subscriber = subscriptions.subscriber_by_token(token)
            return _page(request, "unsubscribe", subscriber=subscriber)
        subscriptions.subscriber_unsubscribe(token=token)
    except SubscriberNotFound as error:
        return _page(request, "gone", status=NOT_FOUND, error=str(error))
    return _page(request, "unsubscribed")
