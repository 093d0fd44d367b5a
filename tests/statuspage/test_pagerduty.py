"""PagerDuty as a notice channel, against the Events API v2 stand-in on 127.0.0.1: what each
notice sends, the incident's dedup key through retries, 429/5xx retried and 400 kept for a
person, and the routing key kept out of every record. Celery runs eagerly, through its own
retry machinery."""

from __future__ import annotations

import json
import socket

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

import rollbacks.services
from devinfra.hosted.server import Answer, StandinError
from incidents.models import TimelineKind
from rollbacks.models import RunState
from statuspage import comms, pagerduty
from statuspage.delivery_errors import DeliveryRetry
from statuspage.models import Delivery, Notice
from tests.devinfra.hosted_pagerduty import ROUTING_KEY
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, incident_open
from tests.rollbacks.engine_factories import RunFactory

pytestmark = pytest.mark.django_db


def _notice(incident, kind="rollback_started", key=None, subject="Rollback #1 started", run=None):
    return comms.notice_create(
        incident=incident,
        kind=kind,
        dedupe_key=key or f"manual:{kind}",
        subject=subject,
        body="Steps: checkout → v1.4.0",
        channels=comms.internal_channels(),
        run=run,
    )


def _sent(capture, incident, **fields):
    with capture(execute=True):
        notice = _notice(incident, **fields)
    return notice.deliveries.get()


def _comms_entries(incident):
    return list(incident.timeline.filter(kind=TimelineKind.COMMS_SENT).order_by("id"))


def _recorded(incident) -> str:
    """Everything the console kept about the sends: timeline bodies and payloads, and every
    delivery's last error."""
    entries = [[entry.body, entry.payload] for entry in incident.timeline.all()]
    errors = list(Delivery.objects.values_list("last_error", flat=True))
    return json.dumps([entries, errors], default=str)


def test_a_configured_routing_key_adds_pagerduty_to_the_internal_channels(pagerduty):
    assert comms.internal_channels() == ["pagerduty"]


def test_a_rollback_start_notice_triggers_an_alert_keyed_by_the_incident(
    pagerduty, django_capture_on_commit_callbacks
):
    checkout = ServiceFactory(name="checkout")
    incident = incident_open(title="Checkout errors", severity="P1", services=[checkout])
    delivery = _sent(django_capture_on_commit_callbacks, incident)

    assert (delivery.state, delivery.attempts, delivery.channel) == ("sent", 1, "pagerduty")
    [alert] = pagerduty.alerts
    assert alert.dedup_key == f"backout-incident-{incident.pk}"
    assert (alert.state, alert.summary, alert.severity) == (
        "triggered",
        "Rollback #1 started",
        "error",
    )
    assert alert.links[0]["href"].endswith(f"/incidents/{incident.pk}/")
    [request] = pagerduty.calls("POST", "/v2/enqueue")
    assert request.body["payload"]["component"] == "checkout"
    assert request.body["payload"]["group"] == "production"
    assert request.body["payload"]["custom_details"]["text"] == "Steps: checkout → v1.4.0"
    [entry] = _comms_entries(incident)
    assert entry.body.endswith(f"sent to PagerDuty (trigger, dedup key {alert.dedup_key})")


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("P0", "critical"), ("P1", "error"), ("P2", "warning"), ("P3", "info")],
)
def test_the_alerts_severity_follows_the_incidents(
    pagerduty, django_capture_on_commit_callbacks, severity, expected
):
    _sent(django_capture_on_commit_callbacks, incident_open(severity=severity))
    assert pagerduty.alerts[0].severity == expected


