"""Email subscribers of the public page: subscribing (double opt-in), confirming, choosing
components, unsubscribing, and the support lead's housekeeping.

A visitor gives an address and, optionally, components. Nothing but a confirmation email is
sent until the link in it is followed and its button pressed (mail scanners open links, so
confirming is a POST). Subscribing again sends the confirmation again, at most once per
CONFIRMATION_RESEND, and the answer is the same whether or not the address is known: the
page never tells who subscribes. A confirmed subscriber's components change only through
the manage link (a stranger who types the address cannot change them); an unconfirmed one's
are replaced by the latest request, as nothing goes to it yet anyway.

Components: none chosen means every component. A group is not a choice: the form lists
its members, and a group's id is refused with a sentence naming it (a subscriber to the
group's members hears of each of them, which is what following the group means).

Addresses: the domain is lower-cased and IDNA-encoded (`ana@例え.jp` and `ana@xn--r8jz45g.jp`
are one subscriber), the whole then held to 254 characters (RFC 5321's path limit, Django's
EmailField). Non-ASCII before the @ (SMTPUTF8 mailboxes) is refused: not every mail server
on the way delivers to such an address.

Rates (the flood limit): SUBSCRIBE_RATE_PER_ADDRESS per address and SUBSCRIBE_RATE_PER_CLIENT
per client address, counted in fixed windows in the cache (Redis) with `add` then `incr`, both
atomic in Redis, so concurrent requests cannot all read the same count and pass. While the
cache is down, requests go through uncounted: the opt-in still protects the address's owner.

Tokens: the database keeps only `sha256(token)`; the token itself is derived with the
SECRET_KEY (statuspage.subscriber_models) and travels only in the emails' links.
Unconfirmed subscribers are deleted by the beat's sweep after STATUS_SUBSCRIBER_UNCONFIRMED_DAYS.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents.errors import DomainError
from incidents.roles import require_role
from statuspage.models import (
    Component,
    MessageKind,
    MessageState,
    Revision,
    Subscriber,
    SubscriberMessage,
)
from statuspage.services import EDIT_PERMISSION
from statuspage.subscriber_models import token_digest
from statuspage.subscriber_sending import (
    message_dispatch,
    recipients_for,
    revision_concerns,
    revision_sending_finish,
)

logger = logging.getLogger(__name__)

# RFC 5321's limit on a path, and Django's EmailField's max_length.
MAX_EMAIL_CHARS = 254
SUBSCRIBE_RATE_PER_ADDRESS = "5/h"
SUBSCRIBE_RATE_PER_CLIENT = "20/h"
RATE_WINDOWS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CONFIRMATION_RESEND = timedelta(minutes=10)


class SubscribeFlood(DomainError):
    """Too many subscribe requests for one address or from one client; `retry_after` is
    how many seconds until the next one is taken."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SubscriberNotFound(DomainError):
    """No subscriber holds this token (unsubscribed, or a mistyped link)."""


@dataclass(frozen=True)
class SubscriberCounts:
    confirmed: int
    unconfirmed: int

    @property
    def total(self) -> int:
        return self.confirmed + self.unconfirmed


# -- input ---------------------------------------------------------------------------------------


def email_clean(email: str) -> str:
    """The address, trimmed, in lower case with its domain IDNA-encoded, or a DomainError
    naming what is wrong. The length is checked on that form, the one stored."""
    if not isinstance(email, str) or not email.strip():
        raise DomainError("Email: give an email address.")
    address = email.strip()
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in address):
        raise DomainError("Email: control characters are not allowed.")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise DomainError("Email: this is not an email address.")
    if not local.isascii():
        raise DomainError(
            "Email: addresses with characters other than ASCII before the @ are not supported."
        )
    try:
        domain = domain.lower().encode("idna").decode("ascii")
    except UnicodeError:
        raise DomainError("Email: the part after the @ is not a domain name.") from None
    address = f"{local.lower()}@{domain}"
    if len(address) > MAX_EMAIL_CHARS:
        raise DomainError(f"Email: at most {MAX_EMAIL_CHARS} characters ({len(address)} given).")
    try:
        validate_email(address)
    except ValidationError:
        raise DomainError("Email: this is not an email address.") from None
    return address


