"""Fixtures for verification after a rollback: a real Prometheus (Debian's package) scraping a
metrics source the tests control; the health endpoint (`health`) and the engine's fixtures
come from tests/rollbacks/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devinfra.prometheus import (
    MetricsExporter,
    PrometheusMissing,
    PrometheusServer,
    find_prometheus,
    start_prometheus,
)


@pytest.fixture(scope="session")
def exporter() -> Iterator[MetricsExporter]:
    source = MetricsExporter.start()
    yield source
    source.stop()


@pytest.fixture(scope="session")
def prometheus(exporter: MetricsExporter) -> Iterator[PrometheusServer]:
    """One real Prometheus for the session, scraping `exporter` every second. bin/test
    installs Debian's package; without it these tests fail and say so, never skip."""
    try:
        find_prometheus()
    except PrometheusMissing as error:
        pytest.fail(str(error), pytrace=False)
    server = start_prometheus([exporter.target], scrape_interval=1.0, ready_timeout=30)
    yield server
    server.stop()


@pytest.fixture
def metric() -> str:
    """A metric name no other test uses: Prometheus keeps what it scraped before."""
    return f"backout_test_{uuid.uuid4().hex[:12]}"
