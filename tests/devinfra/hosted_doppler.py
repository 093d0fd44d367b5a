"""Fixtures of the doppler stand-in (devinfra.hosted), a plugin tests/conftest.py loads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devinfra.hosted.doppler import DopplerStandin

DOPPLER_TOKEN_ENV = "BACKOUT_TEST_DOPPLER_TOKEN"
# Values a backend must never repeat: URLs with passwords, in CJK, emoji and right-to-left.
DOPPLER_GOOD = "postgres://app:ｇｏｏｄ-密码-🔑@orders-a.internal:5432/orders"
DOPPLER_BAD = "postgres://app:שלום-bad-pässword@orders-b.internal:5432/orders"


@pytest.fixture
def doppler(monkeypatch: pytest.MonkeyPatch) -> Iterator[DopplerStandin]:
    """A started Doppler stand-in with config orders/prd: DATABASE_URL set to DOPPLER_GOOD,
    then to DOPPLER_BAD (live), beside LOG_LEVEL; an empty config orders/stg. Its token is
    in the environment as BACKOUT_TEST_DOPPLER_TOKEN."""
    standin = DopplerStandin(token="dp.st.prd.test7c1e0d2a9b").start()
    standin.set("orders", "prd", {"LOG_LEVEL": "info"})
    standin.set("orders", "prd", {"DATABASE_URL": DOPPLER_GOOD})
    standin.set("orders", "prd", {"DATABASE_URL": DOPPLER_BAD})
    standin.add_config("orders", "stg")
    monkeypatch.setenv(DOPPLER_TOKEN_ENV, standin.token)
    yield standin
    standin.stop()