def components_clean(component_ids: Iterable[object]) -> list[Component]:
    """The components chosen (ids as numbers or strings), or a DomainError naming the first
    unknown one or a group."""
    wanted: list[int] = []
    for raw in component_ids:
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise DomainError(f"Components: unknown component {text[:40]!r}.")
        if int(text) not in wanted:
            wanted.append(int(text))
    found = {component.pk: component for component in Component.objects.filter(pk__in=wanted)}
    for pk in wanted:
        component = found.get(pk)
        if component is None:
            raise DomainError(f"Components: unknown component {pk}.")
        if component.is_group:
            raise DomainError(
                f"Components: {component.name!r} is a group; choose the components in it."
            )
    return [found[pk] for pk in wanted]


def components_offered(
    listed: Iterable[Component] | None = None,
) -> list[tuple[str, list[Component]]]:
    """What the form offers, in page order: (group name or "", its components), without
    the components the page shows only while degraded (the form must not reveal them).
    From `listed` (every component and group, e.g. the public page's: no query) or the
    database."""
    every = list(listed) if listed is not None else list(Component.objects.all())
    groups = {component.pk: component for component in every if component.is_group}

    def place(component: Component) -> tuple[int, str, int, int, str]:
        group = groups.get(component.group_id) if component.group_id else None
        if group is None:
            return (component.position, component.name, component.pk, 0, "")
        return (group.position, group.name, group.pk, component.position, component.name)

    offered: list[tuple[str, list[Component]]] = []
    # Those the page lists only while degraded are left off too: choosing none covers them.
    choices = (c for c in every if not c.is_group and not c.only_show_if_degraded)
    for component in sorted(choices, key=place):
        group = groups.get(component.group_id) if component.group_id else None
        name = group.name if group is not None else ""
        if not offered or offered[-1][0] != name:
            offered.append((name, []))
        offered[-1][1].append(component)
    return offered


# -- rates ---------------------------------------------------------------------------------------


def _rate_check(rate: str, key: str, refusal: str) -> None:
    """Count one request under `key` in the current window of `rate` ("5/h"): `add` creates
    the counter at 0 only if absent and `incr` adds one, each atomic in Redis, so the count
    holds under concurrent requests. SubscribeFlood once over."""
    number, _, unit = rate.partition("/")
    limit, window = int(number), RATE_WINDOWS[unit[:1]]
    now = time.time()
    bucket = f"subscribe_rate:{key}:{int(now // window)}"
    try:
        cache.add(bucket, 0, timeout=window + 1)
        try:
            count = cache.incr(bucket)
        except ValueError:  # the counter expired between add and incr
            cache.add(bucket, 1, timeout=window + 1)
            count = 1
    except Exception as error:  # redis-py's errors through Django's cache
        logger.warning("subscribe rate not counted: the cache failed (%s)", type(error).__name__)
        return
    if count > limit:
        raise SubscribeFlood(refusal, retry_after=max(1, int(window - now % window)))


def subscribe_rate_check_client(client: str | None) -> None:
    """Count a subscribe request from `client` (an IP address); SubscribeFlood when over."""
    if client:
        _rate_check(
            SUBSCRIBE_RATE_PER_CLIENT,
            f"client_{client}",
            "Too many subscribe requests from your network; try again later.",
        )


def subscribe_rate_check_address(address: str) -> None:
    """Count a subscribe request for `address`; SubscribeFlood when over."""
    _rate_check(
        SUBSCRIBE_RATE_PER_ADDRESS,
        f"address_{_address_key(address)}",
        "Too many subscribe requests for this address; try again later.",
    )


def _address_key(address: str) -> str:
    # The cache key holds no address in clear text (the cache is not meant for personal data).
    return hashlib.sha256(address.encode()).hexdigest()


# -- the visitor's operations -------------------------------------------------------------------


@transaction.atomic
def subscriber_subscribe(
    *, email: str, component_ids: Sequence[object] = (), client: str | None = None
) -> None:
    """Subscribe `email` to the components (none: all), pending its confirmation, and send
    the confirmation email (again, if CONFIRMATION_RESEND has passed since the last one).
    Returns nothing: the caller must not learn whether the address was known."""
    subscribe_rate_check_client(client)
    address = email_clean(email)
    chosen = components_clean(component_ids)
    subscribe_rate_check_address(address)
    subscriber = Subscriber.objects.select_for_update(no_key=True).filter(email=address).first()
    if subscriber is None:
        try:
            with transaction.atomic():
                subscriber = Subscriber.objects.create(email=address)
        except IntegrityError:  # the same address subscribed at the same instant
            subscriber = Subscriber.objects.select_for_update(no_key=True).get(email=address)
    if not subscriber.is_confirmed:
        subscriber.components.set(chosen)
    now = timezone.now()
    sent = subscriber.confirmation_sent_at
    if sent is not None and now - sent < CONFIRMATION_RESEND:
        return
    subscriber.confirmation_sent_at = now
    subscriber.save(update_fields=["confirmation_sent_at"])
    message = SubscriberMessage.objects.create(subscriber=subscriber, kind=MessageKind.CONFIRMATION)
    transaction.on_commit(functools.partial(message_dispatch, message.pk), robust=True)


