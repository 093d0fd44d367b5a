"""Emails to the page's subscribers: one `SubscriberMessage` per recipient and event, each
sent by a Celery task (statuspage.subscriber_tasks) to that one address, never a shared
To/Cc.

- An incident update published with "notify subscribers" ticked goes to every confirmed
  subscriber whose components meet the incident's or the revision's (or who chose none),
  the same choice as the component feeds make; a maintenance update with the box ticked,
  to those whose components meet the maintenance's (a group among them stands for its
  members).
- Each update is fanned out once: the fan-out inserts its `SubscriberFanout` row, and one
  that finds the row (a redelivered task, the hook's fallback, the sweep) does nothing, so
  a subscriber who confirmed in between gets no old news.
- Delivery is at least once. A send is claimed first (a conditional UPDATE against the
  database's clock), so two workers never send one message at the same time; but a worker
  that dies between the SMTP server's "250" and the row's update leaves the message to be
  sent again once its claim expires. Every message carries a stable `Message-ID`
  (`<subscriber-message-<pk>@<host>>`), by which mail systems drop the duplicate.
- An SMTP error or timeout is retried with backoff (the task's autoretry) until the
  message's `attempts` reach COMMS_MAX_RETRIES + 1, then the message is `failed`; the cap
  is counted on the row, so the sweep's re-dispatch does not start the count over. While
  it waits for a retry it stays `pending`, with its attempts and last error counted (the
  error's text without any address in it).
- When every message of an incident update is sent or failed, one COMMS_SENT entry on the
  incident's timeline counts them ("Update 3 sent to 41 subscribers (2 failed)"); the
  fan-out row's `counted_at` makes it one, whoever finishes last.
- The beat's sweep hands lost messages to Celery again, fans out an update whose fan-out
  was lost (the broker was down when it was published), and deletes the subscribers left
  unconfirmed for STATUS_SUBSCRIBER_UNCONFIRMED_DAYS.

Every message carries the manage and unsubscribe links and the RFC 8058 one-click headers
(`List-Unsubscribe`, `List-Unsubscribe-Post`). No address is written to the timeline or logs.
"""

from __future__ import annotations

import email.policy
import functools
import logging
import re
import smtplib
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.dispatch import Signal
from django.urls import reverse
from django.utils import timezone

from incidents.models import TimelineKind
from incidents.timeline import timeline_append
from statuspage import conf
from statuspage.hosts import PUBLIC_URLCONF
from statuspage.models import (
    Component,
    MaintenanceUpdate,
    MessageKind,
    MessageState,
    PublicStatus,
    Revision,
    Subscriber,
    SubscriberFanout,
    SubscriberMessage,
)

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 120
# A message never attempted is lost after this; one between retries only once every retry's
# backoff (at most RETRY_BACKOFF_MAX each) could have passed.
LOST_AFTER = timedelta(minutes=2)
RETRY_BACKOFF_MAX = 300
FANOUT_WINDOW = timedelta(hours=1)
SENDER_LABEL = "subscribers"
# An address in an SMTP reply ("<ana@example.com>: mailbox full", or bare): kept out of rows
# and logs.
_ADDRESS = re.compile(r"<[^<>\s]*@[^<>\s]*>|[^\s<>()\[\]:;,\"']+@[^\s<>()\[\]:;,\"']+")

subscriber_message_due = Signal()
"""A subscriber message is ready to be sent (keyword: message_id); statuspage.subscriber_hooks
hands it to Celery. This module does not import its tasks."""


class SubscriberRetry(Exception):
    """Raised to the Celery task so that it retries the message with backoff."""


class SendError(Exception):
    """One send failed: `retryable` says whether another attempt may succeed (a timeout, a
    4xx reply) or not (a 5xx reply, a refused address). Its text names no address."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def message_dispatch(message_id: int) -> None:
    """Hand a message to Celery; a broker that is down leaves it for the sweep."""
    for receiver, outcome in subscriber_message_due.send_robust(
        sender=SubscriberMessage, message_id=message_id
    ):
        if isinstance(outcome, Exception):
            logger.warning(
                "could not enqueue subscriber message %s (%s); the sweep will",
                message_id,
                receiver,
                exc_info=outcome,
            )


# -- who hears of what --------------------------------------------------------------------------


def _members_included(component_ids: set[int]) -> set[int]:
    """The ids with each group's members added (subscribers choose components, not groups)."""
    members = Component.objects.filter(group_id__in=component_ids).values_list("pk", flat=True)
    return component_ids | set(members)


