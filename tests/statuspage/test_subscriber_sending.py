"""Subscriber emails over real SMTP (tests/statuspage/smtp_server.py through Django's SMTP
backend): the whole flow from subscribing to unsubscribing, one message per recipient
filtered by component, retries on 451 and timeouts then counted as failed, claims, the
sweep, maintenance updates, and the count on the incident's timeline."""

from __future__ import annotations

import re
from datetime import timedelta
from email.header import decode_header, make_header

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.models import TimelineKind
from statuspage import conf, services, subscriber_sending, subscriptions
from statuspage.models import (
    Component,
    Maintenance,
    MaintenanceUpdate,
    Subscriber,
    SubscriberMessage,
)
from tests.factories import incident_open

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://\S+")
TEXT = "Paiement échoué — 結帳失敗 🛒 الدفع <b>bold</b>"


def body_of(received) -> str:
    return received.message.get_payload(decode=True).decode()


def subject_of(received) -> str:
    return str(make_header(decode_header(received.message["Subject"])))


def links_in(received) -> dict[str, str]:
    found = {}
    for url in LINK.findall(body_of(received)):
        for kind in ("confirm", "manage", "unsubscribe"):
            if f"/subscribe/{kind}/" in url:
                found[kind] = url
    return found


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def publish(actor, incident, components, *, notify=True, name="Checkout problems"):
    draft = services.draft_get(incident)
    return services.draft_publish(
        incident=incident,
        actor=actor,
        version=draft.version,
        name=name,
        status="investigating",
        impact="major",
        body=TEXT,
        component_statuses={str(c.pk): "partial_outage" for c in components},
        notify_subscribers=notify,
    )


def confirmed(email, *components):
    subscriber = Subscriber.objects.create(email=email, confirmed_at=timezone.now())
    subscriber.components.set(components)
    return subscriber


def entries(incident) -> list[str]:
    return [
        entry.body
        for entry in incident.timeline.filter(kind=TimelineKind.COMMS_SENT).order_by("id")
    ]


def test_subscribe_confirm_receive_by_component_then_unsubscribe_over_smtp(
    client,
    smtp,
    support_lead,
    checkout_component,
    search_component,
    django_capture_on_commit_callbacks,
    settings,
):
    settings.STATUS_PAGE_NAME = "Acme status — 状态"
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        for email, chosen in (
            ("ana@example.com", [checkout_component]),
            ("bo@example.com", [search_component]),
            ("cy@example.com", []),
        ):
            data = {"email": email, "component": [str(c.pk) for c in chosen]}
            assert client.post(reverse("status_subscribe"), data).status_code == 200
    confirmations = list(smtp.state.received)
    assert sorted(r.recipients[0] for r in confirmations) == [
        "ana@example.com",
        "bo@example.com",
        "cy@example.com",
    ]
    for received in confirmations:
        assert len(received.recipients) == 1 and received.message["Cc"] is None
        assert received.message["To"] == received.recipients[0]
        assert subject_of(received) == "[Acme status — 状态] Confirm your subscription"
        assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # Nothing but the confirmation before confirming.
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    assert len(smtp.state.received) == 3
    assert entries(incident)[-1].startswith("Update 1 not emailed")

    for received in confirmations:
        confirm = path_of(links_in(received)["confirm"])
        assert client.get(confirm).status_code == 200
        assert client.post(confirm).status_code == 200
    assert Subscriber.objects.filter(confirmed_at__isnull=False).count() == 3

    with django_capture_on_commit_callbacks(execute=True):
        revision = publish(support_lead, incident, [checkout_component])
    updates = smtp.state.received[3:]
    assert sorted(r.recipients[0] for r in updates) == ["ana@example.com", "cy@example.com"]
    for received in updates:
        assert len(received.recipients) == 1
        assert received.message["To"] == received.recipients[0]
        assert subject_of(received) == "[Acme status — 状态] Checkout problems: Investigating"
        body = body_of(received)
        assert TEXT.replace("<b>bold</b>", "") in body
        assert "Affected: Checkout" in body
        assert received.message["List-Unsubscribe"] == f"<{links_in(received)['unsubscribe']}>"
        assert "manage" in links_in(received)
        assert received.message["Content-Transfer-Encoding"] == "8bit"
    assert entries(incident)[-1] == f"Update {revision.number} sent to 2 subscribers"

    # A revision without the box ticked goes to nobody.
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component], notify=False)
    assert len(smtp.state.received) == 5

    ana_update = next(r for r in updates if r.recipients[0] == "ana@example.com")
    unsubscribe = path_of(links_in(ana_update)["unsubscribe"])
    assert client.post(unsubscribe, {"List-Unsubscribe": "One-Click"}).status_code == 200
    assert not Subscriber.objects.filter(email="ana@example.com").exists()

    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    assert [r.recipients for r in smtp.state.received[5:]] == [["cy@example.com"]]


