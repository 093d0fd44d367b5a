"""Fixtures of the sentry stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devinfra.hosted.sentry import SentryStandin

SENTRY_TOKEN_ENV = "BACKOUT_TEST_SENTRY_TOKEN"
SENTRY_ORGANIZATION = "acme"


@pytest.fixture
def sentry(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentryStandin]:
    """A started Sentry stand-in with organization acme and its projects web and api, no
    errors yet; its token is in the environment as BACKOUT_TEST_SENTRY_TOKEN."""
    standin = SentryStandin(token="sntrys_test_7c1e0d2a9b")
    standin.start()
    for project in ("web", "api"):
        standin.add_project(SENTRY_ORGANIZATION, project)
    monkeypatch.setenv(SENTRY_TOKEN_ENV, standin.token)
    yield standin
    standin.stop()


@pytest.fixture
def sentry_spec(sentry: SentryStandin) -> dict[str, Any]:
    """A sentry_errors check spec on acme/web through the stand-in: at most 3 errors in
    5 minutes, one try per call."""
    return {
        "kind": "sentry_errors",
        "organization": SENTRY_ORGANIZATION,
        "project": "web",
        "environment": "production",
        "query": "level:error",
        "window": 5,
        "threshold": 3,
        "api_url": sentry.url,
        "token_env": SENTRY_TOKEN_ENV,
        "timeout": 2,
        "retries": 0,
    }
