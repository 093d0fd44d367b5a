"""Lists a page at a time: the incident list keeps its filters from page to page, refuses a
page that does not exist with a 400 naming the parameter, and the dashboard reads one release
row per service however long each service's history is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import pagination
from incidents.models import Release, Service
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(roles: dict) -> Client:
    client = Client()
    client.force_login(UserFactory(username="vera", roles=["Viewer"]))
    return client


def test_the_incident_list_is_paged_newest_first_and_keeps_its_filters(viewer, monkeypatch):
    monkeypatch.setattr(pagination, "PAGE_SIZE", 5)
    now = timezone.now()
    for number in range(12):
        incident_open(
            title=f"P1 outage {number} — 停止 🔥",
            severity="P1",
            started_at=now - timedelta(hours=1),
            detected_at=now - timedelta(minutes=number),
        )
    incident_open(title="A P3 that the filter leaves out", severity="P3")

    url = reverse("incident_list")
    first = viewer.get(url, {"state": "open", "severity": "P1"}).content.decode()
    assert "P1 outage 0 —" in first and "P1 outage 4 —" in first and "P1 outage 5" not in first
    assert "Page 1 of 3 (12 in all)" in first and "A P3" not in first
    assert 'href="?state=open&amp;severity=P1&amp;page=2"' in first

    last = viewer.get(url, {"state": "open", "severity": "P1", "page": "3"}).content.decode()
    assert "P1 outage 10 —" in last and "P1 outage 11 —" in last and "P1 outage 9 " not in last
    assert 'rel="prev" href="?state=open&amp;severity=P1&amp;page=2"' in last
    assert 'rel="next"' not in last


@pytest.mark.parametrize("page", ["0", "4", "x", "٣", "9" * 30, "<b>1</b>", "1\x00"])
def test_a_page_that_does_not_exist_is_a_400_naming_the_parameter(viewer, monkeypatch, page):
    monkeypatch.setattr(pagination, "PAGE_SIZE", 5)
    for _ in range(12):
        incident_open()
    answer = viewer.get(reverse("incident_list"), {"page": page})
    assert answer.status_code == 400
    text = answer.content.decode()
    assert "page: must be a page number from 1 to 3" in text and "<b>1</b>" not in text


def test_an_empty_list_is_its_own_first_page(viewer):
    answer = viewer.get(reverse("incident_list"), {"state": "resolved"})
    assert answer.status_code == 200 and "No incidents match." in answer.content.decode()
    assert 'class="pager"' not in answer.content.decode()


def test_the_dashboard_reads_one_release_per_service_however_many_there_are(viewer):
    def dashboard_rows() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            page = viewer.get(reverse("dashboard"))
        assert page.status_code == 200
        selected = [q["sql"] for q in queries.captured_queries if "incidents_release" in q["sql"]]
        return len(queries.captured_queries), len(selected)

    now = timezone.now()
    service = Service.objects.create(name="checkout", backend="kubernetes", target_config={})
    for number in range(3):
        Release.objects.create(
            service=service, version=f"v1.{number}", shipped_at=now - timedelta(days=number)
        )
    few = dashboard_rows()
    Release.objects.bulk_create(
        Release(
            service=service, version=f"v0.{number}", shipped_at=now - timedelta(days=9 + number)
        )
        for number in range(500)
    )
    assert dashboard_rows() == few
    page = viewer.get(reverse("dashboard")).content.decode()
    assert "v1.0" in page and "v0.499" not in page
