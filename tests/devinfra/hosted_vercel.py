"""Fixtures of the vercel stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.hosted.vercel import VercelStandin

VERCEL_TOKEN_ENV = "BACKOUT_TEST_VERCEL_TOKEN"


@pytest.fixture
def vercel(monkeypatch: pytest.MonkeyPatch) -> Iterator[VercelStandin]:
    """A started Vercel stand-in whose alias jobs take 0.3 s, with project "web" (three
    READY production deployments, the newest live), and project "docs" (one). Its token is
    in the environment as BACKOUT_TEST_VERCEL_TOKEN."""
    standin = VercelStandin(token="vcp_test5d1e0c9a7b3f", alias_delay=0.3).start()
    web = standin.add_project("web")
    for _ in range(3):
        standin.deploy(web)
    standin.deploy(standin.add_project("docs"))
    monkeypatch.setenv(VERCEL_TOKEN_ENV, standin.token)
    yield standin
    standin.stop()
