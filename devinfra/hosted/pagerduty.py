"""A stand-in for the PagerDuty Events API v2 (`POST /v2/enqueue`, alert events), as its
developer documentation describes it: the integration's 32-character routing key travels in
the JSON body (no auth header), `event_action` is trigger, acknowledge or resolve, and every
event names its alert by `dedup_key` (generated when a trigger has none).

What it keeps: the alerts it opened, each with its dedup key, state (triggered,
acknowledged, resolved) and the actions it received. A trigger for an open alert is logged on
it; once an alert is resolved, a trigger with its dedup key opens a new alert, and an
acknowledge or resolve is dropped (still 202), as PagerDuty does.

Answers: 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`; 400
`{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}` for a
malformed event; 429 and 5xx through `fail_next`. PagerDuty does not document what a
well-formed key of no integration gets; this stand-in refuses it like an invalid event
("Invalid routing key"), so a wrong key shows in tests and in the demo.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from devinfra.demo_hosted import HostedSeed
from devinfra.hosted.server import Answer, Request, Standin, StandinError
from executors.base import Connections

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
OPEN = ("triggered", "acknowledged")


@dataclass
class Alert:
    """One alert as PagerDuty holds it."""

    dedup_key: str
    summary: str
    severity: str
    source: str
    state: str = "triggered"
    actions: list[str] = field(default_factory=lambda: ["trigger"])
    links: list[dict[str, Any]] = field(default_factory=list)


class PagerDutyStandin(Standin):
    """The Events API v2 endpoint; `alerts` lists every alert opened, oldest first."""

    name = "pagerduty"
    routes: ClassVar[list[tuple[str, str, str]]] = [("POST", "/v2/enqueue", "enqueue")]

    def __init__(self, token: str = "standin-routing-key-0123456789ab") -> None:
        super().__init__(token)
        self.alerts: list[Alert] = []

    def authorized(self, request: Request) -> bool:
        """The key is in the body: `enqueue` checks it."""
        return True

    def error_body(self, status: int, message: str, **extra: Any) -> Any:
        if status == 400:
            return {"status": "invalid event", "message": message, **extra}
        if status == 429:
            return {"status": "throttle event", "message": message}
        return {"status": "error", "message": message}

    def alert(self, dedup_key: str) -> Alert | None:
        """The latest alert with `dedup_key`, or None."""
        with self.lock:
            found = [alert for alert in self.alerts if alert.dedup_key == dedup_key]
            return found[-1] if found else None

    def enqueue(self, request: Request) -> Answer:
        event = request.body
        errors = _invalid(event, self.token)
        if errors:
            raise StandinError(400, "Event object is invalid", errors=errors)
        action = event["event_action"]
        key = event.get("dedup_key") or uuid.uuid4().hex
        with self.lock:
            alert = self.alert(key)
            open_alert = alert if alert is not None and alert.state in OPEN else None
            if action == "trigger":
                if open_alert is None:
                    payload = event["payload"]
                    self.alerts.append(
                        Alert(
                            dedup_key=key,
                            summary=payload["summary"],
                            severity=payload["severity"],
                            source=payload["source"],
                            links=list(event.get("links") or []),
                        )
                    )
                else:
                    open_alert.actions.append(action)
            elif open_alert is not None:
                open_alert.actions.append(action)
                open_alert.state = "acknowledged" if action == "acknowledge" else "resolved"
        body = {"status": "success", "message": "Event processed", "dedup_key": key}
        return Answer(202, body)


def _invalid(event: Any, routing_key: str) -> list[str]:
    """What is wrong with `event`, in PagerDuty's words; [] when it is a valid event."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    key = event.get("routing_key")
    if not isinstance(key, str) or not key:
        return ["'routing_key' is missing or blank"]
    if len(key) != 32:
        return ["Length of 'routing_key' is incorrect (should be 32 characters)"]
    if key != routing_key:
        return ["Invalid routing key"]
    errors = []
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or invalid")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors += _invalid_payload(event.get("payload"))
    links = event.get("links", [])
    if not isinstance(links, list) or not all(
        isinstance(link, dict) and isinstance(link.get("href"), str) for link in links
    ):
        errors.append("'links' must be a list of objects with an 'href'")
    return errors


def _invalid_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        errors.append("'payload.summary' is longer than 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"].strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' must be one of critical, error, warning, info")
    details = payload.get("custom_details", {})
    if not isinstance(details, dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def seed_demo(connections: Connections) -> HostedSeed:
    """Start the stand-in with a fresh routing key; the demo's notices page it (its env
    points the console's PagerDuty channel here). It backs no service."""
    standin = PagerDutyStandin(secrets.token_hex(16)).start()
    env = {
        "PAGERDUTY_ROUTING_KEY": standin.token,
        "PAGERDUTY_EVENTS_URL": f"{standin.url}/v2/enqueue",
    }
    return HostedSeed(standin, [], env=env)