def test_a_refused_message_is_retried_then_counted_as_failed(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks, settings
):
    confirmed("ana@example.com")
    attempts = conf.max_retries() + 1
    smtp.state.refuse_data = set(range(1, attempts + 1))  # every attempt gets a 451
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    message = SubscriberMessage.objects.get()
    assert message.state == "failed" and message.attempts == attempts
    assert message.last_error.startswith("SMTP 451")
    assert smtp.state.received == []
    assert entries(incident)[-1] == "Update 1 sent to 0 subscribers (1 failed)"
    assert "ana@example.com" not in " ".join(entries(incident))


def test_a_refusal_that_passes_is_sent_on_retry_and_counted_once(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks
):
    confirmed("ana@example.com")
    confirmed("bo@example.com")
    smtp.state.refuse_data = {1}
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    assert sorted(r.recipients[0] for r in smtp.state.received) == [
        "ana@example.com",
        "bo@example.com",
    ]
    assert sorted(SubscriberMessage.objects.values_list("attempts", flat=True)) == [1, 2]
    counted = [e for e in entries(incident) if "subscriber" in e]
    assert counted == ["Update 1 sent to 2 subscribers"]


def test_a_mail_server_that_times_out_is_retried(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks, settings
):
    settings.MAILERS = {
        "default": {
            **settings.MAILERS["default"],
            "OPTIONS": {**settings.MAILERS["default"]["OPTIONS"], "timeout": 0.5},
        }
    }
    smtp.state.slow_data = {1: 1.5}
    confirmed("ana@example.com")
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    message = SubscriberMessage.objects.get()
    assert message.state == "sent" and message.attempts == 2
    assert [r.recipients for r in smtp.state.received] == [["ana@example.com"]]


def test_a_mail_server_that_always_times_out_ends_in_failed(
    smtp, support_lead, checkout_component, settings
):
    settings.COMMS_MAX_RETRIES = 1
    settings.MAILERS = {
        "default": {
            **settings.MAILERS["default"],
            "OPTIONS": {**settings.MAILERS["default"]["OPTIONS"], "timeout": 0.2},
        }
    }
    smtp.state.slow_data = {1: 0.6, 2: 0.6}
    subscriber = confirmed("ana@example.com")
    message = SubscriberMessage.objects.create(subscriber=subscriber, kind="confirmation")
    with pytest.raises(subscriber_sending.SubscriberRetry):
        subscriber_sending.message_attempt(message_id=message.pk)
    message.refresh_from_db()
    assert message.state == "pending" and "did not answer in time" in message.last_error
    assert subscriber_sending.message_attempt(message_id=message.pk) == "failed"
    message.refresh_from_db()
    assert message.state == "failed" and message.attempts == 2


def test_a_claimed_or_sent_message_is_not_sent_again(smtp):
    subscriber = confirmed("ana@example.com")
    message = SubscriberMessage.objects.create(subscriber=subscriber, kind="confirmation")
    SubscriberMessage.objects.filter(pk=message.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=1)
    )
    assert subscriber_sending.message_attempt(message_id=message.pk) == ("pending")
    assert smtp.state.received == []
    SubscriberMessage.objects.filter(pk=message.pk).update(claimed_until=None)
    assert subscriber_sending.message_attempt(message_id=message.pk) == "sent"
    assert subscriber_sending.message_attempt(message_id=message.pk) == "sent"
    assert len(smtp.state.received) == 1


