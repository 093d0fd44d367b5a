"""Notices to colleagues and customers, and the cadence reminder.

A notice is written once (its `dedupe_key` makes it so) with one `Delivery` per channel; a
Celery task sends each delivery (`statuspage.tasks.notice_deliver`), retrying with backoff,
and every attempt's outcome becomes a COMMS_SENT timeline entry. A delivery whose attempts
are used up stays `failed` with its last error on the status desk until someone retries it;
the beat sweep re-sends deliveries whose task message was lost. Nothing is dropped.

Secrets (the webhook URL) are read from settings when sending and never stored or logged.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from celery.exceptions import SoftTimeLimitExceeded
from django.core import mail
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.dispatch import Signal
from django.utils import timezone

from executors.rest import answer_text
from executors.value_masks import mask_values
from incidents.errors import DomainError
from incidents.models import Incident, IncidentStatus, TimelineEntry, TimelineKind
from incidents.roles import User, require_role
from incidents.timeline import timeline_append
from rollbacks.models import Run, RunState
from statuspage import conf, pagerduty, texts
from statuspage.delivery_errors import DeliveryError, DeliveryRetry
from statuspage.models import (
    Channel,
    Delivery,
    DeliveryState,
    Notice,
    NoticeKind,
    Revision,
    TemplateKey,
)
from statuspage.services import EDIT_PERMISSION

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 120
LOST_AFTER = timedelta(minutes=2)
COMMS_ACTOR = "comms"
CADENCE_ACTOR = "status-page cadence"
# How much of a webhook's answer to a failed post a delivery error quotes.
WEBHOOK_ANSWER_LIMIT = 200

_RUN_EVENTS = {
    "started": (NoticeKind.ROLLBACK_STARTED, TemplateKey.ROLLBACK_STARTED),
    "progress": (NoticeKind.ROLLBACK_PROGRESS, TemplateKey.ROLLBACK_PROGRESS),
    "finished": (NoticeKind.ROLLBACK_FINISHED, TemplateKey.ROLLBACK_FINISHED),
}


def internal_channels() -> list[str]:
    """The channels internal notices go to: those configured in settings."""
    channels: list[str] = []
    if conf.slack_webhook_url():
        channels.append(Channel.SLACK)
    if conf.email_to():
        channels.append(Channel.EMAIL)
    if conf.pagerduty_routing_key():
        channels.append(Channel.PAGERDUTY)
    return channels


delivery_due = Signal()
"""A delivery is ready to be sent (keyword: delivery_id). statuspage.hooks hands it to
the Celery task that sends it; this module does not import its own tasks."""


def _dispatch(delivery_id: int) -> None:
    """Hand a delivery to Celery; a broker that is down leaves it for the sweep."""
    Delivery.objects.filter(pk=delivery_id).update(enqueued_at=timezone.now())
    for receiver, outcome in delivery_due.send_robust(sender=Delivery, delivery_id=delivery_id):
        if isinstance(outcome, Exception):
            logger.warning(
                "could not enqueue delivery %s (%s); the sweep will",
                delivery_id,
                receiver,
                exc_info=outcome,
            )


@transaction.atomic
def notice_create(
    *,
    incident: Incident,
    kind: str,
    dedupe_key: str,
    subject: str,
    body: str,
    channels: Sequence[str],
    recipients: Sequence[str] = (),
    run: Run | None = None,
    actor: User | None = None,
) -> Notice | None:
    """Write a notice and its deliveries, to be sent after commit. Returns None when a
    notice with this `dedupe_key` exists already."""
    person = actor if actor is not None and actor.is_authenticated else None
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                incident=incident,
                kind=kind,
                dedupe_key=dedupe_key,
                subject=subject,
                body=body,
                recipients=list(recipients),
                run=run,
                created_by=person,
            )
    except IntegrityError:
        return None
    label = notice.get_kind_display()
    if not channels:
        timeline_append(
            incident=incident,
            kind=TimelineKind.COMMS_SENT,
            body=f"{label} notice written but not sent: no channel is configured "
            "(COMMS_SLACK_WEBHOOK_URL, COMMS_EMAIL_TO, PAGERDUTY_ROUTING_KEY)",
            actor_label=COMMS_ACTOR,
            payload={"notice": notice.pk, "kind": kind, "outcome": "no_channel"},
        )
        return notice
    for channel in channels:
        if channel == Channel.PAGERDUTY and not pagerduty.wants(kind):
            continue
        delivery = Delivery.objects.create(notice=notice, channel=channel)
        transaction.on_commit(functools.partial(_dispatch, delivery.pk), robust=True)
    return notice


# -- sending ---------------------------------------------------------------------------------


def _send_slack(notice: Notice) -> str:
    """Post the notice to the webhook. Its URL holds the webhook's secret: an error names
    neither it nor its path, masked in what the answer quotes, and is raised outside the
    handler so that the requests error (which names the URL) is not its context."""
    url = conf.slack_webhook_url()
    if not url:
        raise DeliveryError("COMMS_SLACK_WEBHOOK_URL is not set", retryable=False)
    text = f"*{notice.subject}*\n{notice.body}"
    failure: DeliveryError | None = None
    try:
        response = requests.post(url, json={"text": text}, timeout=conf.timeout_seconds())
    except requests.Timeout:
        failure = DeliveryError("the webhook did not answer in time", retryable=True)
    except requests.RequestException as error:
        failure = DeliveryError(
            f"could not reach the webhook ({type(error).__name__})", retryable=True
        )
    if failure is not None:
        raise failure
    if 200 <= response.status_code < 300:
        return "Slack"
    retryable = response.status_code == 429 or response.status_code >= 500
    path = urlsplit(url).path
    secrets = [url, path, path.rstrip("/").rpartition("/")[2]]
    detail = mask_values(answer_text(response).strip(), secrets, limit=WEBHOOK_ANSWER_LIMIT)
    raise DeliveryError(
        f"the webhook answered HTTP {response.status_code}" + (f": {detail}" if detail else ""),
        retryable=retryable,
    )


def _send_email(delivery: Delivery) -> str:
    """Colleagues get one message addressed to them all. Customers never see one another:
    they are sent Bcc, COMMS_EMAIL_BATCH_SIZE to a message, over one connection; each batch
    sent is counted on the delivery at once, so a retry sends only to the rest."""
    notice = delivery.notice
    recipients = list(notice.recipients) or list(conf.email_to())
    if not recipients:
        raise DeliveryError("no email recipients", retryable=False)
    if notice.kind != NoticeKind.CUSTOMER:
        batches, done = [recipients], 0
    else:
        size, done = conf.email_batch_size(), min(delivery.recipients_done, len(recipients))
        batches = [recipients[at : at + size] for at in range(done, len(recipients), size)]
    try:
        with mail.mailers.default as connection:
            for batch in batches:
                connection.send_messages([_email(notice, batch)])
                done += len(batch) if notice.kind == NoticeKind.CUSTOMER else 0
                # Counted at once, and the claim held on: a long send is not taken for lost.
                Delivery.objects.filter(pk=delivery.pk).update(
                    recipients_done=done,
                    claimed_until=timezone.now() + timedelta(seconds=CLAIM_SECONDS),
                )
    except (smtplib.SMTPException, OSError, SoftTimeLimitExceeded) as error:
        left = f"; {done} of {len(recipients)} sent, the rest on retry" if done else ""
        if isinstance(error, SoftTimeLimitExceeded):
            raise DeliveryError(f"the send ran out of time{left}", retryable=True) from None
        raise DeliveryError(f"email not accepted: {error}{left}", retryable=True) from None
    if notice.kind != NoticeKind.CUSTOMER:
        return f"email to {len(recipients)} recipient(s)"
    messages = -(-len(recipients) // conf.email_batch_size())
    return f"email to {len(recipients)} recipient(s), Bcc, in {messages} message(s)"


def _email(notice: Notice, batch: Sequence[str]) -> EmailMessage:
    if notice.kind != NoticeKind.CUSTOMER:
        return EmailMessage(notice.subject, notice.body, conf.email_from(), to=batch)
    return EmailMessage(
        notice.subject,
        notice.body,
        conf.email_from(),
        bcc=batch,
        headers={"To": "undisclosed-recipients:;"},
    )


_SENDERS = {
    Channel.SLACK: lambda delivery: _send_slack(delivery.notice),
    Channel.EMAIL: _send_email,
    Channel.PAGERDUTY: pagerduty.delivery_send,
}


def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    return (
        Delivery.objects.filter(pk=delivery_id)
        .exclude(state=DeliveryState.SENT)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(
            attempts=F("attempts") + 1,
            attempted_at=now,
            claimed_until=now + timedelta(seconds=CLAIM_SECONDS),
        )
        == 1
    )


def delivery_attempt(*, delivery_id: int, final_attempt: bool) -> str:
    """Send a delivery once and record the outcome with its timeline entry.

    Returns the new state. Raises DeliveryRetry when the failure may pass and attempts
    remain (the task then retries with backoff). A delivery already sent, or being sent by
    another worker, is left alone.
    """
    if not _claim(delivery_id):
        return Delivery.objects.filter(pk=delivery_id).values_list("state", flat=True).first() or ""
    delivery = Delivery.objects.select_related("notice", "notice__incident").get(pk=delivery_id)
    notice = delivery.notice
    error: DeliveryError | None = None
    outcome = ""
    try:
        outcome = _SENDERS[Channel(delivery.channel)](delivery)
    except DeliveryError as failure:
        error = failure
    except SoftTimeLimitExceeded:  # the task's time ran out mid-send: worth another go
        error = DeliveryError("the send ran out of time", retryable=True)
    except Exception as failure:  # an unexpected bug must still be recorded, not lost
        logger.exception("delivery %s raised", delivery_id)
        error = DeliveryError(f"internal error: {type(failure).__name__}", retryable=False)

    label = f"{notice.get_kind_display()} notice “{notice.subject}”"
    with transaction.atomic():
        locked = Delivery.objects.select_for_update(no_key=True).get(pk=delivery_id)
        locked.claimed_until = None
        if error is None:
            locked.state = DeliveryState.SENT
            locked.sent_at = timezone.now()
            locked.will_retry = False
            locked.last_error = ""
            body = f"{label} sent to {outcome}"
        else:
            locked.state = DeliveryState.FAILED
            locked.will_retry = error.retryable and not final_attempt
            locked.last_error = str(error)
            channel = delivery.get_channel_display()
            body = f"{label} to {channel} failed (attempt {locked.attempts}): {error}"
            body += (
                "; retrying"
                if locked.will_retry
                else "; not retried automatically (use Retry on the status desk)"
            )
        locked.save()
        timeline_append(
            incident=notice.incident,
            kind=TimelineKind.COMMS_SENT,
            body=body,
            actor_label=COMMS_ACTOR,
            payload={
                "notice": notice.pk,
                "delivery": locked.pk,
                "kind": notice.kind,
                "channel": locked.channel,
                "outcome": locked.state,
                "attempt": locked.attempts,
                "error": locked.last_error,
                "will_retry": locked.will_retry,
            },
        )
    if error is not None and locked.will_retry:
        raise DeliveryRetry(str(error), retry_after=error.retry_after)
    return locked.state


@transaction.atomic
def delivery_retry(*, delivery: Delivery, actor: User) -> Delivery:
    """A person sends a failed delivery again (its automatic attempts are used up)."""
    require_role(actor, EDIT_PERMISSION, "retry notices")
    locked = (
        Delivery.objects.select_for_update(no_key=True).select_related("notice").get(pk=delivery.pk)
    )
    if locked.state != DeliveryState.FAILED:
        raise DomainError(f"Only a failed delivery can be retried; this one is {locked.state}.")
    if locked.will_retry:
        raise DomainError("This delivery is already being retried automatically.")
    locked.state = DeliveryState.PENDING
    locked.save(update_fields=["state"])
    timeline_append(
        incident=locked.notice.incident,
        kind=TimelineKind.COMMS_SENT,
        body=f"Retry requested for {locked.notice.get_kind_display()} notice "
        f"“{locked.notice.subject}” to {locked.get_channel_display()} "
        f"(last error: {locked.last_error})",
        actor=actor,
        payload={"notice": locked.notice_id, "delivery": locked.pk, "outcome": "retry"},
    )
    transaction.on_commit(lambda: _dispatch(locked.pk), robust=True)
    return locked


# -- rollback notices --------------------------------------------------------------------------


def run_event_notice(*, run_id: int, event: str, after: datetime | None = None) -> Notice | None:
    """The internal notice for a rollback run starting, progressing or finishing, built from
    the incident's facts. Dry runs and drills send none. A progress notice is keyed by the
    time of the notice it follows (`after`, else the start): sweeps that found the same last
    notice, two beats started by mistake, write one."""
    kind, key = _RUN_EVENTS[event]
    run = Run.objects.select_related("incident").filter(pk=run_id).first()
    if run is None:  # deleted since, or a message meant for another console's database
        logger.warning("no notice for the %s of run %s: there is no such run", event, run_id)
        return None
    if run.dry_run or run.drill or run.started_at is None:
        return None
    if event == "progress":
        dedupe_key = f"run:{run.pk}:progress:{(after or run.started_at).timestamp():.6f}"
    else:
        dedupe_key = f"run:{run.pk}:{event}"
    subject, body = texts.rendered(key, texts.incident_facts(run.incident, run=run))
    return notice_create(
        incident=run.incident,
        kind=kind,
        dedupe_key=dedupe_key,
        subject=subject,
        body=body,
        channels=internal_channels(),
        run=run,
    )


# -- customer notice --------------------------------------------------------------------------


def customer_notice_threshold() -> timedelta:
    return conf.customer_notice_after()


def customer_notice_due(incident: Incident, *, now: datetime | None = None) -> bool:
    """Whether the outage has lasted long enough for a customer notice."""
    return texts.outage_duration(incident, now=now) >= customer_notice_threshold()


def customer_notice_draft(incident: Incident) -> tuple[str, str]:
    """(subject, body) of the default customer notice for this incident."""
    return texts.rendered(TemplateKey.CUSTOMER_NOTICE, texts.incident_facts(incident))


@transaction.atomic
def customer_notice_send(
    *,
    incident: Incident,
    actor: User,
    subject: str,
    body: str,
    recipients: Sequence[str],
    confirmed: bool,
    token: str | None = None,
) -> Notice:
    """Send the support lead's customer notice by email once the outage has lasted
    CUSTOMER_NOTICE_AFTER_MINUTES. Needs an explicit confirmation: email cannot be unsent.
    `token` names one filled-in form: the same form submitted twice sends once."""
    require_role(actor, EDIT_PERMISSION, "send customer notices")
    if not confirmed:
        raise DomainError("Confirm that the notice is ready to go to customers.")
    if not customer_notice_due(incident):
        minutes = int(customer_notice_threshold().total_seconds() // 60)
        raise DomainError(f"A customer notice is for outages longer than {minutes} minutes.")
    if not subject.strip() or not body.strip():
        raise DomainError("The notice needs a subject and a text.")
    addresses = sorted({address.strip() for address in recipients if address.strip()})
    if not addresses:
        raise DomainError("Name at least one recipient.")
    if len(addresses) > conf.customer_max_recipients():
        raise DomainError(
            f"Recipients: at most {conf.customer_max_recipients()} addresses for one notice "
            f"({len(addresses)} given); send it to a mailing list instead."
        )
    notice = notice_create(
        incident=incident,
        kind=NoticeKind.CUSTOMER,
        dedupe_key=f"customer:{incident.pk}:{token or uuid.uuid4().hex}",
        subject=subject.strip(),
        body=body.strip(),
        channels=[Channel.EMAIL],
        recipients=addresses,
        actor=actor,
    )
    if notice is None:
        raise DomainError("This customer notice was sent already (the form was submitted twice).")
    timeline_append(
        incident=incident,
        kind=TimelineKind.COMMS_SENT,
        body=f"Customer notice “{notice.subject}” queued for {len(addresses)} recipient(s)",
        actor=actor,
        payload={"notice": notice.pk, "kind": notice.kind, "recipients": len(addresses)},
    )
    return notice


# -- cadence reminder and sweep ----------------------------------------------------------------


def last_published_at(incident: Incident) -> datetime | None:
    result = Revision.objects.filter(public_incident__incident=incident).aggregate(
        at=Max("published_at")
    )
    return result["at"]  # type: ignore[no-any-return]


def _mitigating_since(incident: Incident) -> datetime:
    entered = (
        TimelineEntry.objects.filter(
            incident=incident, kind=TimelineKind.STATUS_CHANGE, payload__to="mitigating"
        )
        .aggregate(at=Max("created_at"))
        .get("at")
    )
    return entered or incident.decided_at or incident.detected_at  # type: ignore[no-any-return]


def cadence() -> timedelta:
    return conf.cadence()


def update_overdue_since(incident: Incident) -> datetime | None:
    """While mitigating: since when the public has heard nothing (if longer than the
    cadence); otherwise None."""
    if incident.status != IncidentStatus.MITIGATING:
        return None
    since = max(
        at for at in (last_published_at(incident), _mitigating_since(incident)) if at is not None
    )
    return since if timezone.now() - since >= cadence() else None


def cadence_remind(*, now: datetime | None = None) -> list[int]:
    """Remind the support lead (a REMINDER timeline entry, live in the room and on the desk)
    for each mitigating incident whose status page has been quiet for a cadence; at most one
    reminder per cadence. Returns the incidents reminded."""
    moment = now or timezone.now()
    reminded = []
    for incident in Incident.objects.filter(status=IncidentStatus.MITIGATING):
        with transaction.atomic():
            locked = Incident.objects.select_for_update(no_key=True).get(pk=incident.pk)
            if locked.status != IncidentStatus.MITIGATING:
                continue
            published = last_published_at(locked)
            quiet_since = max(at for at in (published, _mitigating_since(locked)) if at is not None)
            last_reminder = (
                TimelineEntry.objects.filter(
                    incident=locked, kind=TimelineKind.REMINDER, payload__reason="status_cadence"
                )
                .aggregate(at=Max("created_at"))
                .get("at")
            )
            reference = max(at for at in (quiet_since, last_reminder) if at is not None)
            if moment - reference < cadence():
                continue
            minutes = int((moment - quiet_since).total_seconds() // 60)
            timeline_append(
                incident=locked,
                kind=TimelineKind.REMINDER,
                body=f"No status-page update for {minutes} minutes while mitigating: "
                "support lead, publish an update",
                actor_label=CADENCE_ACTOR,
                payload={
                    "reason": "status_cadence",
                    "quiet_minutes": minutes,
                    "last_published": published.isoformat() if published else None,
                },
            )
            reminded.append(locked.pk)
    return reminded


def progress_notices(*, now: datetime | None = None) -> list[int]:
    """A progress notice for each rollback still running COMMS_PROGRESS_MINUTES after its
    last notice; returns the runs concerned."""
    moment = now or timezone.now()
    every = conf.progress_every()
    sent = []
    runs = Run.objects.filter(
        state__in=[RunState.RUNNING, RunState.PAUSED],
        dry_run=False,
        drill=False,
        started_at__isnull=False,
    ).annotate(last_notice=Max("notices__created_at"))
    for run in runs:
        last = run.last_notice or run.started_at  # type: ignore[attr-defined]
        due = last is not None and moment - last >= every
        if due and run_event_notice(run_id=run.pk, event="progress", after=last) is not None:
            sent.append(run.pk)
    return sent


def missed_run_notices() -> list[int]:
    """Start and finish notices not written yet, for runs started or finished in the last
    hour: any notice that a crash between commit and hook lost. Returns the runs concerned."""
    cutoff = timezone.now() - timedelta(hours=1)
    caught = []
    started = Run.objects.filter(started_at__gte=cutoff, dry_run=False, drill=False).exclude(
        notices__kind=NoticeKind.ROLLBACK_STARTED
    )
    for run in started:
        if run_event_notice(run_id=run.pk, event="started") is not None:
            caught.append(run.pk)
    finished = Run.objects.filter(
        finished_at__gte=cutoff,
        started_at__isnull=False,
        state__in=[RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED],
        dry_run=False,
        drill=False,
    ).exclude(notices__kind=NoticeKind.ROLLBACK_FINISHED)
    for run in finished:
        if run_event_notice(run_id=run.pk, event="finished") is not None:
            caught.append(run.pk)
    return caught


def redispatch_lost(*, now: datetime | None = None) -> list[int]:
    """Deliveries whose task message was lost (pending and not attempted for a while, or
    left mid-retry by a dead worker) are handed to Celery again."""
    moment = now or timezone.now()
    stale = moment - LOST_AFTER
    lost = list(
        Delivery.objects.filter(
            Q(state=DeliveryState.PENDING) | Q(state=DeliveryState.FAILED, will_retry=True)
        )
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=moment))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale))
        .filter(Q(attempted_at__isnull=True) | Q(attempted_at__lt=stale))
        .values_list("pk", flat=True)
    )
    for delivery_id in lost:
        _dispatch(delivery_id)
    return lost


def sweep() -> dict[str, list[int]]:
    """What Celery beat runs every STATUS_SWEEP_SECONDS: progress notices, missed
    start/finish notices, lost deliveries, cadence reminders. Each part runs even if another
    fails."""
    found: dict[str, list[int]] = {}
    for name, part in (
        ("progress", progress_notices),
        ("missed", missed_run_notices),
        ("redispatched", redispatch_lost),
        ("reminded", cadence_remind),
    ):
        try:
            found[name] = part()
        except Exception:
            logger.exception("status-page sweep: %s failed", name)
            found[name] = []
    return found
