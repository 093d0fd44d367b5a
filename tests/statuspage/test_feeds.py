"""The page's feeds: Atom and RSS for the whole page and per component, with incident
revisions and maintenance updates, newest first, valid XML whatever text was published
(non-Latin scripts, markup, control characters)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import services
from statuspage.models import Component, Maintenance, MaintenanceUpdate
from tests.factories import incident_open

pytestmark = pytest.mark.django_db
ATOM = "{http://www.w3.org/2005/Atom}"
NAME = "結帳 ⚠️ الدفع <script>alert(1)</script> & co"


def publish(actor, components, *, name=NAME, body="**Cause** <img src=x onerror=alert(1)>"):
    incident = incident_open()
    return services.draft_publish(
        incident=incident,
        actor=actor,
        version=0,
        name=name,
        status="investigating",
        impact="major",
        body=body,
        component_statuses={str(c.pk): "partial_outage" for c in components},
    )


def maintenance_on(components, *, body="Upgrade \x0bwith a vertical tab 数据库"):
    now = timezone.now()
    maintenance = Maintenance.objects.create(
        name="Database upgrade — 数据库",
        scheduled_for=now,
        scheduled_until=now + timedelta(hours=1),
    )
    maintenance.components.set(components)
    return MaintenanceUpdate.objects.create(
        maintenance=maintenance,
        status="scheduled",
        body=body,
        body_html=f"<p>{body}</p>",
        published_at=now + timedelta(minutes=1),
    )


def atom_titles(response):
    feed = ET.fromstring(response.content)
    return [entry.find(f"{ATOM}title").text for entry in feed.findall(f"{ATOM}entry")]


def rss_items(response) -> list[ET.Element]:
    return ET.fromstring(response.content).findall("channel/item")


def test_the_page_feeds_hold_revisions_and_maintenance_updates_newest_first(
    client, support_lead, checkout_component
):
    publish(support_lead, [checkout_component])
    maintenance_on([checkout_component])
    atom = client.get(reverse("status_history_atom"))
    assert atom.status_code == 200
    assert atom["Content-Type"] == "application/atom+xml; charset=utf-8"
    assert atom["Access-Control-Allow-Origin"] == "*"
    titles = atom_titles(atom)
    assert titles[0] == "Database upgrade — 数据库: Scheduled (maintenance)"
    assert titles[1].endswith(": Investigating") and len(titles) == 2
    rss = client.get(reverse("status_history_rss"))
    assert rss["Content-Type"].startswith("application/rss+xml")
    items = rss_items(rss)
    assert [item.find("title").text for item in items] == atom_titles(atom)
    assert items[0].find("guid").attrib["isPermaLink"] == "false"


def test_published_markup_stays_text_and_the_xml_stays_valid(
    client, support_lead, checkout_component
):
    revision = publish(support_lead, [checkout_component])
    maintenance_on([checkout_component])
    for name in ("status_history_atom", "status_history_rss"):
        raw = client.get(reverse(name)).content
        ET.fromstring(raw)  # parses: the vertical tab is gone, the rest escaped
        text = raw.decode()
        assert "\x0b" not in text and "数据库" in text and "الدفع" in text
        assert "<script>" not in text and "<img" not in text  # only escaped, never markup
    entry_title = atom_titles(client.get(reverse("status_history_atom")))[1]
    assert entry_title == f"{revision.name}: Investigating"
    assert "結帳 ⚠️ الدفع" in entry_title


def test_a_component_feed_holds_only_what_touched_it_and_a_group_its_members(
    client, support_lead, checkout_component, search_component
):
    group = Component.objects.create(name="Store", is_group=True)
    Component.objects.filter(pk=checkout_component.pk).update(group=group)
    publish(support_lead, [checkout_component], name="Checkout down")
    publish(support_lead, [search_component], name="Search slow")
    maintenance_on([search_component])
    checkout = client.get(reverse("status_component_atom", args=[checkout_component.pk]))
    assert atom_titles(checkout) == ["Checkout down: Investigating"]
    assert "Checkout" in ET.fromstring(checkout.content).find(f"{ATOM}title").text
    search = client.get(reverse("status_component_rss", args=[search_component.pk]))
    assert [i.find("title").text for i in rss_items(search)] == [
        "Database upgrade — 数据库: Scheduled (maintenance)",
        "Search slow: Investigating",
    ]
    store = client.get(reverse("status_component_atom", args=[group.pk]))
    assert atom_titles(store) == ["Checkout down: Investigating"]


def test_an_unknown_component_feed_is_404(client):
    assert client.get(reverse("status_component_atom", args=[999_999])).status_code == 404
    assert client.get("/status/components/abc/history.rss").status_code == 404


def test_entry_links_point_at_the_incident_and_maintenance_pages(
    client, support_lead, checkout_component
):
    revision = publish(support_lead, [checkout_component])
    update = maintenance_on([checkout_component])
    feed = ET.fromstring(client.get(reverse("status_history_atom")).content)
    links = [entry.find(f"{ATOM}link").attrib["href"] for entry in feed.findall(f"{ATOM}entry")]
    assert links == [
        f"http://testserver/status/maintenances/{update.maintenance_id}",
        f"http://testserver/status/incidents/{revision.public_incident_id}",
    ]


def test_ids_do_not_depend_on_the_host_the_feed_was_fetched_by(
    client, settings, support_lead, checkout_component
):
    revision = publish(support_lead, [checkout_component])
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "other.example"]

    def ids(host: str) -> list[str]:
        response = client.get(reverse("status_history_atom"), HTTP_HOST=host)
        feed = ET.fromstring(response.content)
        return [str(element.text) for element in feed.iter(f"{ATOM}id")]

    assert ids("testserver") == ids("other.example")
    assert ids("testserver")[1] == f"tag:backout,2026:backout/revision-{revision.pk}"
    settings.STATUS_PAGE_URL = "https://status.acme.test/"
    assert ids("other.example")[1] == f"https://status.acme.test/#revision-{revision.pk}"


def test_the_atom_feed_has_what_rfc_4287_requires_and_components_their_own_ids(
    client, settings, support_lead, checkout_component
):
    settings.STATUS_PAGE_NAME = "Acme status — 状态"
    publish(support_lead, [checkout_component])
    maintenance_on([checkout_component])
    feeds = {}
    for name, args in (
        ("status_history_atom", []),
        ("status_component_atom", [checkout_component.pk]),
    ):
        feed = ET.fromstring(client.get(reverse(name, args=args)).content)
        assert feed.tag == f"{ATOM}feed"
        for required in ("id", "title", "updated"):
            assert feed.find(f"{ATOM}{required}").text, required
        assert feed.find(f"{ATOM}author/{ATOM}name").text == "Acme status — 状态"
        entries = feed.findall(f"{ATOM}entry")
        assert len(entries) == 2
        for entry in entries:
            for required in ("id", "title", "updated"):
                assert entry.find(f"{ATOM}{required}").text, required
            assert entry.find(f"{ATOM}link").attrib["href"].startswith("http://testserver/")
        alternate = feed.find(f"{ATOM}link[@rel='alternate']").attrib["href"]
        feeds[name] = (feed.find(f"{ATOM}id").text, alternate)
    page_id, page_link = feeds["status_history_atom"]
    component_id, component_link = feeds["status_component_atom"]
    assert component_id != page_id and component_id.endswith(f"component-{checkout_component.pk}")
    assert page_link == "http://testserver/status/"
    assert component_link == f"http://testserver/status/#component-{checkout_component.pk}"


def test_the_rss_feeds_have_the_channel_elements_rss_2_requires(
    client, support_lead, checkout_component
):
    publish(support_lead, [checkout_component])
    for name, args in (
        ("status_history_rss", []),
        ("status_component_rss", [checkout_component.pk]),
    ):
        root = ET.fromstring(client.get(reverse(name, args=args)).content)
        assert root.tag == "rss" and root.attrib["version"] == "2.0"
        channel = root.find("channel")
        for required in ("title", "link", "description"):
            assert channel.find(required).text, required
        item = channel.find("item")
        assert item.find("title").text and item.find("guid").text


def test_the_feeds_are_served_at_the_status_hosts_root(client, settings, checkout_component):
    settings.STATUS_PAGE_HOST = "status.example.com"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "status.example.com"]
    for path in (
        "/history.atom",
        "/history.rss",
        f"/components/{checkout_component.pk}/history.rss",
    ):
        response = client.get(path, HTTP_HOST="status.example.com")
        assert response.status_code == 200, path
        ET.fromstring(response.content)
