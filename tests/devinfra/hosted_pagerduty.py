"""Fixtures of the pagerduty stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import LazySettings

from devinfra.hosted.pagerduty import PagerDutyStandin

ROUTING_KEY = "r0ut1ngk3y0fth3t3st1nt3grat10n00"


@pytest.fixture
def pagerduty_standin() -> Iterator[PagerDutyStandin]:
    """The Events API v2 stand-in on a free port, accepting ROUTING_KEY."""
    standin = PagerDutyStandin(ROUTING_KEY).start()
    yield standin
    standin.stop()


@pytest.fixture
def pagerduty(pagerduty_standin: PagerDutyStandin, settings: LazySettings) -> PagerDutyStandin:
    """The stand-in, with the console's PagerDuty channel configured to page it."""
    settings.PAGERDUTY_ROUTING_KEY = ROUTING_KEY
    settings.PAGERDUTY_EVENTS_URL = f"{pagerduty_standin.url}/v2/enqueue"
    return pagerduty_standin
