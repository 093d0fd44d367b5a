"""The public page's past: a page per published incident with all its updates, the history
by month with its navigation and its 400 for a bad month, both served on the console's
/status/ and at the status host's root, with nothing of the console there."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import services
from statuspage.models import Draft, PublicIncident
from tests.factories import UserFactory, incident_open

pytestmark = pytest.mark.django_db


def _posted(public: PublicIncident, at: datetime) -> PublicIncident:
    """`public` as if first posted at `at`."""
    PublicIncident.objects.filter(pk=public.pk).update(created_at=at, updated_at=at)
    return public


# -- the incident's page ---------------------------------------------------------------------


def test_an_incidents_page_shows_every_update_newest_first_with_the_components(
    client, support_lead, checkout_component, search_component, publish
):
    incident = incident_open()
    checkout, search = str(checkout_component.pk), str(search_component.pk)
    publish(support_lead, incident, component_statuses={checkout: "partial_outage"})
    publish(
        support_lead,
        incident,
        version=1,
        status="identified",
        body="Cause *found*.",
        component_statuses={checkout: "major_outage", search: "degraded_performance"},
    )
    publish(
        support_lead,
        incident,
        version=2,
        status="resolved",
        body="All fixed.",
        component_statuses={checkout: "operational", search: "operational"},
    )
    public = PublicIncident.objects.get()

    response = client.get(reverse("status_incident", args=[public.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Checkout problems</h1>" in page
    fixed, found, looking = (
        page.index(text)
        for text in ("All fixed.", "Cause <em>found</em>.", "<strong>failed payments")
    )
    assert fixed < found < looking
    affected = page[page.index('id="affected-components"') :]
    affected = affected[: affected.index("</ul>")]
    assert "Checkout" in affected and "Search" in affected
    assert "Checkout (Major outage), Search (Degraded performance)" in page
    assert "Resolved" in page
    assert "script-src 'none'" in response["Content-Security-Policy"]
    assert response["Cache-Control"] == "public, max-age=5"


def test_an_unknown_incident_is_a_404(client):
    assert client.get(reverse("status_incident", args=[987654])).status_code == 404


def test_an_incident_never_published_is_a_404(client, support_lead, publish):
    services.draft_save(
        incident=incident_open(),
        actor=support_lead,
        version=0,
        name="Secret draft",
        status="investigating",
        impact="minor",
        body="Not yet.",
        component_statuses={},
    )
    public = publish(support_lead, incident_open()).public_incident

    assert PublicIncident.objects.count() == 1
    assert client.get(reverse("status_incident", args=[public.pk + 1])).status_code == 404


def test_a_later_draft_and_the_internal_title_are_shown_nowhere(
    client, support_lead, publish, checkout_component
):
    incident = incident_open(title="Internal: payments-api OOM after v1.5.0")
    checkout = str(checkout_component.pk)
    public = publish(
        support_lead, incident, component_statuses={checkout: "partial_outage"}
    ).public_incident
    version = Draft.objects.get(incident=incident).version
    services.draft_save(
        incident=incident,
        actor=support_lead,
        version=version,
        name="Unpublished new name",
        status="identified",
        impact="critical",
        body="Unpublished draft body.",
        component_statuses={checkout: "major_outage"},
    )

    shown = {
        "incident page": client.get(reverse("status_incident", args=[public.pk])),
        "history": client.get(reverse("status_history")),
        "incidents.json": client.get(reverse("status_incidents_json")),
        "page with the bars": client.get(reverse("status_page")),
    }

    for where, response in shown.items():
        text = response.content.decode()
        assert response.status_code == 200, where
        assert "Checkout problems" in text, where  # the published name is there...
        for secret in ("Unpublished new name", "Unpublished draft body", "Internal: payments"):
            assert secret not in text, where  # ...and nothing unpublished
    bars = shown["page with the bars"].content.decode()
    bars = bars[bars.index(f'id="uptime-{checkout}"') :]
    assert "Checkout problems" in bars[: bars.index("</ol>")]


@pytest.mark.parametrize(
    "name",
    [
        "決済が失敗しています",
        "Checkout 💳🔥 down",
        "التحقق من الدفع معطل",
        '<script>alert("x")</script><img src=x onerror=alert(1)>',
    ],
)
def test_names_on_the_incident_and_history_pages_are_escaped(
    client, support_lead, name, publish, assert_page_markup_only
):
    publish(support_lead, incident_open())
    PublicIncident.objects.update(name=name)  # as given, past the publish's own cleaning
    public = PublicIncident.objects.get()

    incident_page = client.get(reverse("status_incident", args=[public.pk])).content.decode()
    history = client.get(reverse("status_history")).content.decode()

    for page in (incident_page, history[history.index("<main>") :]):
        assert_page_markup_only(page[page.index("<main>") :])
        if "<" in name:
            assert "&lt;script&gt;" in page
        else:
            assert name in page


# -- the history by month --------------------------------------------------------------------


def test_the_history_lists_the_months_incidents_with_links(client, support_lead, publish):
    march = _posted(
        publish(support_lead, incident_open(), name="March outage").public_incident,
        datetime(2026, 3, 31, 23, 30, tzinfo=ZoneInfo("UTC")),
    )
    _posted(
        publish(support_lead, incident_open(), name="April outage").public_incident,
        datetime(2026, 4, 1, 0, 0, tzinfo=ZoneInfo("UTC")),
    )
    _posted(
        publish(support_lead, incident_open(), name="February outage").public_incident,
        datetime(2026, 2, 28, 23, 59, tzinfo=ZoneInfo("UTC")),
    )

    response = client.get(reverse("status_history"), {"month": "2026-03"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Incident history: March 2026" in page
    assert f'href="/status/incidents/{march.pk}"' in page and "March outage" in page
    assert "April outage" not in page and "February outage" not in page
    assert 'href="/status/history?month=2026-02"' in page
    assert 'href="/status/history?month=2026-04"' in page


def test_the_months_follow_the_configured_time_zone(client, settings, support_lead, publish):
    settings.TIME_ZONE = "Asia/Tokyo"
    # 20:00 UTC on March 31st is already April 1st in Tokyo.
    _posted(
        publish(support_lead, incident_open(), name="Tokyo outage").public_incident,
        datetime(2026, 3, 31, 20, 0, tzinfo=ZoneInfo("UTC")),
    )

    march = client.get(reverse("status_history"), {"month": "2026-03"}).content.decode()
    april = client.get(reverse("status_history"), {"month": "2026-04"}).content.decode()

    assert "Tokyo outage" not in march and "Tokyo outage" in april


def test_without_a_month_the_history_shows_this_month_and_no_later_one(
    client, support_lead, publish
):
    publish(support_lead, incident_open(), name="Today's trouble")
    this_month = timezone.localdate()

    page = client.get(reverse("status_history")).content.decode()

    assert f"Incident history: {this_month:%B %Y}" in page
    assert "Today&#x27;s trouble" in page
    assert 'id="next-month"' not in page
    assert 'id="previous-month"' not in page  # nothing was published before


def test_the_history_goes_back_only_as_far_as_the_first_incident(client, support_lead, publish):
    _posted(
        publish(support_lead, incident_open()).public_incident,
        datetime(2025, 11, 15, 12, tzinfo=ZoneInfo("UTC")),
    )

    december = client.get(reverse("status_history"), {"month": "2025-12"}).content.decode()
    november = client.get(reverse("status_history"), {"month": "2025-11"}).content.decode()

    assert 'href="/status/history?month=2025-11"' in december
    assert 'id="previous-month"' not in november
    assert 'href="/status/history?month=2025-12"' in november
    assert "No incidents in December 2025." in december


def _month(day: date, months: int) -> str:
    """`day`'s month moved by `months`, as YYYY-MM."""
    index = day.year * 12 + day.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def test_months_outside_the_first_incidents_and_this_one_are_not_found(
    client, support_lead, publish
):
    _posted(
        publish(support_lead, incident_open()).public_incident,
        datetime(2025, 11, 15, 12, tzinfo=ZoneInfo("UTC")),
    )
    today = timezone.localdate()

    def status(month: str) -> int:
        return client.get(reverse("status_history"), {"month": month}).status_code

    assert status("2025-10") == 404
    assert status("1970-01") == 404
    assert status(_month(today, 1)) == 404
    assert status("9998-12") == 404
    assert status("2025-11") == 200
    assert status(_month(today, 0)) == 200
    assert status(_month(today, -1)) == 200