def recipients_for(component_ids: set[int]) -> QuerySet[Subscriber]:
    """Confirmed subscribers who chose none of the components (every one) or one of these."""
    wanted = _members_included(component_ids)
    return (
        Subscriber.objects.filter(confirmed_at__isnull=False)
        .filter(Q(components__isnull=True) | Q(components__in=wanted))
        .distinct()
    )


def revision_component_ids(revision: Revision) -> set[int]:
    """The components the revision itself set a status for."""
    return {int(key) for key in revision.component_statuses if str(key).isdigit()}


def revision_concerns(revision: Revision) -> set[int]:
    """What a revision is about: its incident's components and those it set a status for
    (so the "Resolved" update, which may set none, reaches the incident's subscribers)."""
    incident_ids = revision.public_incident.components.values_list("pk", flat=True)
    return revision_component_ids(revision) | set(incident_ids)


def _fanout_claim(**event: object) -> bool:
    """Insert the event's fan-out row; False when a fan-out has been made already (or is
    being made: the insert waits on the other's transaction, then conflicts)."""
    try:
        with transaction.atomic():
            SubscriberFanout.objects.create(**event)
    except IntegrityError:
        return False
    return True


def _messages_create(subscribers: QuerySet[Subscriber], *, kind: str, **event: object) -> list[int]:
    made = SubscriberMessage.objects.bulk_create(
        [SubscriberMessage(subscriber=s, kind=kind, **event) for s in subscribers]
    )
    ids = [message.pk for message in made]
    for message_id in ids:
        transaction.on_commit(functools.partial(message_dispatch, message_id), robust=True)
    return ids


@transaction.atomic
def revision_fanout(*, revision_id: int) -> int:
    """One message per subscriber concerned by the revision, if it was published with
    "notify subscribers"; returns how many are queued. With nobody to tell, the timeline says
    so. Once only: a second call for the same revision does nothing and returns 0."""
    revision = (
        Revision.objects.select_related("public_incident__incident")
        .filter(pk=revision_id, notify_subscribers=True)
        .first()
    )
    if revision is None or not _fanout_claim(revision=revision):
        return 0
    subscribers = recipients_for(revision_concerns(revision))
    queued = _messages_create(subscribers, kind=MessageKind.INCIDENT_UPDATE, revision=revision)
    if not queued:
        SubscriberFanout.objects.filter(revision=revision).update(counted_at=Now())
        timeline_append(
            incident=revision.public_incident.incident,
            kind=TimelineKind.COMMS_SENT,
            body=f"Update {revision.number} not emailed: no confirmed subscriber follows "
            "its components",
            actor_label=SENDER_LABEL,
            payload={"revision": revision.pk, "outcome": "no_subscribers", "sent": 0},
        )
    return len(queued)


@transaction.atomic
def maintenance_update_fanout(*, update_id: int) -> int:
    """One message per subscriber concerned by the maintenance update, if it was published
    with "notify subscribers"; returns how many are queued. Once only, like revision_fanout."""
    update = (
        MaintenanceUpdate.objects.select_related("maintenance")
        .filter(pk=update_id, notify_subscribers=True)
        .first()
    )
    if update is None or not _fanout_claim(maintenance_update=update):
        return 0
    ids = set(update.maintenance.components.values_list("pk", flat=True))
    queued = _messages_create(
        recipients_for(ids), kind=MessageKind.MAINTENANCE_UPDATE, maintenance_update=update
    )
    return len(queued)


# -- links and the email ------------------------------------------------------------------------


def page_address() -> str:
    """The public page's address for links in emails: STATUS_PAGE_URL, else the console's
    /status/ (CONSOLE_BASE_URL)."""
    return conf.page_url() or conf.console_base_url() + reverse("status_page")


