"""The status page on a host of its own: at STATUS_PAGE_HOST the public page, summary.json,
status.json and the feed answer at the root, as Statuspage clients ask for them, and
nothing of the console does; the console's host keeps /status/."""

from __future__ import annotations

import pytest

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
STATUS_HOST = "status.example.com"


@pytest.fixture
def status_host(settings):
    settings.STATUS_PAGE_HOST = STATUS_HOST
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, STATUS_HOST, "console.example.com"]
    return STATUS_HOST


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "text/html"),
        ("/api/v2/summary.json", "application/json"),
        ("/api/v2/status.json", "application/json"),
        ("/api/v2/components.json", "application/json"),
        ("/history.atom", "application/atom+xml"),
    ],
)
def test_the_status_host_serves_the_page_at_its_root(client, status_host, path, kind):
    response = client.get(path, HTTP_HOST=status_host)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith(kind)
    if kind == "application/json":
        assert response["Access-Control-Allow-Origin"] == "*"


def test_its_links_and_the_summary_point_at_the_root(client, status_host):
    page = client.get("/", HTTP_HOST=f"{status_host}:443").content.decode()
    assert 'href="/api/v2/summary.json"' in page and 'href="/history.atom"' in page
    summary = client.get("/api/v2/summary.json", HTTP_HOST=status_host).json()
    assert summary["page"]["url"] == f"http://{status_host}/"


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/login/",
        "/admin/",
        "/admin/login/",
        "/status/",
        "/incidents/",
        "/api/v1/docs",
        "/status-page/components/",
    ],
)
def test_nothing_of_the_console_is_served_there(client, status_host, path):
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client.force_login(staff)  # not even to someone signed in
    assert client.get(path, HTTP_HOST=status_host).status_code == 404


def test_the_consoles_host_keeps_status_and_the_console(client, status_host):
    assert client.get("/status/", HTTP_HOST="console.example.com").status_code == 200
    summary = client.get("/status/api/v2/summary.json", HTTP_HOST="console.example.com")
    assert summary.json()["page"]["url"] == "http://console.example.com/status/"
    assert client.get("/", HTTP_HOST="console.example.com").status_code == 302  # sign in
    assert client.get("/accounts/login/", HTTP_HOST="console.example.com").status_code == 200


def test_without_a_status_host_every_host_is_the_console(client, settings):
    settings.STATUS_PAGE_HOST = ""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, STATUS_HOST]
    assert client.get("/", HTTP_HOST=STATUS_HOST).status_code == 302
    assert client.get("/status/", HTTP_HOST=STATUS_HOST).status_code == 200


def test_a_status_host_given_with_a_port_still_keeps_the_console_out(client, settings):
    settings.STATUS_PAGE_HOST = f"{STATUS_HOST}:8443"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, STATUS_HOST]
    assert client.get("/accounts/login/", HTTP_HOST=f"{STATUS_HOST}:8443").status_code == 404
    assert client.get("/", HTTP_HOST=STATUS_HOST).status_code == 200