def test_progress_is_left_to_people_and_a_finished_notice_resolves_the_same_alert(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open()
    _sent(django_capture_on_commit_callbacks, incident)
    with django_capture_on_commit_callbacks(execute=True):
        progress = _notice(incident, kind="rollback_progress")
    assert not progress.deliveries.exists()  # an acknowledge would stop escalation
    _sent(django_capture_on_commit_callbacks, incident, kind="rollback_finished")
    [alert] = pagerduty.alerts
    assert alert.actions == ["trigger", "resolve"]
    assert alert.state == "resolved"
    keys = {request.body["dedup_key"] for request in pagerduty.requests}
    assert keys == {f"backout-incident-{incident.pk}"}


def test_a_rollback_that_succeeds_beside_one_still_running_leaves_the_alert_open(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open()
    long_restore = RunFactory(incident=incident, state=RunState.RUNNING)
    flag_flip = RunFactory(incident=incident, state=RunState.SUCCEEDED)
    _sent(django_capture_on_commit_callbacks, incident, run=long_restore, key="a:started")
    done = _sent(
        django_capture_on_commit_callbacks,
        incident,
        kind="rollback_finished",
        run=flag_flip,
        key="b:finished",
    )
    assert done.state == "sent"
    assert [r.body["event_action"] for r in pagerduty.requests] == ["trigger"]
    assert pagerduty.alerts[0].state == "triggered"
    assert f"rollback #{long_restore.pk} of the incident is still running" in (
        _comms_entries(incident)[-1].body
    )

    # The long one fails afterwards: its failure pages, though another run finished first.
    long_restore.state = RunState.FAILED
    long_restore.finished_at = timezone.now()
    long_restore.save(update_fields=["state", "finished_at"])
    _sent(
        django_capture_on_commit_callbacks,
        incident,
        kind="rollback_finished",
        run=long_restore,
        key="a:finished",
    )
    assert [r.body["event_action"] for r in pagerduty.requests] == ["trigger", "trigger"]
    assert pagerduty.alerts[0].state == "triggered"


@pytest.fixture
def started_run(roles, pagerduty, django_capture_on_commit_callbacks):
    """A rollback started through the services: its start notice went out by the hooks."""
    commander = UserFactory(username="ic", roles=["Incident Commander"])
    flag = ServiceFactory(
        name="new-checkout",
        backend="feature_flag",
        target_config={"store": "redis", "flag": "new-checkout", "key_prefix": "test:flags:"},
    )
    off = ReleaseFactory(service=flag, version="off", artifact="off")
    incident = incident_open(title="Checkout errors", severity="P2", services=[flag])
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[rollbacks.services.StepSpec(service=flag, release=off)],
        actor=commander,
    )
    rollbacks.services.run_request_approval(run=run, actor=commander)
    with django_capture_on_commit_callbacks(execute=True):
        run = rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation="new-checkout", enqueue=False
        )
    return run, commander


def test_starting_a_rollback_pages_and_cancelling_it_keeps_the_alert_open(
    started_run, pagerduty, django_capture_on_commit_callbacks
):
    run, commander = started_run
    [alert] = pagerduty.alerts
    assert alert.summary == f"[P2] Rollback #{run.pk} started: Checkout errors"
    with django_capture_on_commit_callbacks(execute=True):
        rollbacks.services.run_cancel(run=run, actor=commander, reason="flag fixed it")
    finished = Notice.objects.get(run=run, kind="rollback_finished")
    assert finished.deliveries.get().state == "sent"
    [alert] = pagerduty.alerts  # the same alert, triggered again: not resolved
    assert (alert.state, alert.actions) == ("triggered", ["trigger", "trigger"])
    last = pagerduty.requests[-1].body
    assert last["event_action"] == "trigger" and "cancelled" in last["payload"]["summary"]


def test_a_trigger_retried_after_5xx_keeps_its_dedup_key_and_opens_one_alert(
    pagerduty, django_capture_on_commit_callbacks
):
    pagerduty.fail_next(500, 1)
    pagerduty.fail_next(503, 1)
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert [r.body["dedup_key"] for r in pagerduty.requests] == [
        f"backout-incident-{incident.pk}"
    ] * 3
    assert len(pagerduty.alerts) == 1
    bodies = [entry.body for entry in _comms_entries(incident)]
    assert "failed (attempt 1): PagerDuty answered HTTP 500 to the trigger" in bodies[0]
    assert bodies[0].endswith("; retrying")


def test_a_trigger_retried_by_hand_after_its_attempts_ran_out_opens_one_alert(
    pagerduty, support_lead, django_capture_on_commit_callbacks
):
    pagerduty.fail_next(502, 6)
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert (delivery.state, delivery.will_retry, delivery.attempts) == ("failed", False, 6)
    assert pagerduty.alerts == []

    with django_capture_on_commit_callbacks(execute=True):
        comms.delivery_retry(delivery=delivery, actor=support_lead)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 7)
    [alert] = pagerduty.alerts
    assert alert.dedup_key == f"backout-incident-{incident.pk}"


