"""Verification checks against small HTTP servers on 127.0.0.1 and real processes.

The Prometheus server here is a stand-in that answers /api/v1/query in the shape of the
Prometheus HTTP API, for answers a real server rarely gives (errors, NaN, range vectors);
tests/rollbacks/verification/ runs the checks against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from devinfra.processes import free_port
from executors.base import CheckStatus, ConfigError
from executors.checks import http_health, prometheus_threshold, smoke_command


class ScriptedServer(ThreadingHTTPServer):
    """Answers every GET with the next scripted (status, body) reply; the last one repeats."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.replies: list[tuple[int, object]] = [(200, {"status": "ok"})]
        self.requests: list[str] = []
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, *replies: tuple[int, object]) -> None:
        self.replies = list(replies)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that timed out and hung up is what the slow-endpoint test expects."""


class ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        time.sleep(self.server.delay)
        replies = self.server.replies
        status, body = replies.pop(0) if len(replies) > 1 else replies[0]
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def web() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def vector(*samples: tuple[dict[str, str], str]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [1700000000.0, v]} for labels, v in samples],
        },
    }


# -- http_health -------------------------------------------------------------------------------


def test_http_health_passes_on_the_expected_status(web):
    result = http_health(f"{web.url}/healthz", retries=0)

    assert result.status is CheckStatus.PASSED
    assert "200" in result.detail


def test_http_health_fails_on_another_status(web):
    web.script((503, {"status": "down"}))

    result = http_health(f"{web.url}/healthz", retries=0)

    assert result.status is CheckStatus.FAILED
    assert "503" in result.detail


def test_http_health_accepts_a_chosen_expected_status(web):
    web.script((204, ""))

    assert http_health(web.url, expect_status=204, retries=0).status is CheckStatus.PASSED


def test_http_health_passes_when_the_json_field_has_the_expected_value(web):
    web.script((200, {"version": "v1.0.0-rc.5"}))

    result = http_health(web.url, json_field="version", expect_value="v1.0.0-rc.5", retries=0)

    assert result.status is CheckStatus.PASSED
    assert "v1.0.0-rc.5" in result.detail


def test_http_health_fails_when_the_json_field_has_another_value(web):
    web.script((200, {"version": "v1.0.1"}))

    result = http_health(web.url, json_field="version", expect_value="v1.0.0-rc.5", retries=0)

    assert result.status is CheckStatus.FAILED
    assert "v1.0.1" in result.detail


def test_http_health_fails_when_the_json_field_is_missing(web):
    web.script((200, {"status": "ok"}))

    result = http_health(web.url, json_field="version", retries=0)

    assert result.status is CheckStatus.FAILED
    assert "no field version" in result.detail


def test_http_health_follows_a_dotted_path_into_nested_json(web):
    web.script((200, {"build": {"version": "v2"}, "checks": [{"status": "ok"}]}))

    assert (
        http_health(web.url, json_field="build.version", expect_value="v2", retries=0).status
        is CheckStatus.PASSED
    )
    assert (
        http_health(web.url, json_field="checks.0.status", expect_value="ok", retries=0).status
        is CheckStatus.PASSED
    )


def test_http_health_fails_when_the_body_is_not_json(web):
    web.script((200, "<html>ok</html>"))

    result = http_health(web.url, json_field="version", retries=0)

    assert result.status is CheckStatus.FAILED
    assert "not JSON" in result.detail


def test_http_health_retries_until_the_endpoint_recovers(web):
    web.script((503, "starting"), (503, "starting"), (200, {"status": "ok"}))

    result = http_health(web.url, retries=3, backoff=0.01)

    assert result.status is CheckStatus.PASSED
    assert len(web.requests) == 3
    assert "attempt 3 of 4" in result.detail


def test_http_health_gives_up_after_the_configured_retries(web):
    web.script((503, "down"))

    result = http_health(web.url, retries=2, backoff=0.01)

    assert result.status is CheckStatus.FAILED
    assert len(web.requests) == 3
    assert "gave up after 3 attempts" in result.detail


def test_http_health_doubles_the_wait_between_attempts(web):
    web.script((503, "down"))

    started = time.monotonic()
    http_health(web.url, retries=2, backoff=0.1)

    assert time.monotonic() - started >= 0.1 + 0.2


def test_http_health_fails_when_nothing_listens():
    result = http_health(f"http://127.0.0.1:{free_port()}/healthz", retries=0)

    assert result.status is CheckStatus.FAILED
    assert "request failed" in result.detail


def test_http_health_fails_when_the_endpoint_answers_too_slowly(web):
    web.delay = 1.0

    result = http_health(web.url, retries=0, timeout=0.2)

    assert result.status is CheckStatus.FAILED
    assert "no answer within 0.2 s" in result.detail


# -- smoke_command -----------------------------------------------------------------------------


def test_smoke_command_passes_when_the_command_exits_zero():
    result = smoke_command([sys.executable, "-c", "print('all good')"], timeout=10)

    assert result.status is CheckStatus.PASSED
    assert "exited with status 0" in result.detail


def test_smoke_command_fails_with_the_exit_status_and_last_output():
    script = "import sys; print('checkout flow broken'); sys.exit(3)"

    result = smoke_command([sys.executable, "-c", script], timeout=10)

    assert result.status is CheckStatus.FAILED
    assert "exited with status 3" in result.detail
    assert "checkout flow broken" in result.detail


def test_smoke_command_fails_when_it_outlives_its_timeout():
    started = time.monotonic()

    result = smoke_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)

    assert result.status is CheckStatus.FAILED
    assert "timed out" in result.detail
    assert time.monotonic() - started < 10


def test_smoke_command_fails_when_the_program_does_not_exist(tmp_path):
    result = smoke_command([str(tmp_path / "no-such-program")], timeout=5)

    assert result.status is CheckStatus.FAILED
    assert "cannot start" in result.detail


# -- prometheus_threshold ----------------------------------------------------------------------


def test_prometheus_threshold_sends_the_query_to_the_instant_query_api(web):
    web.script((200, vector(({}, "0.01"))))

    prometheus_threshold(web.url, "sum(rate(http_errors_total[5m]))", 0.05)

    path = urlsplit(web.requests[0])
    assert path.path == "/api/v1/query"
    assert parse_qs(path.query)["query"] == ["sum(rate(http_errors_total[5m]))"]


def test_prometheus_threshold_passes_when_the_value_is_below(web):
    web.script((200, vector(({"job": "api"}, "0.01"))))

    result = prometheus_threshold(web.url, "error_rate", 0.05)

    assert result.status is CheckStatus.PASSED
    assert 'job="api"' in result.detail


def test_prometheus_threshold_fails_when_the_value_is_not_below(web):
    web.script((200, vector(({"job": "api"}, "0.07"))))

    result = prometheus_threshold(web.url, "error_rate", 0.05)

    assert result.status is CheckStatus.FAILED
    assert "0.07" in result.detail


def test_prometheus_threshold_fails_when_any_series_breaches(web):
    web.script((200, vector(({"pod": "a"}, "0.01"), ({"pod": "b"}, "0.2"))))

    result = prometheus_threshold(web.url, "error_rate", 0.05)

    assert result.status is CheckStatus.FAILED
    assert 'pod="b"' in result.detail
    assert 'pod="a"' not in result.detail


def test_prometheus_threshold_above_passes_when_the_value_exceeds(web):
    web.script((200, vector(({}, "0.999"))))

    result = prometheus_threshold(web.url, "success_ratio", 0.99, comparison="above")

    assert result.status is CheckStatus.PASSED


def test_prometheus_threshold_above_fails_when_the_value_falls_short(web):
    web.script((200, vector(({}, "0.95"))))

    result = prometheus_threshold(web.url, "success_ratio", 0.99, comparison="above")

    assert result.status is CheckStatus.FAILED


def test_prometheus_threshold_reads_a_scalar_result(web):
    web.script((200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}))

    assert prometheus_threshold(web.url, "scalar(x)", 5).status is CheckStatus.PASSED


def test_prometheus_threshold_is_inconclusive_on_an_empty_result(web):
    web.script((200, vector()))

    result = prometheus_threshold(web.url, "error_rate", 0.05)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "no data" in result.detail


def test_prometheus_threshold_is_inconclusive_on_nan(web):
    web.script((200, vector(({}, "NaN"))))

    result = prometheus_threshold(web.url, "error_rate", 0.05)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "NaN" in result.detail


def test_prometheus_threshold_is_inconclusive_on_a_query_error(web):
    error = {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}
    web.script((400, error))

    result = prometheus_threshold(web.url, "rate(", 0.05)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "bad_data" in result.detail
    assert "parse error" in result.detail


def test_prometheus_threshold_is_inconclusive_on_a_range_vector(web):
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    web.script((200, matrix))

    result = prometheus_threshold(web.url, "error_rate[5m]", 0.05)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "matrix" in result.detail


def test_prometheus_threshold_is_inconclusive_when_prometheus_is_unreachable():
    result = prometheus_threshold(f"http://127.0.0.1:{free_port()}", "error_rate", 0.05)

    assert result.status is CheckStatus.INCONCLUSIVE
    assert "did not answer" in result.detail
    assert "ConnectionError" in result.detail


def test_prometheus_threshold_refuses_an_unknown_comparison(web):
    with pytest.raises(ConfigError, match="comparison"):
        prometheus_threshold(web.url, "error_rate", 0.05, comparison="equal")