def public_link(name: str, *args: object, base: str | None = None) -> str:
    """An absolute link to a page of the public site (named as in statuspage.public_urls),
    under `base` (the page's address; page_address() when not given)."""
    path = reverse(name, urlconf=PUBLIC_URLCONF, args=args)
    return (base if base is not None else page_address()).rstrip("/") + path


def _one_line(text: str, limit: int = 180) -> str:
    flat = "".join(char if char.isprintable() else " " for char in text)
    return " ".join(flat.split())[:limit]


def _footer(subscriber: Subscriber) -> str:
    names = [c.name for c in subscriber.components.all()]
    following = ", ".join(names) if names else "every component"
    return (
        f"\n\n--\nYou receive this because {subscriber.email} follows {conf.page_name()} "
        f"({following}).\n"
        f"Choose components: {public_link('status_subscriber_manage', subscriber.token)}\n"
        f"Unsubscribe: {public_link('status_unsubscribe', subscriber.token)}\n"
    )


def _confirmation(subscriber: Subscriber) -> tuple[str, str]:
    page = conf.page_name()
    if subscriber.is_confirmed:
        return (
            f"[{page}] Your subscription",
            f"Someone asked to subscribe {subscriber.email} to {page}. This address is "
            "subscribed already; nothing has changed.\n",
        )
    return (
        f"[{page}] Confirm your subscription",
        f"Someone, probably you, asked to receive {page} updates by email at "
        f"{subscriber.email}.\n\nTo confirm, open this link and press Confirm:\n"
        f"{public_link('status_subscriber_confirm', subscriber.token)}\n\n"
        "Nothing else is sent to this address until it is confirmed. If you did not ask, "
        "ignore this email.\n",
    )


def _incident_update(revision: Revision) -> tuple[str, str]:
    status = PublicStatus(revision.status).label
    names = Component.objects.filter(pk__in=revision_concerns(revision)).order_by("name")
    affected = ", ".join(component.name for component in names)
    at = timezone.localtime(revision.published_at)
    body = (
        f"{revision.name}\n{status} · {at:%Y-%m-%d %H:%M %Z}\n"
        + (f"Affected: {affected}\n" if affected else "")
        + f"\n{revision.body}\n\n"
        f"{public_link('status_incident', revision.public_incident_id)}"
    )
    return f"[{conf.page_name()}] {_one_line(revision.name)}: {status}", body


def _maintenance_update(update: MaintenanceUpdate) -> tuple[str, str]:
    maintenance = update.maintenance
    status = update.get_status_display()
    start = timezone.localtime(maintenance.scheduled_for)
    end = timezone.localtime(maintenance.scheduled_until)
    names = ", ".join(c.name for c in maintenance.components.order_by("name"))
    body = (
        f"{maintenance.name}\n{status}: scheduled {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M %Z}\n"
        + (f"Components: {names}\n" if names else "")
        + f"\n{update.body}\n\n"
        f"{public_link('status_maintenance_public', maintenance.pk)}"
    )
    subject = f"[{conf.page_name()}] Maintenance: {_one_line(maintenance.name)} ({status})"
    return subject, body


class SubscriberEmail(EmailMessage):
    """A plain-text email whose body travels as 8-bit UTF-8 rather than quoted-printable, so
    that its links stay whole in a log (the demo prints emails) and in any mail reader.
    A line too long for SMTP (over 990 bytes) leaves Django's own encoding in place.

    Lines may run to SMTP's 998 characters: with the usual 78 the `List-Unsubscribe` link
    would be folded into encoded words, which no mail client reads as a link."""

    def message(self, *, policy: email.policy.Policy = email.policy.default) -> Any:  # type: ignore[override]
        built = super().message(policy=policy.clone(max_line_length=998))
        lines = str(self.body).splitlines() or [""]
        if max(len(line.encode()) for line in lines) < 990:
            del built["Content-Transfer-Encoding"]
            del built["Content-Type"]
            built.set_content(str(self.body), subtype="plain", charset="utf-8", cte="8bit")
        return built


