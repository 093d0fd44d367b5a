"""Every rollback test runs against the Kubernetes stand-in with short polls and beats, and
with Celery eager on the engine tests' own broker (tests/rollbacks/engine_fixtures.py).
`health` is a real HTTP health endpoint on a thread, for the checks that verify a rollback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def engine_environment(engine_settings: None, isolated_celery: object) -> None:
    """The engine's settings and an isolated, eager Celery for each rollback test."""


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
