"""The status page's and communications' settings, read at call time (a test's `settings`
fixture takes effect at once). Their defaults are written once, in console/settings.py,
where the environment is read."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings


def page_name() -> str:
    """The public page's title (STATUS_PAGE_NAME)."""
    return str(settings.STATUS_PAGE_NAME)


def page_id() -> str:
    """The page id in the Statuspage-shaped JSON (STATUS_PAGE_ID)."""
    return str(settings.STATUS_PAGE_ID)


def page_url() -> str:
    """The public page's address when the console sits behind a proxy (STATUS_PAGE_URL)."""
    return str(settings.STATUS_PAGE_URL or "")


def logo_url() -> str:
    """The logo shown at the top of the public pages, or "" (STATUS_PAGE_LOGO_URL)."""
    return str(settings.STATUS_PAGE_LOGO_URL or "").strip()


def homepage_url() -> str:
    """Where the public pages' logo or name links, or "" for the page itself
    (STATUS_PAGE_HOMEPAGE_URL)."""
    return str(settings.STATUS_PAGE_HOMEPAGE_URL or "").strip()


def brand_color() -> str:
    """The public pages' brand colour as written (STATUS_PAGE_BRAND_COLOR); statuspage.checks
    refuses one that is not a hex colour at start-up, statuspage.branding reads it."""
    return str(settings.STATUS_PAGE_BRAND_COLOR or "").strip()


def console_base_url() -> str:
    """Where links in notices point (CONSOLE_BASE_URL), without a trailing slash."""
    return str(settings.CONSOLE_BASE_URL).rstrip("/")


def slack_webhook_url() -> str:
    """The Slack incoming webhook internal notices go to, or "" (COMMS_SLACK_WEBHOOK_URL)."""
    return str(settings.COMMS_SLACK_WEBHOOK_URL or "")


def pagerduty_routing_key() -> str:
    """The Events API v2 integration key internal notices page with, or "" (a secret:
    PAGERDUTY_ROUTING_KEY)."""
    return str(settings.PAGERDUTY_ROUTING_KEY or "").strip()


def pagerduty_events_url() -> str:
    """Where PagerDuty events are posted (PAGERDUTY_EVENTS_URL)."""
    return str(settings.PAGERDUTY_EVENTS_URL).strip()


def email_to() -> list[str]:
    """The addresses internal notices go to (COMMS_EMAIL_TO)."""
    return list(settings.COMMS_EMAIL_TO)


def email_from() -> str | None:
    """The sender of notice emails, or None for Django's DEFAULT_FROM_EMAIL."""
    return str(settings.COMMS_EMAIL_FROM) or None


def customer_email_to() -> list[str]:
    """The default recipients offered for a customer notice (COMMS_CUSTOMER_EMAIL_TO)."""
    return list(settings.COMMS_CUSTOMER_EMAIL_TO)


def customer_max_recipients() -> int:
    """The most addresses one customer notice may go to (COMMS_CUSTOMER_MAX_RECIPIENTS)."""
    return int(settings.COMMS_CUSTOMER_MAX_RECIPIENTS)


def email_batch_size() -> int:
    """Recipients per email message; customers are always in Bcc (COMMS_EMAIL_BATCH_SIZE)."""
    return max(1, int(settings.COMMS_EMAIL_BATCH_SIZE))


def timeout_seconds() -> float:
    """How long one Slack or email send may take (COMMS_TIMEOUT_SECONDS)."""
    return float(settings.COMMS_TIMEOUT_SECONDS)


def subscriber_unconfirmed_days() -> int:
    """Days an unconfirmed subscriber is kept after its confirmation email
    (STATUS_SUBSCRIBER_UNCONFIRMED_DAYS)."""
    return max(1, int(settings.STATUS_SUBSCRIBER_UNCONFIRMED_DAYS))


def max_retries() -> int:
    """Automatic retries of a failed delivery (COMMS_MAX_RETRIES)."""
    return int(settings.COMMS_MAX_RETRIES)


def retry_backoff_seconds() -> float:
    """The first retry's delay; each further one doubles it (COMMS_RETRY_BACKOFF_SECONDS)."""
    return float(settings.COMMS_RETRY_BACKOFF_SECONDS)


def cadence() -> timedelta:
    """How long a public status may go without an update before the desk reminds."""
    return timedelta(minutes=float(settings.COMMS_CADENCE_MINUTES))


def progress_every() -> timedelta:
    """How often a progress notice goes out while a run runs (COMMS_PROGRESS_MINUTES)."""
    return timedelta(minutes=float(settings.COMMS_PROGRESS_MINUTES))


def customer_notice_after() -> timedelta:
    """The outage length after which a customer notice opens (CUSTOMER_NOTICE_AFTER_MINUTES)."""
    return timedelta(minutes=float(settings.CUSTOMER_NOTICE_AFTER_MINUTES))