def message_email(message: SubscriberMessage) -> EmailMessage:
    """The email of one message, to its subscriber alone, with the one-click headers and a
    Message-ID that stays the same on every attempt (a resend after a crash is a duplicate
    that mail systems recognise)."""
    subscriber = message.subscriber
    if message.kind == MessageKind.CONFIRMATION:
        subject, body = _confirmation(subscriber)
    elif message.revision is not None:
        subject, body = _incident_update(message.revision)
    else:
        assert message.maintenance_update is not None
        subject, body = _maintenance_update(message.maintenance_update)
    unsubscribe = public_link("status_unsubscribe", subscriber.token)
    return SubscriberEmail(
        _one_line(subject, 250),
        body + _footer(subscriber),
        conf.email_from(),
        to=[subscriber.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Message-ID": message_id_header(message.pk),
        },
    )


def message_id_header(message_pk: int) -> str:
    """The stable Message-ID of one subscriber message, on the page's (or console's) host."""
    host = urlsplit(page_address()).hostname or "localhost"
    return f"<subscriber-message-{message_pk}@{host}>"


def error_text(text: str) -> str:
    """An SMTP error's text on one line, with every address in it replaced."""
    return _one_line(_ADDRESS.sub("<address>", text))


# -- sending ---------------------------------------------------------------------------------


def _claim(message_id: int) -> bool:
    # The database's clock, not this worker's: workers' clocks drift apart.
    return (
        SubscriberMessage.objects.filter(pk=message_id, state=MessageState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=Now()))
        .update(
            attempts=F("attempts") + 1,
            claimed_until=Now() + timedelta(seconds=CLAIM_SECONDS),
        )
        == 1
    )


def _send(message: SubscriberMessage) -> None:
    try:
        with mail.mailers.default as connection:
            connection.send_messages([message_email(message)])
    except smtplib.SMTPResponseException as error:
        code = int(error.smtp_code)
        text = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        raise SendError(f"SMTP {code}: {error_text(text)}", retryable=code < 500) from None
    except smtplib.SMTPRecipientsRefused:
        raise SendError("the address was refused", retryable=False) from None
    except (TimeoutError, SoftTimeLimitExceeded):
        raise SendError("the mail server did not answer in time", retryable=True) from None
    except smtplib.SMTPServerDisconnected as error:
        # smtplib reports a reply that timed out as a disconnection ("... timed out").
        if "timed out" in str(error):
            raise SendError("the mail server did not answer in time", retryable=True) from None
        raise SendError("the mail server closed the connection", retryable=True) from None
    except (smtplib.SMTPException, OSError) as error:
        raise SendError(f"could not send ({type(error).__name__})", retryable=True) from None


def message_attempt(*, message_id: int) -> str:
    """Send a message once and record the outcome. Returns its state; raises SubscriberRetry
    when the failure may pass and the message's attempts are under COMMS_MAX_RETRIES + 1. A
    message sent already, being sent by another worker, or whose subscriber has unsubscribed
    since, is left alone."""
    if not _claim(message_id):
        state = SubscriberMessage.objects.filter(pk=message_id).values_list("state", flat=True)
        return state.first() or ""
    message = (
        SubscriberMessage.objects.select_related(
            "subscriber", "revision", "maintenance_update__maintenance"
        )
        .filter(pk=message_id)
        .first()
    )
    if message is None:  # unsubscribed meanwhile
        return ""
    final_attempt = message.attempts > conf.max_retries()
    error: SendError | None = None
    try:
        _send(message)
    except SendError as failure:
        error = failure
    except Exception as failure:  # a bug must still end in a recorded state
        logger.exception("subscriber message %s raised", message_id)
        error = SendError(f"internal error: {type(failure).__name__}", retryable=False)

    retrying = error is not None and error.retryable and not final_attempt
    with transaction.atomic():
        changed = SubscriberMessage.objects.filter(pk=message_id).update(
            claimed_until=None,
            state=MessageState.PENDING
            if retrying
            else (MessageState.SENT if error is None else MessageState.FAILED),
            last_error=str(error) if error else "",
            sent_at=timezone.now() if error is None else None,
        )
        if changed and not retrying and message.revision_id is not None:
            revision_sending_finish(revision_id=message.revision_id)
    if retrying:
        raise SubscriberRetry(str(error))
    return MessageState.SENT if error is None else MessageState.FAILED


