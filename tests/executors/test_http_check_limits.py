"""What an HTTP health check will not do: follow a redirect to another host, ask a
link-local (cloud metadata) address, or copy a server's whole answer into its result."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import executors.http_guard
from executors.addresses import blocked_address
from executors.base import CheckStatus, ConfigError
from executors.check_specs import validate_checks
from executors.checks import http_health

BIG = "x" * 100_000


class Routes(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        port = self.server.server_address[1]
        moves = {
            "/old": "/healthz",
            "/relative": "healthz",
            "/away": f"http://localhost:{port}/healthz",  # another host name
            "/loop": "/loop",
        }
        if self.path in moves:
            self.send_response(302)
            self.send_header("Location", moves[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/broken":
            status, body = (
                500,
                ("\x1b[31mpanic\x00 db at postgres://app:db-pass-123456@db/orders " + BIG),
            )
        else:
            status, body = 200, json.dumps({"status": "ok", "build": BIG})
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Routes)
        self.paths: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    threading.Thread(target=running.serve_forever, args=(0.01,), daemon=True).start()
    yield running
    running.shutdown()
    running.server_close()


@pytest.mark.parametrize("path", ["/old", "/relative"])
def test_a_redirect_on_the_same_host_is_followed(server, path):
    result = http_health(server.url(path), retries=0, json_field="status", expect_value="ok")
    assert result.status is CheckStatus.PASSED
    assert server.paths == [path, "/healthz"]


def test_a_redirect_to_another_host_is_not_followed(server):
    result = http_health(server.url("/away"), retries=0)
    assert result.status is CheckStatus.FAILED
    assert "redirected to another host (http://localhost:" in result.detail
    assert server.paths == ["/away"]


def test_a_redirect_loop_stops(server):
    result = http_health(server.url("/loop"), retries=0)
    assert result.status is CheckStatus.FAILED and "more than 5 redirects" in result.detail
    assert len(server.paths) == 6


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        # The same metadata address spelled as IPv6 forms that carry it:
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "http://[::169.254.169.254]/",  # IPv4-compatible
        "http://[2002:a9fe:a9fe::1]/",  # 6to4
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]/",  # Teredo, client inverted
    ],
)
def test_link_local_and_metadata_addresses_are_never_asked(url):
    assert blocked_address(url)
    result = http_health(url, retries=3, backoff=10)  # returns at once: no attempt made
    assert result.status is CheckStatus.INCONCLUSIVE
    assert "link-local address (cloud metadata); not asked" in result.detail


def test_loopback_and_names_that_do_not_resolve_are_not_blocked():
    assert blocked_address("http://127.0.0.1:8080/healthz") is None
    assert blocked_address("http://[::ffff:127.0.0.1]:8080/healthz") is None
    assert blocked_address("http://no-such-host.invalid/healthz") is None


def test_a_failing_answer_leaves_a_short_masked_excerpt(server):
    result = http_health(server.url("/broken"), retries=0)
    assert result.status is CheckStatus.FAILED
    assert len(result.detail) < 300
    assert "db-pass-123456" not in result.detail
    assert "postgres://app:****@db/orders" in result.detail
    assert "\x1b" not in result.detail and "\x00" not in result.detail


def test_a_huge_json_value_is_cut_short(server):
    result = http_health(server.url("/healthz"), retries=0, json_field="build")
    assert result.status is CheckStatus.PASSED
    assert len(result.detail) < 200 and len(result.observed) < 120


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:a9fe:a9fe]/"]
)
def test_a_service_config_naming_a_metadata_address_is_refused(url):
    with pytest.raises(ConfigError, match="checks/0/url: a link-local address"):
        validate_checks([{"kind": "http", "url": url}])


def test_a_name_that_rebinds_to_a_forbidden_address_is_refused_once_connected(server, monkeypatch):
    """The first look resolves the name to a public address; the connection's own lookup
    gets another (DNS rebinding). The address the socket reached is what is judged: here
    the server's loopback address stands in for the metadata one, and it hears nothing."""
    port = server.server_address[1]
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def rebinding(host, *args, **kwargs):
        if host != "rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        address = "203.0.113.5" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(
        executors.http_guard,
        "forbidden",
        lambda address: str(address) == "127.0.0.1",
    )
    result = http_health(f"http://rebind.test:{port}/healthz", retries=0)
    assert len(lookups) == 2
    assert result.status is CheckStatus.FAILED
    assert "rebind.test answered from 127.0.0.1" in result.detail
    assert result.observed == "blocked"
    assert server.paths == []