def test_the_sweep_sends_a_lost_message_and_fans_out_a_lost_update(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks
):
    subscriber = confirmed("ana@example.com")
    lost = SubscriberMessage.objects.create(
        subscriber=subscriber,
        kind="confirmation",
        created_at=timezone.now() - timedelta(minutes=3),
    )
    fresh = SubscriberMessage.objects.create(subscriber=subscriber, kind="confirmation")
    incident = incident_open()
    revision = publish(support_lead, incident, [checkout_component])  # its fan-out is lost
    assert not revision.subscriber_messages.exists()
    later = timezone.now() + timedelta(minutes=3)
    assert subscriber_sending.lost_messages(now=timezone.now()) == [lost.pk]
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriber_sending.missed_fanouts(now=later) == [revision.pk]
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert revision.subscriber_messages.get().state == "sent"
    with django_capture_on_commit_callbacks(execute=True):
        found = subscriber_sending.sweep()
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert lost.pk in found["redispatched"] and lost.state == "sent"
    assert fresh.pk not in found["redispatched"]
    assert fresh.state == "pending"  # not lost yet: its task may still come


def test_a_maintenance_update_goes_to_subscribers_of_its_components_and_group_members(
    smtp, checkout_component, search_component, django_capture_on_commit_callbacks
):
    group = Component.objects.create(name="Store", is_group=True)
    Component.objects.filter(pk=checkout_component.pk).update(group=group)
    confirmed("ana@example.com", checkout_component)
    confirmed("bo@example.com", search_component)
    confirmed("cy@example.com")
    Subscriber.objects.create(email="dee@example.com")  # not confirmed
    now = timezone.now()
    maintenance = Maintenance.objects.create(
        name="Database upgrade — 数据库",
        scheduled_for=now,
        scheduled_until=now + timedelta(hours=1),
    )
    maintenance.components.set([group])
    update = MaintenanceUpdate.objects.create(
        maintenance=maintenance,
        status="scheduled",
        body=TEXT,
        body_html="<p>x</p>",
        notify_subscribers=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriber_sending.maintenance_update_fanout(update_id=update.pk) == 2
    assert sorted(r.recipients[0] for r in smtp.state.received) == [
        "ana@example.com",
        "cy@example.com",
    ]
    received = smtp.state.received[0]
    assert "Maintenance: Database upgrade — 数据库 (Scheduled)" in subject_of(received)
    assert TEXT in body_of(received)


def test_the_desk_tickbox_sets_notify_and_the_desk_counts_confirmed_subscribers(
    client, support_lead, checkout_component
):
    confirmed("ana@example.com")
    Subscriber.objects.create(email="bo@example.com")  # not confirmed
    incident = incident_open()
    client.force_login(support_lead)
    desk = client.get(reverse("status_desk", args=[incident.pk])).content.decode()
    assert "1 confirmed subscriber," in desk and "1 not confirmed yet" in desk
    url = reverse("status_draft", args=[incident.pk])
    form = {
        "name": "Checkout problems",
        "status": "investigating",
        "impact": "major",
        "body": "Looking.",
        f"component_{checkout_component.pk}": "partial_outage",
        "action": "publish",
    }
    client.post(url, form | {"version": 0})
    client.post(url, form | {"version": 1, "notify_subscribers": "on"})
    revisions = incident.public_incident.revisions.order_by("number")
    assert [r.notify_subscribers for r in revisions] == [False, True]


def test_unsubscribing_with_the_last_unsent_message_still_counts_the_update(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks
):
    ana = confirmed("ana@example.com")
    confirmed("bo@example.com")
    incident = incident_open()
    publish(support_lead, incident, [checkout_component])  # fanned out below, not sent yet
    revision = incident.public_incident.revisions.get()
    subscriber_sending.revision_fanout(revision_id=revision.pk)
    bo_message = SubscriberMessage.objects.get(subscriber__email="bo@example.com")
    subscriber_sending.message_attempt(message_id=bo_message.pk)
    assert not [e for e in entries(incident) if "subscriber" in e]
    subscriptions.subscriber_unsubscribe(token=ana.token)
    assert entries(incident)[-1] == "Update 1 sent to 1 subscriber"


def test_a_second_fan_out_sends_nothing_even_to_a_subscriber_confirmed_since(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks
):
    confirmed("ana@example.com")
    incident = incident_open()
    revision = publish(support_lead, incident, [checkout_component])  # not fanned out yet
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriber_sending.revision_fanout(revision_id=revision.pk) == 1
    confirmed("bo@example.com")
    later = timezone.now() + timedelta(minutes=3)
    with django_capture_on_commit_callbacks(execute=True):
        # A redelivered task, the hook's fallback and the sweep all find the fan-out made.
        assert subscriber_sending.revision_fanout(revision_id=revision.pk) == 0
        assert subscriber_sending.missed_fanouts(now=later) == []
    assert [r.recipients for r in smtp.state.received] == [["ana@example.com"]]
    assert [e for e in entries(incident) if "subscriber" in e] == ["Update 1 sent to 1 subscriber"]


def test_an_update_nobody_follows_is_counted_once_however_often_it_is_fanned_out(
    support_lead, checkout_component
):
    incident = incident_open()
    revision = publish(support_lead, incident, [checkout_component])
    assert subscriber_sending.revision_fanout(revision_id=revision.pk) == 0
    assert subscriber_sending.revision_fanout(revision_id=revision.pk) == 0
    subscriber_sending.missed_fanouts(now=timezone.now() + timedelta(minutes=3))
    assert not subscriber_sending.revision_sending_finish(revision_id=revision.pk)
    assert entries(incident) == [
        "Update 1 not emailed: no confirmed subscriber follows its components"
    ]


def test_an_update_whose_messages_were_all_unsubscribed_is_counted_once(
    support_lead, checkout_component
):
    ana = confirmed("ana@example.com")
    bo = confirmed("bo@example.com")
    incident = incident_open()
    revision = publish(support_lead, incident, [checkout_component])
    subscriber_sending.revision_fanout(revision_id=revision.pk)
    subscriptions.subscriber_unsubscribe(token=ana.token)
    subscriptions.subscriber_unsubscribe(token=bo.token)
    assert not subscriber_sending.revision_sending_finish(revision_id=revision.pk)
    assert entries(incident) == ["Update 1 sent to 0 subscribers"]


def test_a_resolved_update_without_component_states_reaches_the_incidents_subscribers(
    smtp, support_lead, checkout_component, search_component, django_capture_on_commit_callbacks
):
    confirmed("ana@example.com", checkout_component)
    confirmed("bo@example.com", search_component)
    incident = incident_open()
    publish(support_lead, incident, [checkout_component], notify=False)
    draft = services.draft_get(incident)
    with django_capture_on_commit_callbacks(execute=True):
        services.draft_publish(
            incident=incident,
            actor=support_lead,
            version=draft.version,
            name="Checkout problems",
            status="resolved",
            impact="major",
            body="Fixed.",
            component_statuses={},
            notify_subscribers=True,
        )
    assert [r.recipients for r in smtp.state.received] == [["ana@example.com"]]
    assert "Affected: Checkout" in body_of(smtp.state.received[0])


def test_every_attempt_of_a_message_carries_the_same_message_id(
    smtp, support_lead, checkout_component, django_capture_on_commit_callbacks, settings
):
    settings.STATUS_PAGE_URL = "https://status.acme.test/"
    confirmed("ana@example.com")
    smtp.state.refuse_data = {1}
    incident = incident_open()
    with django_capture_on_commit_callbacks(execute=True):
        publish(support_lead, incident, [checkout_component])
    message = SubscriberMessage.objects.get()
    expected = f"<subscriber-message-{message.pk}@status.acme.test>"
    assert message.attempts == 2
    assert smtp.state.received[0].message["Message-ID"] == expected
    assert subscriber_sending.message_email(message).message()["Message-ID"] == expected


def test_the_retry_cap_counts_the_messages_attempts_not_the_tasks_retries(smtp, settings):
    settings.COMMS_MAX_RETRIES = 2
    smtp.state.refuse_data = {1}
    subscriber = confirmed("ana@example.com")
    message = SubscriberMessage.objects.create(subscriber=subscriber, kind="confirmation")
    # Two attempts made before the sweep handed it to a fresh task (whose retries start at 0).
    SubscriberMessage.objects.filter(pk=message.pk).update(attempts=2, last_error="SMTP 451")
    assert subscriber_sending.message_attempt(message_id=message.pk) == "failed"
    message.refresh_from_db()
    assert message.state == "failed" and message.attempts == 3


def test_a_claim_is_judged_by_the_databases_clock(smtp, monkeypatch):
    subscriber = confirmed("ana@example.com")
    message = SubscriberMessage.objects.create(subscriber=subscriber, kind="confirmation")
    SubscriberMessage.objects.filter(pk=message.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=1)
    )
    # A worker whose clock runs ten minutes fast must not take a claim still held.
    fast = timezone.now() + timedelta(minutes=10)
    monkeypatch.setattr(subscriber_sending.timezone, "now", lambda: fast)
    assert subscriber_sending.message_attempt(message_id=message.pk) == "pending"
    assert smtp.state.received == []