def test_this_month_is_found_before_any_incident_and_no_other_is(client):
    today = timezone.localdate()

    assert client.get(reverse("status_history")).status_code == 200
    this_month = client.get(reverse("status_history"), {"month": _month(today, 0)})
    assert this_month.status_code == 200
    assert "No incidents in" in this_month.content.decode()
    assert client.get(reverse("status_history"), {"month": _month(today, -1)}).status_code == 404


def test_monitors_may_ask_with_head(client, support_lead, publish):
    public = publish(support_lead, incident_open()).public_incident

    for path in (
        reverse("status_history"),
        reverse("status_incident", args=[public.pk]),
        reverse("status_incidents_json"),
        reverse("status_unresolved_json"),
    ):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b"", path
        assert client.post(path).status_code == 405, path


@pytest.mark.parametrize(
    "month",
    [
        "2026-13",
        "2026-00",
        "2026-3",
        "26-03",
        "March",
        "2026-03-01",
        "1969-12",
        "9999-01",
        "２０２６-０３",
        "2026-03\n",
        "<script>",
        "9" * 5000,
    ],
)
def test_a_bad_month_is_a_400_naming_the_parameter(client, month):
    response = client.get(reverse("status_history"), {"month": month})

    assert response.status_code == 400
    text = response.content.decode()
    assert text.startswith("Month:")
    assert "<" not in text and response["Content-Type"].startswith("text/plain")


