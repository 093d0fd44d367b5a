"""Fixtures for the status page: Celery tasks run eagerly (through Celery's own retry
machinery), email goes to Django's locmem outbox, and a real HTTP server on 127.0.0.1 stands
in for the Slack-compatible incoming webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.conf import LazySettings
from django.core.cache import cache

from console.celery import app as celery_app
from statuspage import services
from statuspage.models import Component, Revision
from tests.celery_conf import celery_conf_set
from tests.factories import ServiceFactory, UserFactory
from tests.statuspage.smtp_server import SmtpServer


@pytest.fixture(autouse=True)
def _comms_settings(settings: LazySettings) -> Iterator[None]:
    settings.COMMS_SLACK_WEBHOOK_URL = ""
    settings.COMMS_EMAIL_TO = []
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    eager, propagates = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_conf_set(celery_app, task_always_eager=True, task_eager_propagates=False)
    yield
    celery_conf_set(celery_app, task_always_eager=eager, task_eager_propagates=propagates)


class Webhook:
    """A local incoming-webhook server answering with the queued status codes (then 200)."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[dict[str, Any]] = []
        self.echo_path = False  # an error answer quotes the path it was posted to
        self.answer_body: bytes | None = None  # an error answer's body, else the default
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                outer.received.append(json.loads(self.rfile.read(length) or b"{}"))
                code = outer.answers.pop(0) if outer.answers else 200
                body = b"ok" if code == 200 else b"upstream trouble"
                if code != 200 and outer.answer_body is not None:
                    body = outer.answer_body
                if code != 200 and outer.echo_path:
                    body = f"no_service: {self.path} ({self.path.split('/')[-1]})".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings: LazySettings) -> Iterator[Webhook]:
    server = Webhook()
    settings.COMMS_SLACK_WEBHOOK_URL = server.url
    yield server
    server.close()


@pytest.fixture
def support_lead(roles: dict) -> Any:
    return UserFactory(username="sam", roles=["Support Lead"])


@pytest.fixture
def checkout_component(db: None) -> Component:
    """The component "Checkout", fed by the `checkout` service (its `.service` here)."""
    service = ServiceFactory(name="checkout")
    component = Component.objects.create(name="Checkout", position=1)
    component.services.add(service)
    component.service = service
    return component


@pytest.fixture
def search_component(db: None) -> Component:
    return Component.objects.create(name="Search", position=2)


@pytest.fixture
def smtp(settings: LazySettings) -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1, made Django's default mailer."""
    server = SmtpServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server.port, "timeout": 5},
        }
    }
    yield server
    server.shutdown()
    server.server_close()


STATUS_HOST = "status.example.com"


@pytest.fixture
def status_host(settings: LazySettings) -> str:
    """The status page's own host (`STATUS_HOST`), the console on console.example.com."""
    settings.STATUS_PAGE_HOST = STATUS_HOST
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, STATUS_HOST, "console.example.com"]
    return STATUS_HOST


Publish = Callable[..., Revision]


@pytest.fixture
def publish(db: None) -> Publish:
    """`publish(actor, incident, version=0, **fields)`: an update published through
    `services.draft_publish`, with a name, status, impact and body unless given."""

    def published(actor: Any, incident: Any, *, version: int = 0, **overrides: Any) -> Revision:
        fields: dict[str, Any] = {
            "name": "Checkout problems",
            "status": "investigating",
            "impact": "major",
            "body": "We are looking into **failed payments**.",
            "component_statuses": {},
        }
        fields.update(overrides)
        return services.draft_publish(incident=incident, actor=actor, version=version, **fields)

    return published


UNSAFE_TAGS = {"script", "img", "svg", "iframe", "style", "math", "object"}


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


def _assert_page_markup_only(html: str) -> None:
    parser = _Markup()
    parser.feed(html)
    assert not UNSAFE_TAGS & set(parser.tags), html
    for name, value in parser.attributes:
        assert not name.startswith("on") and name != "style", html
        if name == "href":
            assert value.startswith("/status/"), html


@pytest.fixture
def assert_page_markup_only() -> Callable[[str], None]:
    """A check that `html` holds only the public page's own markup: no script-capable
    element, no event handler, no inline style, links only to the page's own paths."""
    return _assert_page_markup_only
