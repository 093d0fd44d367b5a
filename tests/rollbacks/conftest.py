"""Every rollback test runs against the Kubernetes stand-in with short polls and beats, and
with Celery eager on the engine tests' own broker (tests/rollbacks/engine_fixtures.py)."""

import pytest


@pytest.fixture(autouse=True)
def engine_environment(engine_settings: None, isolated_celery: object) -> None:
    """The engine's settings and an isolated, eager Celery for each rollback test."""
