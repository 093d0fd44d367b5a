"""The status page's email subscribers over the API: count and list them, remove one.
Addresses are personal data, so even reading needs the `statuspage:write` scope and the
support lead's role; both go through statuspage.subscriptions, as the status desk and
`manage.py status_subscribers` do."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status

from api.auth import person_of, scope
from api.models import STATUS_PAGE_WRITE
from api.schemas import ERRORS
from statuspage import subscriptions
from statuspage.models import Subscriber

router = Router(tags=["status page"])
PATH = "/status-page/subscribers"


class SubscribedComponent(Schema):
    id: int
    name: str


class SubscriberOut(Schema):
    id: int
    email: str
    confirmed: bool
    components: list[SubscribedComponent]
    created_at: datetime
    confirmed_at: datetime | None


class SubscribersOut(Schema):
    confirmed: int
    unconfirmed: int
    total: int
    subscribers: list[SubscriberOut]


def subscriber_out(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "id": subscriber.pk,
        "email": subscriber.email,
        "confirmed": subscriber.is_confirmed,
        "components": [{"id": c.pk, "name": c.name} for c in subscriber.components.all()],
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
    }


@router.get(PATH, response={200: SubscribersOut, **ERRORS}, auth=scope(STATUS_PAGE_WRITE))
def subscribers_list(request: HttpRequest, confirmed: bool | None = None) -> dict[str, Any]:
    """The counts, and every subscriber (only confirmed ones with `?confirmed=true`, only
    unconfirmed ones with `false`); none chosen components means every component."""
    listed = subscriptions.subscriber_list(actor=person_of(request), confirmed=confirmed)
    counts = subscriptions.subscriber_counts()
    return {
        "confirmed": counts.confirmed,
        "unconfirmed": counts.unconfirmed,
        "total": counts.total,
        "subscribers": [subscriber_out(subscriber) for subscriber in listed],
    }


@router.delete(
    f"{PATH}/{{subscriber_id}}", response={204: None, **ERRORS}, auth=scope(STATUS_PAGE_WRITE)
)
def subscriber_remove_endpoint(request: HttpRequest, subscriber_id: int) -> Status:
    """Remove a subscriber and its messages; it gets nothing more."""
    subscriptions.subscriber_remove_check(actor=person_of(request))  # 403 before 404
    found = get_object_or_404(Subscriber, pk=subscriber_id)
    subscriptions.subscriber_remove(subscriber_id=found.pk, actor=person_of(request))
    return Status(204, None)