def test_a_429_is_retried_after_the_wait_pagerduty_asks_for(pagerduty):
    pagerduty.fail_next(429, 1, retry_after="7")
    delivery = _notice(incident_open()).deliveries.get()  # on_commit not run: no task yet
    with pytest.raises(DeliveryRetry) as raised:
        comms.delivery_attempt(delivery_id=delivery.pk, final_attempt=False)
    assert raised.value.retry_after == 7.0
    delivery.refresh_from_db()
    assert (delivery.state, delivery.will_retry) == ("failed", True)
    assert "HTTP 429 to the trigger: rate limited" in delivery.last_error

    assert comms.delivery_attempt(delivery_id=delivery.pk, final_attempt=False) == "sent"
    assert len(pagerduty.alerts) == 1


def test_a_429_goes_through_celerys_retry_to_a_sent_delivery(
    pagerduty, django_capture_on_commit_callbacks
):
    pagerduty.fail_next(429, 2, retry_after="0")
    delivery = _sent(django_capture_on_commit_callbacks, incident_open())
    assert (delivery.state, delivery.attempts) == ("sent", 3)


def test_an_invalid_event_is_permanent_and_waits_for_a_person(
    pagerduty, settings, django_capture_on_commit_callbacks
):
    wrong = "w" * 32
    settings.PAGERDUTY_ROUTING_KEY = wrong
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert (delivery.state, delivery.attempts, delivery.will_retry) == ("failed", 1, False)
    assert delivery.last_error == (
        "PagerDuty refused the trigger as invalid (HTTP 400): Event object is invalid: "
        "Invalid routing key"
    )
    assert "not retried automatically" in _comms_entries(incident)[-1].body
    assert wrong not in _recorded(incident)


def test_a_refusal_quoting_the_key_where_its_excerpt_ends_keeps_none_of_it(
    pagerduty, monkeypatch, django_capture_on_commit_callbacks
):
    # "Event object is invalid: " and 265 characters: the quote's 300 end inside the key.
    def refuse(request):
        quoting = "x" * 264 + " " + request.body["routing_key"]
        raise StandinError(400, "Event object is invalid", errors=[quoting])

    monkeypatch.setattr(pagerduty, "enqueue", refuse)
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert delivery.state == "failed" and delivery.last_error.endswith("x ****")
    assert ROUTING_KEY[:4] not in _recorded(incident) + delivery.last_error


def test_a_refusal_listing_objects_quotes_them_as_json_with_the_key_masked(
    pagerduty, monkeypatch, django_capture_on_commit_callbacks
):
    def refuse(request):
        key = request.body["routing_key"]
        errors = [{"field": "routing_key", "got": key, "note": "キー <無効>"}]
        raise StandinError(400, "Event object is invalid", errors=errors)

    monkeypatch.setattr(pagerduty, "enqueue", refuse)
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert delivery.last_error == (
        "PagerDuty refused the trigger as invalid (HTTP 400): Event object is invalid: "
        '{"field": "routing_key", "got": "****", "note": "キー <無効>"}'
    )
    assert ROUTING_KEY not in _recorded(incident) + delivery.last_error


def test_a_refusal_in_latin_1_is_quoted_as_written(
    pagerduty, monkeypatch, django_capture_on_commit_callbacks
):
    # A body that is not UTF-8 is read as Latin-1, not with its letters replaced.
    body = json.dumps({"message": "Schlüssel ungültig"}, ensure_ascii=False).encode("latin-1")
    monkeypatch.setattr(
        pagerduty,
        "enqueue",
        lambda request: Answer(400, body, {"Content-Type": "application/json"}),
    )
    delivery = _sent(django_capture_on_commit_callbacks, incident_open())
    assert delivery.last_error == (
        "PagerDuty refused the trigger as invalid (HTTP 400): Schlüssel ungültig"
    )


def test_the_routing_key_is_never_recorded_whatever_the_answer(
    pagerduty, django_capture_on_commit_callbacks
):
    pagerduty.fail_next(429, 1, retry_after="0")
    pagerduty.fail_next(500, 1)
    incident = incident_open()
    for kind in ("rollback_started", "rollback_finished"):
        _sent(django_capture_on_commit_callbacks, incident, kind=kind)
    assert len(pagerduty.requests) == 4
    assert all(r.body["routing_key"] == ROUTING_KEY for r in pagerduty.requests)
    assert ROUTING_KEY not in _recorded(incident)