@pytest.mark.parametrize(
    ("reply", "stored"),
    [
        (
            "5.1.1 <ana@example.com>: Recipient address rejected",
            "5.1.1 <address>: Recipient address rejected",
        ),
        ("mailbox bo.x+tag@例え.jp is full", "mailbox <address> is full"),
        ("try again later", "try again later"),
    ],
)
def test_addresses_are_stripped_from_smtp_errors(reply, stored):
    assert subscriber_sending.error_text(reply) == stored


def test_the_sweep_deletes_subscribers_left_unconfirmed(settings):
    settings.STATUS_SUBSCRIBER_UNCONFIRMED_DAYS = 7
    old = timezone.now() - timedelta(days=8)
    Subscriber.objects.create(email="stale@example.com", created_at=old, confirmation_sent_at=old)
    Subscriber.objects.create(email="asked-again@example.com", created_at=old)
    Subscriber.objects.filter(email="asked-again@example.com").update(
        confirmation_sent_at=timezone.now() - timedelta(days=1)
    )
    Subscriber.objects.create(email="fresh@example.com")
    Subscriber.objects.create(email="kept@example.com", created_at=old, confirmed_at=old)
    found = subscriber_sending.sweep()
    assert len(found["purged"]) == 1
    assert sorted(Subscriber.objects.values_list("email", flat=True)) == [
        "asked-again@example.com",
        "fresh@example.com",
        "kept@example.com",
    ]


