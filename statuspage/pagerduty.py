"""PagerDuty as a notice channel: internal notices become alert events of the PagerDuty
Events API v2 (`POST PAGERDUTY_EVENTS_URL`, the routing key in the body, no auth header).

Every event of an incident carries the same dedup key, `backout-incident-<id>`, so PagerDuty
keeps one alert per console incident however often a delivery is retried: a trigger sent
twice adds a log entry to the open alert, it never opens a second one. What each notice
becomes (docs/notices-pagerduty.md):

- rollback started → `trigger`: production is being rolled back, on-call is paged;
- rollback progress → nothing: acknowledging is for the person who answers the page, and
  an acknowledgement sent by the console would stop escalation with nobody looking;
- rollback finished, succeeded (its verification passed) → `resolve`, unless another
  rollback of the incident is still under way (it would hide that one);
- rollback finished, failed or cancelled → `trigger` again, with the outcome as summary: the
  alert stays open (or opens again) until a later rollback succeeds.

Severity follows the incident's: P0 critical, P1 error, P2 warning, P3 info.

Deliveries are sent by `statuspage.comms.delivery_attempt` like Slack's and email's: 429,
5xx, timeouts and unreachable servers are retried with backoff, after the Retry-After wait
when PagerDuty sends one; a 400 (an invalid event, a wrong routing key) is permanent and
waits on the status desk for a person. An event of a run earlier than one of the same run
already delivered is not sent any more (`_superseded`): a retried trigger, or the start
notice of a quick run written after its finish, must not reopen the alert its resolve closed.
Deciding and sending happen under a lock per incident, so two workers never cross.

The routing key is a secret: it is read from settings when sending and masked out of every
message, so it reaches no log, timeline entry or Delivery.last_error.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import connection, transaction
from django.db.models import Q
from django.urls import reverse

from executors.http_guard import BlockedAddress, guarded_session
from executors.rest import answer_text, retry_after_seconds, shown
from executors.value_masks import mask_values
from incidents.models import Incident
from rollbacks.models import RUN_FINISHED_STATES, Run, RunState
from statuspage import conf
from statuspage.delivery_errors import DeliveryError
from statuspage.models import Channel, Delivery, DeliveryState, Notice, NoticeKind

SERVICE = "PagerDuty"
SUMMARY_LIMIT = 1024
DETAILS_LIMIT = 4000
FIELD_LIMIT = 255
# How much of PagerDuty's explanation of a refusal a delivery error quotes.
REFUSAL_LIMIT = 300
SEVERITIES = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
_PHASES: dict[str, int] = {
    NoticeKind.ROLLBACK_STARTED: 0,
    NoticeKind.ROLLBACK_PROGRESS: 1,
    NoticeKind.ROLLBACK_FINISHED: 2,
}

# The first key of the advisory lock taken per incident while deciding and sending.
_LOCK_SPACE = 7310

# The zero-width joiner: what follows it is part of the emoji before it.
_ZWJ = "\u200d"


def dedup_key(incident_id: int) -> str:
    """The dedup key of every event about one incident."""
    return f"backout-incident-{incident_id}"


def wants(kind: str) -> bool:
    """Whether notices of `kind` go to PagerDuty (progress does not: see the docstring)."""
    return kind != NoticeKind.ROLLBACK_PROGRESS


def event_action(notice: Notice) -> str:
    """What a notice does to the incident's PagerDuty alert (see the module docstring)."""
    if notice.kind == NoticeKind.ROLLBACK_FINISHED:
        succeeded = notice.run is None or notice.run.state == RunState.SUCCEEDED
        return "resolve" if succeeded else "trigger"
    return "trigger"


def severity(incident: Incident) -> str:
    """The PagerDuty severity of the incident's P0–P3."""
    return SEVERITIES.get(incident.severity, "error")


def _continues_previous(text: str, at: int) -> bool:
    """Whether `text[at]` belongs to the character before it (an accent, a skin tone, the
    rest of an emoji sequence or of a flag): cutting before it would split a character."""
    char = text[at]
    code = ord(char)
    if unicodedata.category(char) in ("Mn", "Mc", "Me") or char == _ZWJ:
        return True
    if 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return True  # variation selectors, skin tones, flag tags
    if text[at - 1] == _ZWJ:
        return True
    if _regional_indicator(char) and _regional_indicator(text[at - 1]):
        run = 0
        while at - 1 - run >= 0 and _regional_indicator(text[at - 1 - run]):
            run += 1
        return run % 2 == 1  # the second letter of a flag
    return False