def test_an_unreachable_events_url_is_retried_without_naming_the_key(
    pagerduty, settings, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.PAGERDUTY_EVENTS_URL = f"http://127.0.0.1:{port}/v2/enqueue"
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    assert delivery.state == "failed" and delivery.attempts == 6
    assert "could not reach PagerDuty (ConnectionError)" in delivery.last_error
    assert ROUTING_KEY not in _recorded(incident)


def test_an_event_older_than_one_already_delivered_is_not_sent(
    pagerduty, django_capture_on_commit_callbacks
):
    incident = incident_open()
    late_trigger = _notice(incident).deliveries.get()  # its task message is "lost"
    _sent(django_capture_on_commit_callbacks, incident, kind="rollback_finished")
    assert comms.delivery_attempt(delivery_id=late_trigger.pk, final_attempt=False) == "sent"
    assert [r.body["event_action"] for r in pagerduty.requests] == ["resolve"]
    assert pagerduty.alerts == []  # a resolve of no open alert is dropped; nothing reopened
    assert "nothing sent, a later event" in _comms_entries(incident)[-1].body


def test_the_start_notice_of_a_run_that_already_finished_does_not_reopen_its_alert(
    pagerduty, django_capture_on_commit_callbacks
):
    run = RunFactory(state=RunState.SUCCEEDED)
    _sent(django_capture_on_commit_callbacks, run.incident, kind="rollback_finished", run=run)
    started = _sent(django_capture_on_commit_callbacks, run.incident, run=run)  # written late
    assert started.state == "sent"
    assert [r.body["event_action"] for r in pagerduty.requests] == ["resolve"]
    assert pagerduty.alerts == []


def test_a_summary_of_any_script_reaches_pagerduty_without_control_characters(
    pagerduty, django_capture_on_commit_callbacks
):
    subject = "Откат 🇺🇦 回滚 👩‍👩‍👧 تراجع\x1b\x07 <b>v1</b>\nnext line"
    _sent(django_capture_on_commit_callbacks, incident_open(), subject=subject)
    assert pagerduty.alerts[0].summary == "Откат 🇺🇦 回滚 👩‍👩‍👧 تراجع <b>v1</b> next line"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("回" * 2000, "回" * 1023),
        ("a" * 1021 + "👩‍👩‍👧" + "tail", "a" * 1021),
        ("a" * 1022 + "🇺🇦🇺🇦", "a" * 1022),
        ("a" * 1021 + "🇺🇦🇺🇦", "a" * 1021 + "🇺🇦"),
        ("a" * 1022 + "e\u0301" + "z" * 9, "a" * 1022),
        ("a" * 1022 + "👍🏽" + "z", "a" * 1022),
    ],
    ids=["cjk", "zwj-family", "flag-pair", "first-flag-whole", "combining-accent", "skin-tone"],
)
def test_a_long_summary_is_cut_at_1024_characters_between_whole_characters(text, kept):
    summary = pagerduty.clean_text(text, 1024)
    assert len(summary) <= 1024
    assert summary == kept + "…"


def test_the_desk_shows_a_failed_pagerduty_delivery_with_its_retry_button(
    client, pagerduty, support_lead, django_capture_on_commit_callbacks
):
    pagerduty.fail_next(400, 1)
    incident = incident_open()
    delivery = _sent(django_capture_on_commit_callbacks, incident)
    client.force_login(support_lead)
    page = client.get(reverse("status_desk", args=[incident.pk])).content.decode()
    assert f'id="delivery-{delivery.pk}"' in page
    assert "PagerDuty: <span" in page and ">Retry<" in page
    assert "PagerDuty refused the trigger as invalid (HTTP 400)" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("status_delivery_retry", args=[incident.pk, delivery.pk]))
    assert response.status_code in (200, 302)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 2)
    assert pagerduty.alerts[0].state == "triggered"


def test_the_test_command_triggers_and_resolves_an_alert_of_its_own(pagerduty, capsys):
    call_command("pagerduty_test")
    [alert] = pagerduty.alerts
    assert alert.dedup_key.startswith("backout-test-")
    assert (alert.state, alert.severity) == ("resolved", "info")
    out = capsys.readouterr().out
    assert f"resolve accepted by {pagerduty.url}/v2/enqueue (dedup key {alert.dedup_key})" in out
    assert ROUTING_KEY not in out


def test_the_test_command_with_a_wrong_key_says_why(pagerduty, settings):
    settings.PAGERDUTY_ROUTING_KEY = "k3y-0f-th3-wr0ng-l3ngth"
    with pytest.raises(CommandError, match="should be 32 characters") as raised:
        call_command("pagerduty_test", "--keep-open")
    assert "k3y-0f-th3-wr0ng-l3ngth" not in str(raised.value)
    assert pagerduty.alerts == []
