"""The debug error page shows no credential: not the database URL, not the Slack webhook
URL, not a registered command's environment, not a password inside any other URL."""

from __future__ import annotations

import sys

from django.test import RequestFactory
from django.views.debug import technical_500_response

SECRETS = {
    "DATABASE_URL": "postgres://backout:db-pass-123456@db:5432/backout",
    "CELERY_BROKER_URL": "redis://:broker-pass-123456@redis:6379/0",
    "COMMS_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/hook-secret-123456",
    "REGISTERED_COMMANDS": {"migrate": {"argv": ["x"], "env": {"PGPASSWORD": "pg-pass-123456"}}},
    "PROMETHEUS_URL": "https://metrics:prom/pass@123456@prometheus.internal",
}


def configure(settings) -> None:
    """Out of the test's frame: the page shows the failing frame's local variables."""
    settings.DEBUG = True
    for name, value in SECRETS.items():
        setattr(settings, name, value)


def test_the_debug_page_hides_credentials_whatever_the_setting_is_called(settings):
    configure(settings)
    request = RequestFactory().get("/boom")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()

    assert "RuntimeError" in page and "DATABASE_URL" in page
    for leaked in ("db-pass-", "broker-pass-", "hook-secret-", "pg-pass-", "prom/pass@"):
        assert f"{leaked}123456" not in page, leaked
    assert "https://metrics:********************@prometheus.internal" in page
