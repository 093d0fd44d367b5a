"""A rollback made in the console and carried out by Celery workers in processes of their
own pages PagerDuty (the Events API v2 stand-in) when it starts, and resolves the page once
its verification has passed: the console's notices, hooks and delivery tasks, the worker's
settings read from its environment, and the real HTTP calls, end to end.

Notices and steps are served by two workers, one per queue (as docs/deploy.md suggests), the
steps' worker started once the trigger has arrived: without that a quick rollback may finish
before its start notice is sent (a case tests/statuspage/test_pagerduty.py covers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from devinfra.demo_services import seed_feature_flag
from incidents.models import TimelineKind
from rollbacks.models import ApprovalPolicy, RunState
from statuspage.models import Delivery
from tests.devinfra.hosted_pagerduty import ROUTING_KEY
from tests.rollbacks.conftest import HealthServer
from tests.rollbacks.engine_factories import IncidentFactory
from tests.rollbacks.engine_fixtures import SOLO_OPTIONS, wait_for
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import Console

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("engine_settings", "isolated_celery"),
]


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_verified_rollback_triggers_then_resolves_the_incidents_alert(
    pagerduty, start_worker, commander, roles, health, settings
):
    ApprovalPolicy.objects.update(active=False)
    ApprovalPolicy.objects.create(
        name="P1 needs on-call", severities=["P1"], required_roles=["On-call"]
    )
    service = console_service(seed_feature_flag(settings.REDIS_URL), health.url)
    incident = IncidentFactory(severity="P1", title="Checkout fails for 30 % of visitors")
    incident.services.add(service)
    env = {
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PAGERDUTY_EVENTS_URL": f"{pagerduty.url}/v2/enqueue",
        "COMMS_SLACK_WEBHOOK_URL": "",
        "COMMS_EMAIL_TO": "",
        # Celery's own backoff at most 1 s: the wait below is PagerDuty's Retry-After.
        "COMMS_RETRY_BACKOFF_SECONDS": "1",
    }
    pagerduty.fail_next(429, 1, retry_after="3")
    start_worker("notices", (*SOLO_OPTIONS, "--queues", "celery"), **env)

    console = Console(commander)
    run = console.draft(incident, service, "options", {"state": "off"})
    console.request_approval(run)
    console.approve(run)
    console.start(run)
    key = f"backout-incident-{incident.pk}"
    wait_for(lambda: pagerduty.alert(key) is not None, 40, "the trigger at PagerDuty")
    alert = pagerduty.alert(key)
    assert alert is not None
    assert (alert.state, alert.severity) == ("triggered", "error")
    assert alert.summary.startswith(f"[P1] Rollback #{run.pk} started")

    start_worker("steps", (*SOLO_OPTIONS, "--queues", "steps"), **env)
    run = console.finish(run)
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    wait_for(lambda: alert.state == "resolved", 40, "the resolve at PagerDuty")

    assert len(pagerduty.alerts) == 1 and alert.actions == ["trigger", "resolve"]
    sent = [(r.body["event_action"], r.body["dedup_key"]) for r in pagerduty.requests]
    assert sent == [("trigger", key), ("trigger", key), ("resolve", key)]
    deliveries = Delivery.objects.filter(notice__incident=incident, channel="pagerduty")
    # PagerDuty has the resolve a moment before the worker records the delivery as sent.
    wait_for(lambda: not deliveries.exclude(state="sent").exists(), 10, "the deliveries")
    assert sorted(deliveries.values_list("notice__kind", "state", "attempts")) == [
        ("rollback_finished", "sent", 1),
        ("rollback_started", "sent", 2),
    ]
    comms = list(incident.timeline.filter(kind=TimelineKind.COMMS_SENT).order_by("id"))
    throttled, retried = (entry for entry in comms if "Rollback started" in entry.body)
    assert "HTTP 429 to the trigger" in throttled.body and throttled.body.endswith("; retrying")
    assert (retried.created_at - throttled.created_at).total_seconds() >= 2.5
    recorded = [[entry.body, entry.payload] for entry in incident.timeline.all()]
    assert ROUTING_KEY not in str(recorded) + str(list(deliveries.values("last_error")))
