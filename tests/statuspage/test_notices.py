"""Internal and customer notices: a real local webhook server (that can fail), Django's
locmem email, Celery's retry machinery run eagerly, and the timeline record of each send."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

import rollbacks.services
from incidents import services as incident_services
from incidents.errors import DomainError, PermissionDenied
from incidents.models import TimelineKind
from rollbacks.models import Run, RunState
from statuspage import comms, services
from statuspage.models import Delivery, Notice
from tests.factories import ReleaseFactory, ServiceFactory, UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _notice(incident, key="manual:1"):
    return comms.notice_create(
        incident=incident,
        kind="rollback_started",
        dedupe_key=key,
        subject="Rollback #1 started",
        body="Steps: checkout → v1.4.0",
        channels=comms.internal_channels(),
    )


def _comms_entries(incident):
    return list(incident.timeline.filter(kind=TimelineKind.COMMS_SENT).order_by("id"))


def test_a_notice_is_posted_to_the_webhook_and_recorded_on_the_timeline(
    webhook, django_capture_on_commit_callbacks
):
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert (delivery.state, delivery.attempts) == ("sent", 1)
    assert webhook.received == [{"text": "*Rollback #1 started*\nSteps: checkout → v1.4.0"}]
    [entry] = _comms_entries(incident)
    assert entry.body.endswith("sent to Slack")
    assert entry.payload["outcome"] == "sent"


def test_a_webhook_answering_500_is_retried_by_celery_until_it_goes_through(
    webhook, django_capture_on_commit_callbacks
):
    webhook.answers = [500, 503]
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(webhook.received) == 3
    bodies = [entry.body for entry in _comms_entries(incident)]
    assert (
        "failed (attempt 1): the webhook answered HTTP 500: upstream trouble; retrying" in bodies[0]
    )
    assert "failed (attempt 2): the webhook answered HTTP 503" in bodies[1]
    assert bodies[2].endswith("sent to Slack")


def test_a_delivery_that_keeps_failing_stays_failed_and_visible_until_retried_by_hand(
    webhook, support_lead, django_capture_on_commit_callbacks
):
    webhook.answers = [500] * 6
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert delivery.state == "failed" and not delivery.will_retry
    assert delivery.attempts == 6  # the first try and COMMS_MAX_RETRIES retries
    assert "HTTP 500" in delivery.last_error
    assert "not retried automatically" in _comms_entries(incident)[-1].body

    with django_capture_on_commit_callbacks(execute=True):
        comms.delivery_retry(delivery=delivery, actor=support_lead)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 7)


def test_a_client_error_from_the_webhook_is_not_retried(
    webhook, django_capture_on_commit_callbacks
):
    webhook.answers = [404]
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert (delivery.state, delivery.attempts, delivery.will_retry) == ("failed", 1, False)


def test_a_webhook_answer_quoting_its_secret_path_has_it_masked(
    webhook, django_capture_on_commit_callbacks
):
    webhook.answers, webhook.echo_path = [404], True
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert delivery.last_error == "the webhook answered HTTP 404: no_service: **** (****)"
    recorded = " ".join(e.body + str(e.payload) for e in _comms_entries(incident))
    assert "secret" not in recorded + delivery.last_error


def test_a_webhook_answer_in_latin_1_is_quoted_as_written(
    webhook, django_capture_on_commit_callbacks
):
    webhook.answers, webhook.answer_body = [400], "Kanal gelöscht".encode("latin-1")
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    assert notice.deliveries.get().last_error == "the webhook answered HTTP 400: Kanal gelöscht"


def test_an_unreachable_webhook_fails_without_revealing_its_secret_url(
    settings, django_capture_on_commit_callbacks
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.COMMS_SLACK_WEBHOOK_URL = f"http://127.0.0.1:{port}/services/T1/B1/secret-token"
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    delivery = notice.deliveries.get()
    assert delivery.state == "failed"
    assert "could not reach the webhook" in delivery.last_error
    recorded = " ".join(e.body + str(e.payload) for e in _comms_entries(incident))
    assert "secret-token" not in recorded and "secret-token" not in delivery.last_error


def test_internal_notices_go_by_email_to_the_configured_addresses(
    settings, django_capture_on_commit_callbacks
):
    settings.COMMS_EMAIL_TO = ["oncall@example.com", "support@example.com"]
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        notice = _notice(incident)
    assert notice.deliveries.get().state == "sent"
    [message] = mail.outbox
    assert message.subject == "Rollback #1 started"
    assert message.to == ["oncall@example.com", "support@example.com"]
    assert "sent to email to 2 recipient(s)" in _comms_entries(incident)[0].body


def test_without_any_channel_the_notice_is_kept_and_the_timeline_says_so():
    incident = incident_open()
    notice = _notice(incident)
    assert not notice.deliveries.exists()
    assert "no channel is configured" in _comms_entries(incident)[0].body


def test_a_notice_is_written_once_per_dedupe_key(webhook):
    incident = incident_open()
    assert _notice(incident, key="run:5:started") is not None
    assert _notice(incident, key="run:5:started") is None
    assert Notice.objects.count() == 1


def test_the_sweep_sends_deliveries_whose_task_message_was_lost(webhook):
    incident = incident_open()
    notice = _notice(incident)  # on_commit never runs here: the message is "lost"
    delivery = notice.deliveries.get()
    assert delivery.state == "pending"
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    comms.redispatch_lost(now=timezone.now() + timedelta(minutes=3))
    delivery.refresh_from_db()
    assert delivery.state == "sent"


# -- rollback notices -------------------------------------------------------------------------


@pytest.fixture
def started_run(roles, webhook, django_capture_on_commit_callbacks):
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
    return run, commander, webhook


def test_starting_a_rollback_sends_a_start_notice_built_from_the_incident(started_run):
    run, _, webhook = started_run
    notice = Notice.objects.get(run=run)
    assert notice.kind == "rollback_started"
    assert notice.subject == f"[P2] Rollback #{run.pk} started: Checkout errors"
    assert "new-checkout → off" in notice.body
    assert webhook.received[0]["text"].startswith(f"*[P2] Rollback #{run.pk} started")
    assert notice.deliveries.get().state == "sent"


def test_cancelling_a_started_rollback_sends_the_completion_notice(
    started_run, django_capture_on_commit_callbacks
):
    run, commander, _ = started_run
    with django_capture_on_commit_callbacks(execute=True):
        rollbacks.services.run_cancel(run=run, actor=commander, reason="flag fixed it")
    finished = Notice.objects.get(run=run, kind="rollback_finished")
    assert f"Rollback #{run.pk} cancelled" in finished.subject


def test_the_sweep_sends_the_completion_notice_of_a_run_the_engine_finished(started_run):
    run, _, _ = started_run
    Run.objects.filter(pk=run.pk).update(state=RunState.SUCCEEDED, finished_at=timezone.now())
    assert comms.sweep()["missed"] == [run.pk]
    assert "succeeded" in Notice.objects.get(run=run, kind="rollback_finished").subject
    assert comms.sweep()["missed"] == []


def test_a_running_rollback_gets_a_progress_notice_every_interval(started_run, settings):
    run, _, _ = started_run
    settings.COMMS_PROGRESS_MINUTES = 0.01  # 0.6 s
    assert comms.progress_notices() == []
    time.sleep(0.7)
    assert comms.progress_notices() == [run.pk]
    assert comms.progress_notices() == []
    progress = Notice.objects.get(run=run, kind="rollback_progress")
    assert "0 of 1 step(s) finished" in progress.body


def test_two_sweeps_that_found_the_same_last_notice_write_one_progress_notice(started_run):
    # Two beats by mistake: the second sweep decided on the notice the first one followed,
    # and asks after the first has written (and committed) its progress notice.
    run, _, _ = started_run
    last = Notice.objects.filter(run=run).latest("created_at").created_at
    first = comms.run_event_notice(run_id=run.pk, event="progress", after=last)
    second = comms.run_event_notice(run_id=run.pk, event="progress", after=last)
    assert first is not None and second is None
    assert Notice.objects.filter(run=run, kind="rollback_progress").count() == 1


def test_dry_runs_send_no_notices(roles, webhook, django_capture_on_commit_callbacks):
    commander = UserFactory(roles=["Incident Commander"])
    flag = ServiceFactory(
        backend="feature_flag",
        target_config={"store": "redis", "flag": "x", "key_prefix": "test:flags:"},
    )
    incident = incident_open(services=[flag])
    run = rollbacks.services.run_create(
        incident=incident,
        steps=[rollbacks.services.StepSpec(service=flag, params={"state": "off"})],
        actor=commander,
        dry_run=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        rollbacks.services.run_confirm_and_start(
            run=run, actor=commander, confirmation=flag.name, enqueue=False
        )
    assert not Notice.objects.exists()


# -- cadence reminder ---------------------------------------------------------------------------


@pytest.fixture
def mitigating(roles, settings):
    settings.COMMS_CADENCE_MINUTES = 0.01  # 0.6 s
    commander = UserFactory(roles=["Incident Commander"])
    incident = incident_open()
    return incident_services.incident_change_status(
        incident=incident, to_status="mitigating", actor=commander
    )


def _reminders(incident):
    return incident.timeline.filter(kind=TimelineKind.REMINDER).count()


def test_the_support_lead_is_reminded_once_per_quiet_cadence_while_mitigating(mitigating):
    assert comms.cadence_remind() == []
    time.sleep(0.7)
    assert comms.cadence_remind() == [mitigating.pk]
    assert comms.cadence_remind() == []
    assert "No status-page update for" in mitigating.timeline.filter(kind="reminder").get().body
    time.sleep(0.7)
    assert comms.cadence_remind() == [mitigating.pk]
    assert _reminders(mitigating) == 2


def test_publishing_an_update_restarts_the_cadence(mitigating, support_lead):
    time.sleep(0.7)
    services.draft_publish(
        incident=mitigating,
        actor=support_lead,
        version=0,
        name="Checkout",
        status="identified",
        impact="minor",
        body="Fix on its way.",
        component_statuses={},
    )
    assert comms.cadence_remind() == []
    assert comms.update_overdue_since(mitigating) is None


def test_no_reminder_unless_the_incident_is_mitigating(roles, settings):
    settings.COMMS_CADENCE_MINUTES = 0.01
    incident_open()
    time.sleep(0.7)
    assert comms.cadence_remind() == []


# -- customer notice ----------------------------------------------------------------------------


def _long_outage():
    now = timezone.now()
    return incident_open(
        started_at=now - timedelta(minutes=45), detected_at=now - timedelta(minutes=40)
    )


def test_the_customer_notice_draft_is_built_from_the_incident(checkout_component):
    incident = _long_outage()
    incident.services.add(checkout_component.service)
    subject, body = comms.customer_notice_draft(incident)
    assert subject == "Service disruption affecting Checkout"
    assert "about 45 minutes" in body


def test_a_customer_notice_before_the_threshold_is_refused(support_lead):
    with pytest.raises(DomainError, match="longer than 30 minutes"):
        comms.customer_notice_send(
            incident=incident_open(),
            actor=support_lead,
            subject="s",
            body="b",
            recipients=["a@example.com"],
            confirmed=True,
        )
    assert not Notice.objects.exists()


def test_a_customer_notice_needs_an_explicit_confirmation(support_lead):
    with pytest.raises(DomainError, match="Confirm"):
        comms.customer_notice_send(
            incident=_long_outage(),
            actor=support_lead,
            subject="s",
            body="b",
            recipients=["a@example.com"],
            confirmed=False,
        )


def test_only_the_support_lead_sends_customer_notices(roles):
    responder = UserFactory(roles=["Responder"])
    with pytest.raises(PermissionDenied):
        comms.customer_notice_send(
            incident=_long_outage(),
            actor=responder,
            subject="s",
            body="b",
            recipients=["a@example.com"],
            confirmed=True,
        )


def test_the_edited_customer_notice_is_emailed_and_recorded(
    support_lead, django_capture_on_commit_callbacks
):
    incident = _long_outage()
    with django_capture_on_commit_callbacks(execute=True):
        comms.customer_notice_send(
            incident=incident,
            actor=support_lead,
            subject="Our apologies",
            body="Edited by Sam.",
            recipients=["b@example.com", "a@example.com"],
            confirmed=True,
        )
    [message] = mail.outbox
    assert (message.subject, message.body) == ("Our apologies", "Edited by Sam.")
    assert message.to == [] and message.bcc == ["a@example.com", "b@example.com"]
    bodies = [entry.body for entry in _comms_entries(incident)]
    assert bodies[0] == "Customer notice “Our apologies” queued for 2 recipient(s)"
    assert "sent to email to 2 recipient(s), Bcc, in 1 message(s)" in bodies[1]


@pytest.mark.django_db(transaction=True)
def test_the_engine_finishing_a_rollback_sends_the_completion_notice_at_once(started_run):
    from rollbacks.engine.inline import run_inline

    run, _, webhook = started_run
    run_inline(run.pk)
    assert Run.objects.get(pk=run.pk).state == RunState.SUCCEEDED
    # Written when the engine's transaction committed (the texts may be the fallbacks: a
    # transactional test runs without the data migration's templates).
    assert Notice.objects.filter(run=run, kind="rollback_finished").count() == 1
    assert comms.sweep()["missed"] == []  # nothing was left for the sweep


def test_a_notice_for_a_run_that_does_not_exist_is_skipped_with_a_warning(caplog):
    assert comms.run_event_notice(run_id=987654, event="finished") is None
    assert "no such run" in caplog.text
    assert not Notice.objects.exists()
