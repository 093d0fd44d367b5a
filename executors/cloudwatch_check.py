"""A verification check on CloudWatch alarms: every alarm named is in state OK.

DescribeAlarms reads the alarms (metric and composite ones, up to 100 names per check):

- every alarm OK → passed;
- any alarm in ALARM → failed, naming it and its state reason (after `settle_seconds`, while
  it may still turn: an alarm evaluates once per period, so right after a rollback it can
  still show the breach that caused it);
- otherwise any alarm in INSUFFICIENT_DATA, or named but not found → inconclusive: no data
  is never a pass, and a missing alarm says nothing about the service (a typo or another
  region is for a person to look at);
- CloudWatch throttling, an error answer or no answer → inconclusive, with the error.

Like the other checks, it returns a CheckResult and never raises for what it observes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from executors.aws import aws_call, aws_client
from executors.base import BackendError, CheckResult, CheckStatus, Connections

# How often an alarm still in ALARM is read again while `settle_seconds` last.
ALARM_REQUERY_SECONDS = 2.0
_REASON_PREVIEW = 160
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _excerpt(text: str) -> str:
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= _REASON_PREVIEW else flat[: _REASON_PREVIEW - 1] + "…"


def _states(client: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    def listing() -> list[dict[str, Any]]:
        paginator = client.get_paginator("describe_alarms")
        pages = paginator.paginate(
            AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        return [
            alarm
            for page in pages
            for alarm in (page.get("MetricAlarms") or []) + (page.get("CompositeAlarms") or [])
        ]

    return {str(alarm["AlarmName"]): alarm for alarm in aws_call("describe alarms", listing)}


def _judge(names: Sequence[str], found: dict[str, dict[str, Any]]) -> tuple[CheckStatus, str, str]:
    """(status, detail, observed) for the alarms as read."""
    by_state: dict[str, list[str]] = {}
    for name in names:
        state = str(found[name].get("StateValue")) if name in found else "missing"
        by_state.setdefault(state, []).append(name)
    observed = ", ".join(f"{len(listed)} {state}" for state, listed in sorted(by_state.items()))
    if "ALARM" in by_state:
        reasons = "; ".join(
            f"{name}: {_excerpt(str(found[name].get('StateReason') or 'no reason given'))}"
            for name in by_state["ALARM"][:5]
        )
        return CheckStatus.FAILED, f"in ALARM: {reasons}", observed
    unsure = [
        f"{name} {'not found' if state == 'missing' else state}"
        for state, listed in by_state.items()
        if state != "OK"
        for name in listed
    ]
    if unsure:
        return CheckStatus.INCONCLUSIVE, "cannot tell: " + ", ".join(unsure[:10]), observed
    return CheckStatus.PASSED, f"OK: {', '.join(names[:10])}", observed


def cloudwatch_alarms(
    connections: Connections,
    alarms: Sequence[str],
    *,
    settle_seconds: float = 0.0,
    name: str | None = None,
    client: Any = None,
) -> CheckResult:
    """Pass when every alarm of `alarms` is OK; ALARM fails (once `settle_seconds` have
    passed without it clearing); INSUFFICIENT_DATA, a missing alarm or an error answer is
    inconclusive. `client` is a CloudWatch client to use instead of building one."""
    name = name or f"alarms {', '.join(alarms)}"[:80]
    settle_until = time.monotonic() + settle_seconds
    try:
        client = client or aws_client(connections, "cloudwatch")
    except Exception as error:  # an endpoint or region boto3 cannot use
        return CheckResult(name, CheckStatus.INCONCLUSIVE, f"no CloudWatch client: {error}")
    while True:
        try:
            found = _states(client, alarms)
        except BackendError as error:
            return CheckResult(
                name,
                CheckStatus.INCONCLUSIVE,
                _excerpt(f"CloudWatch did not tell: {error}"),
                threshold="OK",
            )
        status, detail, observed = _judge(alarms, found)
        left = settle_until - time.monotonic()
        if status != CheckStatus.FAILED or left <= 0:
            return CheckResult(name, status, detail, observed=observed, threshold="OK")
        time.sleep(min(ALARM_REQUERY_SECONDS, left))