def revision_sending_finish(*, revision_id: int) -> bool:
    """Once every message of the revision is sent or failed, count them on the incident's
    timeline, once: finishers take turns under a lock on the revision, and only the one whose
    conditional UPDATE stamps the fan-out's `counted_at` writes. Call inside the transaction
    that finished (or deleted) a message."""
    revision = (
        Revision.objects.select_for_update(no_key=True)
        .select_related("public_incident__incident")
        .get(pk=revision_id)
    )
    messages = SubscriberMessage.objects.filter(revision=revision)
    if messages.filter(state=MessageState.PENDING).exists():
        return False
    if not SubscriberFanout.objects.filter(revision=revision, counted_at__isnull=True).update(
        counted_at=Now()
    ):
        return False
    sent = messages.filter(state=MessageState.SENT).count()
    failed = messages.filter(state=MessageState.FAILED).count()
    timeline_append(
        incident=revision.public_incident.incident,
        kind=TimelineKind.COMMS_SENT,
        body=f"Update {revision.number} sent to {sent} subscriber{'s' if sent != 1 else ''}"
        + (f" ({failed} failed)" if failed else ""),
        actor_label=SENDER_LABEL,
        payload={"revision": revision.pk, "outcome": "subscribers", "sent": sent, "failed": failed},
    )
    return True


# -- the beat's sweep -------------------------------------------------------------------------


def lost_messages(*, now: datetime | None = None) -> list[int]:
    """Pending messages no worker holds: never attempted for LOST_AFTER, or attempted and
    left longer than every retry could wait."""
    moment = now or timezone.now()
    between_retries = LOST_AFTER + timedelta(seconds=RETRY_BACKOFF_MAX * (conf.max_retries() + 1))
    return list(
        SubscriberMessage.objects.filter(state=MessageState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=moment))
        .filter(
            Q(attempts=0, created_at__lt=moment - LOST_AFTER)
            | Q(attempts__gt=0, created_at__lt=moment - between_retries)
        )
        .values_list("pk", flat=True)
    )


def missed_fanouts(*, now: datetime | None = None) -> list[int]:
    """Revisions and maintenance updates of the last hour published with "notify" whose
    fan-out never happened (no fan-out row): fanned out now. Returns the revisions' ids."""
    moment = now or timezone.now()
    since = (moment - FANOUT_WINDOW, moment - LOST_AFTER)
    done = []
    for revision_id in Revision.objects.filter(
        notify_subscribers=True, published_at__range=since, subscriber_fanout__isnull=True
    ).values_list("pk", flat=True):
        revision_fanout(revision_id=revision_id)
        done.append(revision_id)
    for update_id in MaintenanceUpdate.objects.filter(
        notify_subscribers=True, published_at__range=since, subscriber_fanout__isnull=True
    ).values_list("pk", flat=True):
        maintenance_update_fanout(update_id=update_id)
    return done


def unconfirmed_purge(*, now: datetime | None = None) -> list[int]:
    """Delete the subscribers still unconfirmed STATUS_SUBSCRIBER_UNCONFIRMED_DAYS after their
    latest confirmation email (an address nobody confirmed is kept no longer); their ids."""
    moment = now or timezone.now()
    cutoff = moment - timedelta(days=conf.subscriber_unconfirmed_days())
    # Counted from the latest confirmation email: subscribing again restarts the wait.
    stale = Subscriber.objects.filter(confirmed_at__isnull=True).filter(
        Q(confirmation_sent_at__lt=cutoff)
        | Q(confirmation_sent_at__isnull=True, created_at__lt=cutoff)
    )
    ids = list(stale.values_list("pk", flat=True))
    # Unconfirmed subscribers have only confirmation messages (cascade with them).
    Subscriber.objects.filter(pk__in=ids).delete()
    return ids


def sweep() -> dict[str, list[int]]:
    """What the beat runs: lost fan-outs, lost messages handed to Celery again, and stale
    unconfirmed subscribers deleted."""
    found: dict[str, list[int]] = {}
    parts = (
        ("fanned_out", missed_fanouts),
        ("redispatched", lost_messages),
        ("purged", unconfirmed_purge),
    )
    for name, part in parts:
        try:
            found[name] = part()
        except Exception:
            logger.exception("subscriber sweep: %s failed", name)
            found[name] = []
    for message_id in found["redispatched"]:
        message_dispatch(message_id)
    return found
