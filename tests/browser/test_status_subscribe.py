"""A visitor subscribes on the public page in Chromium, follows the confirmation link taken
from the email a real SMTP server received, presses Confirm, receives the update the support
lead publishes with "notify subscribers" ticked, and follows its unsubscribe link."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from console.celery import app as celery_app
from statuspage.models import Component, Subscriber
from tests.celery_conf import celery_conf_set
from tests.chromium import log_in
from tests.factories import ServiceFactory, UserFactory, incident_open
from tests.statuspage.smtp_server import Received, SmtpServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def smtp(settings) -> Iterator[SmtpServer]:
    """A real SMTP server as Django's mailer, Celery eager, the rates counted in memory."""
    server = SmtpServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server.port, "timeout": 5},
        }
    }
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    eager = celery_app.conf.task_always_eager
    celery_conf_set(celery_app, task_always_eager=True)
    yield server
    celery_conf_set(celery_app, task_always_eager=eager)
    server.shutdown()
    server.server_close()


def mail_for(server: SmtpServer, address: str, count: int) -> list[Received]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [r for r in server.state.received if r.recipients == [address]]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} email(s) to {address} did not arrive")


def link_in(received: Received, kind: str) -> str:
    payload = received.message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    body = payload.decode()
    return next(word for word in body.split() if f"/subscribe/{kind}/" in word)


def test_a_visitor_subscribes_confirms_receives_an_update_and_unsubscribes(
    live_server, browser, page, roles, smtp, settings
):
    settings.CONSOLE_BASE_URL = live_server.url
    UserFactory(username="sam", password="tell-them-early", roles=["Support Lead"])
    service = ServiceFactory(name="checkout")
    checkout = Component.objects.create(name="Checkout", position=1)
    checkout.services.set([service])
    Component.objects.create(name="Search", position=2)
    incident = incident_open(title="Checkout errors", services=[service])

    visitor = browser.new_context()
    public = visitor.new_page()
    public.goto(f"{live_server.url}/status/")
    form = public.locator("#subscribe")
    form.get_by_label("Email address").fill("ana@example.com")
    form.get_by_label("Checkout").check()
    form.get_by_role("button", name="Subscribe").click()
    expect(public.locator("#subscribe-sent")).to_contain_text("ana@example.com")

    (confirmation,) = mail_for(smtp, "ana@example.com", 1)
    public.goto(link_in(confirmation, "confirm"))
    assert Subscriber.objects.get().confirmed_at is None  # opening the link is not enough
    public.get_by_role("button", name="Confirm").click()
    expect(public.locator("#subscribe-confirmed")).to_contain_text("ana@example.com")
    assert Subscriber.objects.get().confirmed_at is not None

    log_in(page, live_server.url, "sam", "tell-them-early")
    page.goto(f"{live_server.url}/incidents/{incident.pk}/status-page/")
    expect(page.locator("#notify-subscribers")).to_contain_text("1 confirmed subscriber")
    page.get_by_label("Public name").fill("Payments failing — 決済")
    page.get_by_label("Checkout").select_option("partial_outage")
    page.get_by_label("Update (Markdown)").fill("We are rolling back.")
    page.get_by_label("Notify subscribers by email when publishing").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#desk-flash")).to_contain_text("Emailing it to 1 confirmed subscriber.")

    confirmation, update = mail_for(smtp, "ana@example.com", 2)
    assert "We are rolling back." in update.message.get_payload(decode=True).decode()
    public.goto(link_in(update, "unsubscribe"))
    public.get_by_role("button", name="Unsubscribe").click()
    expect(public.locator("#unsubscribed")).to_be_visible()
    assert not Subscriber.objects.exists()
    visitor.close()
