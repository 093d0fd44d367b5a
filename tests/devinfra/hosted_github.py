"""Fixtures of the github stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.hosted.github import GitHubStandin, seed_billing

GITHUB_TOKEN_ENV = "BACKOUT_TEST_GITHUB_TOKEN"


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubStandin]:
    """A started GitHub stand-in seeded as the demo's (example-org/billing: deploy.yml with
    v2.3.0, v2.4.0 and the live v2.4.1 deployed, ci.yml push only); a dispatched run is
    queued for 0.2 s and runs 0.5 s. Its token is in BACKOUT_TEST_GITHUB_TOKEN."""
    standin = GitHubStandin(token="ghp_test0123456789abcdefXYZ").start()
    seed_billing(standin, token_env=GITHUB_TOKEN_ENV)
    monkeypatch.setenv(GITHUB_TOKEN_ENV, standin.token)
    yield standin
    standin.stop()