def subscriber_by_token(token: str) -> Subscriber:
    """The subscriber holding `token`, or SubscriberNotFound."""
    subscriber = None
    if isinstance(token, str) and 0 < len(token) <= 64 and token.isascii() and token.isprintable():
        subscriber = Subscriber.objects.filter(token_digest=token_digest(token)).first()
    if subscriber is None:
        raise SubscriberNotFound("This link is not valid (any more): nobody is subscribed by it.")
    return subscriber


@transaction.atomic
def subscriber_confirm(*, token: str) -> Subscriber:
    """Confirm the subscription the token belongs to; confirming twice changes nothing."""
    subscriber = subscriber_by_token(token)
    Subscriber.objects.filter(pk=subscriber.pk, confirmed_at__isnull=True).update(
        confirmed_at=timezone.now()
    )
    subscriber.refresh_from_db()
    return subscriber


@transaction.atomic
def subscriber_components_set(*, token: str, component_ids: Sequence[object]) -> Subscriber:
    """Change what the token's subscriber hears about (none: every component)."""
    subscriber = subscriber_by_token(token)
    subscriber.components.set(components_clean(component_ids))
    return subscriber


@transaction.atomic
def subscriber_delete(subscriber: Subscriber) -> None:
    """Delete a subscriber and its messages. An update whose last unsent message was its
    own is counted on the timeline now, as no send will finish it."""
    revisions = set(
        subscriber.messages.filter(state=MessageState.PENDING, revision__isnull=False).values_list(
            "revision_id", flat=True
        )
    )
    subscriber.delete()
    for revision_id in sorted(revisions):
        revision_sending_finish(revision_id=revision_id)


@transaction.atomic
def subscriber_unsubscribe(*, token: str) -> None:
    """Delete the token's subscriber and its messages (an unknown token: SubscriberNotFound)."""
    subscriber_delete(subscriber_by_token(token))


# -- the support lead's housekeeping ------------------------------------------------------------


def subscriber_counts() -> SubscriberCounts:
    """How many subscribers have confirmed, and how many have not (yet)."""
    confirmed = Subscriber.objects.filter(confirmed_at__isnull=False).count()
    return SubscriberCounts(confirmed=confirmed, unconfirmed=Subscriber.objects.count() - confirmed)


def revision_emailing_text(*, revision: Revision) -> str:
    """What the desk says after publishing with "notify subscribers": how many confirmed
    subscribers follow the update's components (none: that nothing is emailed)."""
    concerned = recipients_for(revision_concerns(revision)).count()
    if not concerned:
        return "No confirmed subscriber follows its components: nothing is emailed."
    return f"Emailing it to {concerned} confirmed subscriber{'s' if concerned != 1 else ''}."


def subscriber_list(*, actor: User, confirmed: bool | None = None) -> list[Subscriber]:
    """Every subscriber (personal data: the support lead's role), with their components."""
    require_role(actor, EDIT_PERMISSION, "see the status page's subscribers")
    listed = Subscriber.objects.prefetch_related("components").order_by("email")
    if confirmed is not None:
        listed = listed.filter(confirmed_at__isnull=not confirmed)
    return list(listed)


def subscriber_remove_check(*, actor: User) -> None:
    """PermissionDenied unless `actor` may remove subscribers."""
    require_role(actor, EDIT_PERMISSION, "remove the status page's subscribers")


@transaction.atomic
def subscriber_remove(*, subscriber_id: int, actor: User) -> Subscriber:
    """The support lead removes a subscriber (a complaint, a bouncing address)."""
    subscriber_remove_check(actor=actor)
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        raise SubscriberNotFound(f"No subscriber has the id {subscriber_id}.")
    removed = Subscriber(pk=subscriber.pk, email=subscriber.email)
    subscriber_delete(subscriber)
    return removed
