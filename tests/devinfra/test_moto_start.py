"""Starting moto when the free port it was given is taken before it binds (the Kubernetes
stand-in binding port 0 meanwhile): it is not fooled by the other server and tries again."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devinfra import processes


class NotMoto(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def squatter():
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotMoto)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_port_taken_by_another_server_is_given_up_for_a_free_one(squatter, monkeypatch):
    ports = iter([squatter])
    real_free_port = processes.free_port
    monkeypatch.setattr(processes, "free_port", lambda: next(ports, None) or real_free_port())
    moto = processes.start_moto_server()
    try:
        assert moto.port != squatter and moto.process.poll() is None
        processes.reset_moto_server(moto.url)  # moto's own API answers there
    finally:
        moto.stop()


def test_a_port_asked_for_and_taken_is_an_error(squatter):
    with pytest.raises(RuntimeError):
        processes.start_moto_server(squatter)
