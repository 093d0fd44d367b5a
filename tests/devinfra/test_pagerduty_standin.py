"""The PagerDuty Events API v2 stand-in, spoken to over HTTP as PagerDuty is: alert states
per dedup key, PagerDuty's answers and error shape, faults, and the demo's seed."""

from __future__ import annotations

from typing import Any

import requests

from devinfra.hosted.pagerduty import PagerDutyStandin, seed_demo
from executors.base import Connections
from tests.devinfra.hosted_pagerduty import ROUTING_KEY


def _post(standin: PagerDutyStandin, event: Any) -> requests.Response:
    return requests.post(f"{standin.url}/v2/enqueue", json=event, timeout=5)


def _trigger(key: str | None = "deploy-1", **payload: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "Checkout down", "source": "web-1", "severity": "critical"}
        | payload,
    }
    if key is not None:
        event["dedup_key"] = key
    return event


def _follow_up(action: str, key: str = "deploy-1") -> dict[str, Any]:
    return {"routing_key": ROUTING_KEY, "event_action": action, "dedup_key": key}


def test_an_alert_goes_from_triggered_to_acknowledged_to_resolved(pagerduty_standin):
    answer = _post(pagerduty_standin, _trigger())
    assert answer.status_code == 202
    assert answer.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "deploy-1",
    }
    assert pagerduty_standin.alert("deploy-1").state == "triggered"
    assert _post(pagerduty_standin, _follow_up("acknowledge")).status_code == 202
    assert pagerduty_standin.alert("deploy-1").state == "acknowledged"
    assert _post(pagerduty_standin, _follow_up("resolve")).status_code == 202
    alert = pagerduty_standin.alert("deploy-1")
    assert (alert.state, alert.actions) == ("resolved", ["trigger", "acknowledge", "resolve"])


def test_a_second_trigger_for_an_open_alert_opens_no_second_one(pagerduty_standin):
    _post(pagerduty_standin, _trigger())
    _post(pagerduty_standin, _trigger(summary="Checkout still down"))
    [alert] = pagerduty_standin.alerts
    assert (alert.summary, alert.actions) == ("Checkout down", ["trigger", "trigger"])


def test_a_trigger_after_the_resolve_opens_a_new_alert(pagerduty_standin):
    _post(pagerduty_standin, _trigger())
    _post(pagerduty_standin, _follow_up("resolve"))
    _post(pagerduty_standin, _trigger())
    assert [alert.state for alert in pagerduty_standin.alerts] == ["resolved", "triggered"]


def test_acknowledging_or_resolving_no_open_alert_is_accepted_and_dropped(pagerduty_standin):
    for action in ("acknowledge", "resolve"):
        assert _post(pagerduty_standin, _follow_up(action, "nothing-here")).status_code == 202
    assert pagerduty_standin.alerts == []


def test_a_trigger_without_a_dedup_key_gets_one(pagerduty_standin):
    answer = _post(pagerduty_standin, _trigger(key=None))
    key = answer.json()["dedup_key"]
    assert len(key) == 32 and pagerduty_standin.alert(key) is not None


def test_an_invalid_event_gets_pagerdutys_error_shape(pagerduty_standin):
    event = _trigger(severity="fatal", summary="x" * 1025)
    event["event_action"] = "trigger"
    answer = _post(pagerduty_standin, event)
    assert answer.status_code == 400
    assert answer.json() == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": [
            "'payload.summary' is longer than 1024 characters",
            "'payload.severity' must be one of critical, error, warning, info",
        ],
    }
    assert pagerduty_standin.alerts == []


def test_follow_ups_need_a_dedup_key_and_actions_must_be_known(pagerduty_standin):
    missing = _post(pagerduty_standin, {"routing_key": ROUTING_KEY, "event_action": "resolve"})
    assert missing.json()["errors"] == ["'dedup_key' is missing or blank"]
    unknown = _post(pagerduty_standin, _follow_up("snooze"))
    assert unknown.json()["errors"] == ["'event_action' is missing or invalid"]


def test_a_routing_key_of_the_wrong_length_or_integration_is_refused(pagerduty_standin):
    short = _post(pagerduty_standin, {**_trigger(), "routing_key": "abc"})
    assert short.status_code == 400
    assert short.json()["errors"] == [
        "Length of 'routing_key' is incorrect (should be 32 characters)"
    ]
    other = _post(pagerduty_standin, {**_trigger(), "routing_key": "x" * 32})
    assert other.json()["errors"] == ["Invalid routing key"]


def test_a_body_that_is_not_an_event_is_refused(pagerduty_standin):
    assert _post(pagerduty_standin, ["trigger"]).status_code == 400
    assert _post(pagerduty_standin, {**_trigger(), "links": "x"}).status_code == 400


def test_throttling_answers_429_with_retry_after_and_the_event_is_not_taken(pagerduty_standin):
    pagerduty_standin.fail_next(429, 1, retry_after="30")
    answer = _post(pagerduty_standin, _trigger())
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "30")
    assert answer.json()["status"] == "throttle event"
    assert pagerduty_standin.alerts == []
    assert _post(pagerduty_standin, _trigger()).status_code == 202


def test_the_routing_key_needs_no_auth_header(pagerduty_standin):
    answer = requests.post(
        f"{pagerduty_standin.url}/v2/enqueue",
        json=_trigger(),
        headers={"Authorization": "Bearer nonsense"},
        timeout=5,
    )
    assert answer.status_code == 202


def test_the_demo_seed_points_the_console_at_the_standin():
    seed = seed_demo(Connections())
    try:
        env = seed.env
        assert len(env["PAGERDUTY_ROUTING_KEY"]) == 32 and seed.services == []
        assert env["PAGERDUTY_EVENTS_URL"] == f"{seed.standin.url}/v2/enqueue"
        event = {**_trigger(), "routing_key": env["PAGERDUTY_ROUTING_KEY"]}
        answer = requests.post(env["PAGERDUTY_EVENTS_URL"], json=event, timeout=5)
        assert answer.status_code == 202
    finally:
        seed.standin.stop()
