"""Send a test event to PagerDuty with the console's settings (PAGERDUTY_ROUTING_KEY,
PAGERDUTY_EVENTS_URL), to see that notices will page:

manage.py pagerduty_test                 a trigger (severity info), then its resolve
manage.py pagerduty_test --keep-open     the trigger alone: resolve it in PagerDuty
manage.py pagerduty_test --summary "Backout test from the staging console"

The test alert has a dedup key of its own (`backout-test-<random>`), never an incident's.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from statuspage import conf, pagerduty
from statuspage.delivery_errors import DeliveryError


class Command(BaseCommand):
    help = "Send a test event (trigger, then resolve) to PagerDuty's Events API v2."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--summary",
            default="Backout test event: the console can page this service",
            help="the test alert's summary (at most 1024 characters are sent)",
        )
        parser.add_argument(
            "--keep-open", action="store_true", help="send the trigger only, no resolve"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = f"backout-test-{uuid.uuid4().hex[:12]}"
        url = conf.pagerduty_events_url()
        actions = ["trigger"] if options["keep_open"] else ["trigger", "resolve"]
        for action in actions:
            try:
                answered = pagerduty.probe_event_send(
                    action=action, key=key, summary=options["summary"]
                )
            except DeliveryError as error:
                again = " (worth trying again)" if error.retryable else ""
                raise CommandError(f"{action} to {url} failed{again}: {error}") from None
            self.stdout.write(f"{action} accepted by {url} (dedup key {answered})")
