"""The stand-ins' own fixtures, a pytest plugin loaded by tests/conftest.py: a moto server
(AWS) for the session and a fresh Kubernetes API stand-in per test, for the backends' tests
and the stand-ins' tests alike."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devinfra.kube_standin import KubeStandinHandle, start_kube_standin
from devinfra.processes import ServerProcess, start_moto_server
from devinfra.prometheus import MetricsExporter, PrometheusServer, start_prometheus


@pytest.fixture(scope="session")
def moto_server() -> Iterator[ServerProcess]:
    """A moto server process on 127.0.0.1 for the whole session, with test credentials."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture
def kube_standin() -> Iterator[KubeStandinHandle]:
    """A fresh Kubernetes API stand-in: rollouts settle in 0.1 s, crash loops tick every 0.05 s."""
    handle = start_kube_standin(status_delay=0.1, restart_interval=0.05)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def signals_exporter() -> Iterator[MetricsExporter]:
    """Metrics a test sets, scraped by `signals_prometheus` (the decision helper's tests)."""
    source = MetricsExporter.start()
    yield source
    source.stop()


@pytest.fixture(scope="session")
def signals_prometheus(signals_exporter: MetricsExporter) -> Iterator[PrometheusServer]:
    """A real Prometheus for the session scraping `signals_exporter` every second."""
    server = start_prometheus([signals_exporter.target], scrape_interval=1.0)
    yield server
    server.stop()


@pytest.fixture
def health_endpoint() -> Iterator[dict[str, Any]]:
    """An HTTP health endpoint on 127.0.0.1 answering `status` (200 until a test changes
    it) after `delay` seconds (0): {"status": 200, "url": "http://127.0.0.1:<port>/healthz"}."""
    answer: dict[str, Any] = {"status": 200, "delay": 0.0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            time.sleep(answer["delay"])
            self.send_response(answer["status"])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer["port"] = server.server_address[1]
    answer["url"] = f"http://127.0.0.1:{answer['port']}/healthz"
    yield answer
    server.shutdown()
    server.server_close()