def test_a_maintenance_update_is_fanned_out_once_and_links_to_its_page(
    smtp, checkout_component, django_capture_on_commit_callbacks, settings
):
    settings.STATUS_PAGE_URL = "https://status.acme.test/"
    confirmed("ana@example.com")
    now = timezone.now()
    maintenance = Maintenance.objects.create(
        name="Database upgrade", scheduled_for=now, scheduled_until=now + timedelta(hours=1)
    )
    maintenance.components.set([checkout_component])
    update = MaintenanceUpdate.objects.create(
        maintenance=maintenance,
        status="scheduled",
        body="Planned.",
        body_html="<p>Planned.</p>",
        notify_subscribers=True,
    )
    later = now + timedelta(minutes=3)
    with django_capture_on_commit_callbacks(execute=True):
        subscriber_sending.missed_fanouts(now=later)  # the lost fan-out, made by the sweep
    confirmed("bo@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        subscriber_sending.missed_fanouts(now=later)
        assert subscriber_sending.maintenance_update_fanout(update_id=update.pk) == 0
    assert [r.recipients for r in smtp.state.received] == [["ana@example.com"]]
    link = f"https://status.acme.test/maintenances/{maintenance.pk}"
    assert link in body_of(smtp.state.received[0])


def test_the_desk_says_nothing_is_emailed_when_no_confirmed_subscriber_follows(
    client, support_lead, checkout_component
):
    Subscriber.objects.create(email="bo@example.com")  # not confirmed
    incident = incident_open()
    client.force_login(support_lead)
    form = {
        "name": "Checkout problems",
        "status": "investigating",
        "impact": "major",
        "body": "Looking.",
        f"component_{checkout_component.pk}": "partial_outage",
        "action": "publish",
        "version": 0,
        "notify_subscribers": "on",
    }
    response = client.post(
        reverse("status_draft", args=[incident.pk]), form, HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert "No confirmed subscriber follows its components: nothing is emailed." in page
    assert "Emailing it to" not in page
