"""Fixtures for verification after a rollback: a real HTTP health endpoint on a thread, a
real Prometheus (Debian's package) scraping a metrics source the tests control, and the
engine's fixtures (Kubernetes stand-in, eager Celery on the tests' own broker)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devinfra.prometheus import (
    MetricsExporter,
    PrometheusMissing,
    PrometheusServer,
    find_prometheus,
    start_prometheus,
)


class HealthServer(ThreadingHTTPServer):
    """Answers GETs with scripted (status, JSON body) replies, the last one repeating, and
    remembers when each request came."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HealthHandler)
        self.replies: list[tuple[int, Any]] = [(200, {"status": "ok"})]
        self.arrivals: list[float] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/healthz"

    def script(self, *replies: tuple[int, Any]) -> None:
        with self.lock:
            self.replies = list(replies)
            self.arrivals = []


class _HealthHandler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.arrivals.append(time.monotonic())
            replies = self.server.replies
            status, body = replies.pop(0) if len(replies) > 1 else replies[0]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


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