def _regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def clean_text(text: str, limit: int, *, one_line: bool = True) -> str:
    """`text` without control characters (line breaks become spaces when `one_line`), at
    most `limit` characters, cut before a whole character (an emoji sequence, a letter
    with its accents) and ended with "…" when it was longer."""
    kept = []
    for char in text:
        if char in "\n\t\r" and one_line:
            kept.append(" ")
        elif char in "\n\t" or unicodedata.category(char) != "Cc":
            kept.append(char)
    cleaned = " ".join("".join(kept).split()) if one_line else "".join(kept).strip()
    if len(cleaned) <= limit:
        return cleaned
    cut = limit - 1
    while cut > 0 and _continues_previous(cleaned, cut):
        cut -= 1
    return cleaned[:cut].rstrip() + "…"


def _source() -> str:
    """The console's host name: where the alert comes from."""
    return urlsplit(conf.console_base_url()).hostname or "backout"


def alert_event(notice: Notice, *, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for `notice` (a trigger carries the payload and links; an
    acknowledge or resolve needs only the key and the action)."""
    incident = notice.incident
    action = event_action(notice)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(incident.pk),
    }
    if action != "trigger":
        return event
    services = ", ".join(sorted(service.name for service in incident.services.all()))
    details: dict[str, Any] = {
        "incident": f"#{incident.pk} {clean_text(incident.title, FIELD_LIMIT)}",
        "severity": incident.severity,
        "status": incident.status,
        "notice": notice.get_kind_display(),
        "text": clean_text(notice.body, DETAILS_LIMIT, one_line=False),
    }
    if notice.run is not None:
        details["run"] = f"#{notice.run_id} {notice.run.state}"
    payload: dict[str, Any] = {
        "summary": clean_text(notice.subject, SUMMARY_LIMIT) or f"Incident #{incident.pk}",
        "source": _source(),
        "severity": severity(incident),
        "group": clean_text(incident.environment, FIELD_LIMIT),
        "class": notice.kind,
        "custom_details": details,
    }
    if services:
        payload["component"] = clean_text(services, FIELD_LIMIT)
    event["payload"] = payload
    room = conf.console_base_url() + reverse("incident_room", args=[incident.pk])
    event["links"] = [{"href": room, "text": f"Incident #{incident.pk} in Backout"}]
    return event


def _masked(text: str, routing_key: str) -> str:
    """The start of `text` that a message quotes, without the routing key in any form the
    answer may repeat it in (executors.value_masks)."""
    return mask_values(text, [routing_key] if routing_key else [], limit=REFUSAL_LIMIT)


def _refusal(response: requests.Response) -> str:
    """PagerDuty's explanation of an error, on one line and not yet shortened: its message
    and the errors it lists."""
    text = answer_text(response)
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return " ".join(text.split())
    parts = [shown(answer.get("message") or answer.get("status") or "")]
    errors = answer.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(shown(error) for error in errors[:3]))
    return " ".join(": ".join(part for part in parts if part).split())


def event_post(event: dict[str, Any]) -> str:
    """Post one event to PAGERDUTY_EVENTS_URL; returns the dedup key PagerDuty answered.
    Raises DeliveryError: retryable for 429, 5xx, timeouts and unreachable servers (with
    the Retry-After wait), permanent otherwise. The routing key never appears in it."""
    routing_key = str(event.get("routing_key") or "")
    action = event.get("event_action", "event")
    session = guarded_session()
    try:
        response = session.post(
            conf.pagerduty_events_url(),
            json=event,
            headers={"Accept": "application/json", "User-Agent": "backout"},
            timeout=conf.timeout_seconds(),
            allow_redirects=False,
        )
    except BlockedAddress as error:
        raise DeliveryError(f"PAGERDUTY_EVENTS_URL: {error}", retryable=False) from None
    except requests.Timeout:
        raise DeliveryError(
            f"{SERVICE} did not answer within {conf.timeout_seconds():g} s", retryable=True
        ) from None
    except requests.RequestException as error:
        raise DeliveryError(
            f"could not reach {SERVICE} ({type(error).__name__})", retryable=True
        ) from None
    finally:
        session.close()
    if 200 <= response.status_code < 300:
        try:
            answered = response.json().get("dedup_key")
        except (ValueError, AttributeError):
            answered = None
        return str(answered or event.get("dedup_key") or "")
    status = response.status_code
    detail = _masked(_refusal(response), routing_key)
    message = f"{SERVICE} answered HTTP {status} to the {action}" + (
        f": {detail}" if detail else ""
    )
    if status == 429 or status >= 500:
        wait = retry_after_seconds(response.headers)
        raise DeliveryError(message, retryable=True, retry_after=wait)
    if status == 400:
        message = f"{SERVICE} refused the {action} as invalid (HTTP 400)" + (
            f": {detail}" if detail else ""
        )
    raise DeliveryError(message, retryable=False)


def _superseded(delivery: Delivery) -> bool:
    """Whether a later event of the same run (or, for notices of no run, of no run) was
    already delivered to PagerDuty."""
    notice = delivery.notice
    same_run = Q(run_id=notice.run_id) if notice.run_id is not None else Q(run_id__isnull=True)
    delivered = (
        Notice.objects.filter(
            same_run,
            deliveries__channel=Channel.PAGERDUTY,
            deliveries__state=DeliveryState.SENT,
        )
        .exclude(pk=notice.pk)
        .values_list("kind", flat=True)
    )
    mine = _PHASES.get(notice.kind, 0)
    return any(_PHASES.get(kind, 0) > mine for kind in delivered)


def _still_running(notice: Notice) -> Run | None:
    """Another rollback of the incident started and not finished, which a resolve would
    hide from on-call."""
    runs = Run.objects.filter(incident_id=notice.incident_id, started_at__isnull=False)
    if notice.run_id is not None:
        runs = runs.exclude(pk=notice.run_id)
    return runs.exclude(state__in=RUN_FINISHED_STATES).order_by("pk").first()


def delivery_send(delivery: Delivery) -> str:
    """Send a notice's PagerDuty delivery (statuspage.comms calls this); returns what the
    timeline says it was sent to. Raises DeliveryError as `event_post` does."""
    routing_key = conf.pagerduty_routing_key()
    if not routing_key:
        raise DeliveryError("PAGERDUTY_ROUTING_KEY is not set", retryable=False)
    notice = delivery.notice
    event = alert_event(notice, routing_key=routing_key)
    with transaction.atomic():
        # One decision and send at a time per incident: a slow trigger must not land after
        # the resolve another worker decided on meanwhile.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, notice.incident_id]
            )
        if _superseded(delivery):
            return (
                f"{SERVICE}: nothing sent, a later event of {event['dedup_key']} went first "
                f"(this {event['event_action']} would have undone it)"
            )
        running = _still_running(notice) if event["event_action"] == "resolve" else None
        if running is not None:
            return (
                f"{SERVICE}: nothing sent, rollback #{running.pk} of the incident is still "
                f"running; its alert {event['dedup_key']} stays open"
            )
        key = event_post(event)
    return f"{SERVICE} ({event['event_action']}, dedup key {key})"


def probe_event_send(*, action: str, key: str, summary: str, severity_name: str = "info") -> str:
    """Send one hand-made event (`manage.py pagerduty_test`): a trigger with `summary`, or an
    acknowledge or resolve of `key`. Returns the dedup key; raises DeliveryError."""
    routing_key = conf.pagerduty_routing_key()
    if not routing_key:
        raise DeliveryError("PAGERDUTY_ROUTING_KEY is not set", retryable=False)
    if action not in EVENT_ACTIONS:
        raise DeliveryError(f"unknown event action {action!r}", retryable=False)
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": key}
    if action == "trigger":
        event["payload"] = {
            "summary": clean_text(summary, SUMMARY_LIMIT),
            "source": _source(),
            "severity": severity_name,
            "class": "test",
        }
    return event_post(event)
