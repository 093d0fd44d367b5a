"""A customer notice to many addresses over real SMTP: customers are in Bcc, a few dozen to
a message, never in a header another customer sees; a batch the server refuses is retried
without sending the earlier batches twice; the count is on the timeline; too many addresses
are refused before anything is written."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from incidents.errors import DomainError
from incidents.models import TimelineKind
from statuspage import comms
from statuspage.models import Delivery, DeliveryState, Notice
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

CUSTOMERS = [f"customer{number:03}@example.com" for number in range(120)]


def long_outage():
    now = timezone.now()
    return incident_open(
        started_at=now - timedelta(minutes=45), detected_at=now - timedelta(minutes=40)
    )


def send(support_lead, incident, recipients):
    return comms.customer_notice_send(
        incident=incident,
        actor=support_lead,
        subject="Checkout is failing — 結帳失敗 🛒 التسجيل",
        body="We are rolling back.",
        recipients=recipients,
        confirmed=True,
    )


def attempt(notice: Notice) -> str:
    delivery = notice.deliveries.get()
    try:
        return comms.delivery_attempt(delivery_id=delivery.pk, final_attempt=False)
    except comms.DeliveryRetry:
        return "retry"


def test_customers_are_sent_bcc_in_batches_and_each_once_across_a_retry(
    support_lead, smtp, settings
):
    settings.COMMS_EMAIL_BATCH_SIZE = 50
    smtp.state.refuse_data = {2}  # the second message is refused once
    incident = long_outage()
    notice = send(support_lead, incident, CUSTOMERS)

    assert attempt(notice) == "retry"
    delivery = Delivery.objects.get(notice=notice)
    assert delivery.state == DeliveryState.FAILED and delivery.recipients_done == 50
    assert "50 of 120 sent, the rest on retry" in delivery.last_error
    assert attempt(notice) == DeliveryState.SENT

    received = smtp.state.received
    assert [len(mail.recipients) for mail in received] == [50, 50, 20]
    everyone = [address for mail in received for address in mail.recipients]
    assert sorted(everyone) == CUSTOMERS  # each exactly once
    for mail in received:
        assert mail.message["To"] == "undisclosed-recipients:;"
        assert mail.message["Bcc"] is None and mail.message["Cc"] is None
        assert "customer" not in str(mail.message)  # no address in any header or body
    entries = [e.body for e in incident.timeline.filter(kind=TimelineKind.COMMS_SENT)]
    assert entries[0].endswith("queued for 120 recipient(s)")
    assert entries[-1].endswith("sent to email to 120 recipient(s), Bcc, in 3 message(s)")


def test_running_out_of_time_mid_send_is_retried_from_where_it_stopped(
    support_lead, smtp, settings
):
    """Celery's soft time limit arrives as a signal that raises SoftTimeLimitExceeded in
    whatever runs; here a timer does the same while the server sits on the second batch."""
    settings.COMMS_EMAIL_BATCH_SIZE = 50
    smtp.state.slow_data = {2: 1.5}
    notice = send(support_lead, long_outage(), CUSTOMERS)

    def time_is_up(signum, frame):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, time_is_up)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        assert attempt(notice) == "retry"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    delivery = Delivery.objects.get(notice=notice)
    assert delivery.state == DeliveryState.FAILED and delivery.will_retry
    assert delivery.recipients_done == 50 and delivery.claimed_until is None
    assert delivery.last_error == "the send ran out of time; 50 of 120 sent, the rest on retry"
    assert attempt(notice) == DeliveryState.SENT
    everyone = [address for mail in smtp.state.received for address in mail.recipients]
    assert sorted(everyone) == CUSTOMERS


def test_too_many_recipients_are_refused_naming_the_field(support_lead, settings):
    settings.COMMS_CUSTOMER_MAX_RECIPIENTS = 100
    with pytest.raises(
        DomainError, match=r"^Recipients: at most 100 addresses for one notice \(120 given\)"
    ):
        send(support_lead, long_outage(), CUSTOMERS)
    assert not Notice.objects.exists()


def test_colleagues_still_get_one_message_addressed_to_them(smtp, settings):
    settings.COMMS_EMAIL_TO = ["oncall@example.com", "lead@example.com"]
    notice = comms.notice_create(
        incident=incident_open(),
        kind="rollback_started",
        dedupe_key="manual:1",
        subject="Rollback #1 started",
        body="Steps: checkout → v1.4.0",
        channels=comms.internal_channels(),
    )
    assert notice is not None
    assert attempt(notice) == DeliveryState.SENT
    [mail] = smtp.state.received
    assert mail.message["To"] == "oncall@example.com, lead@example.com"