def test_the_history_answers_in_a_bounded_number_of_queries(
    client, support_lead, django_assert_max_num_queries, publish
):
    for _ in range(6):
        publish(support_lead, incident_open())
    with django_assert_max_num_queries(5):
        assert client.get(reverse("status_history")).status_code == 200


def test_the_public_page_links_to_the_history(client):
    page = client.get(reverse("status_page")).content.decode()
    assert 'href="/status/history"' in page


def test_an_incident_page_leads_to_its_month(client, support_lead, publish):
    public = _posted(
        publish(support_lead, incident_open()).public_incident,
        datetime(2026, 1, 10, 9, tzinfo=ZoneInfo("UTC")),
    )
    page = client.get(reverse("status_incident", args=[public.pk])).content.decode()
    assert 'href="/status/history?month=2026-01"' in page


# -- on the status host ----------------------------------------------------------------------


def test_the_status_host_serves_the_new_pages_at_its_root(
    client, status_host, support_lead, checkout_component, publish
):
    publish(
        support_lead,
        incident_open(),
        component_statuses={str(checkout_component.pk): "partial_outage"},
    )
    public = PublicIncident.objects.get()
    month = f"{timezone.localdate():%Y-%m}"

    for path, kind in (
        (f"/incidents/{public.pk}", "text/html"),
        ("/history", "text/html"),
        (f"/history?month={month}", "text/html"),
        ("/api/v2/incidents.json", "application/json"),
        ("/api/v2/incidents/unresolved.json", "application/json"),
    ):
        response = client.get(path, HTTP_HOST=status_host)
        assert response.status_code == 200, path
        assert response["Content-Type"].startswith(kind), path

    front = client.get("/", HTTP_HOST=status_host).content.decode()
    assert 'href="/history"' in front
    assert f'href="/incidents/{public.pk}"' in front  # from today's bar
    history = client.get("/history", HTTP_HOST=status_host).content.decode()
    assert f'href="/incidents/{public.pk}"' in history
    incident = client.get(f"/incidents/{public.pk}", HTTP_HOST=status_host).content.decode()
    assert f'href="/history?month={month}"' in incident and 'href="/"' in incident
    assert "/status/" not in history + incident


def test_the_status_host_answers_a_bad_month_and_an_unknown_incident_itself(client, status_host):
    assert client.get("/history?month=2026-13", HTTP_HOST=status_host).status_code == 400
    assert client.get("/incidents/424242", HTTP_HOST=status_host).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/status/history",
        "/status/incidents/1",
        "/status/api/v2/incidents.json",
        "/incidents/1/",
        "/incidents/1/status-page/",
        "/accounts/login/",
        "/admin/",
    ],
)
def test_the_console_is_still_not_served_on_the_status_host(
    client, status_host, support_lead, path, publish
):
    publish(support_lead, incident_open())
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    assert client.get(path, HTTP_HOST=status_host).status_code == 404


def test_the_consoles_host_keeps_them_under_status(client, status_host, support_lead, publish):
    publish(support_lead, incident_open())
    public = PublicIncident.objects.get()
    for path in (
        f"/status/incidents/{public.pk}",
        "/status/history",
        "/status/api/v2/incidents.json",
        "/status/api/v2/incidents/unresolved.json",
    ):
        assert client.get(path, HTTP_HOST="console.example.com").status_code == 200, path
    body = client.get("/status/api/v2/incidents.json", HTTP_HOST="console.example.com").json()
    assert body["incidents"][0]["shortlink"] == (
        f"http://console.example.com/status/incidents/{public.pk}"
    )
