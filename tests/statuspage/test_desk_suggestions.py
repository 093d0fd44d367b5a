"""On the status desk, an incident's services suggest the components they feed: a new
draft starts with them set, every suggestion is marked with the services behind it, and
what is published stays the support lead's choice."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from statuspage import texts
from statuspage.models import Component, Revision
from tests.factories import ServiceFactory, incident_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(db):
    checkout, payments = ServiceFactory(name="checkout"), ServiceFactory(name="payments-api")
    web = ServiceFactory(name="storefront-web")
    group = Component.objects.create(name="Online store", is_group=True, position=1)
    storefront = Component.objects.create(name="Storefront", group=group, position=1)
    storefront.services.set([web])
    cart = Component.objects.create(name="Checkout", group=group, position=2)
    cart.services.set([checkout, payments])
    dashboard = Component.objects.create(name="Dashboard", position=2)
    dashboard.services.set([payments])
    incident = incident_open(severity="P1", services=[checkout, payments])
    return {
        "incident": incident,
        "group": group,
        "storefront": storefront,
        "checkout": cart,
        "dashboard": dashboard,
    }


def _selected(html: str, component: Component) -> str:
    """The state the desk's select for `component` starts at ('' for not affected)."""
    select = re.search(
        rf'<select name="component_{component.pk}"[^>]*>(.*?)</select>', html, re.DOTALL
    )
    assert select is not None
    chosen = re.search(r'<option value="([^"]*)" selected>', select.group(1))
    return chosen.group(1) if chosen else ""


def _row(html: str, component: Component) -> str:
    start = html.index(f'id="desk-component-{component.pk}"')
    return html[start : html.index("</tr>", start)]


def test_components_fed_by_the_incidents_services_are_preselected_on_a_new_draft(
    client, support_lead, shop
):
    client.force_login(support_lead)
    html = client.get(reverse("status_desk", args=[shop["incident"].pk])).content.decode()
    assert _selected(html, shop["checkout"]) == "partial_outage"
    assert _selected(html, shop["dashboard"]) == "partial_outage"
    assert _selected(html, shop["storefront"]) == ""
    assert "fed by checkout, payments-api" in _row(html, shop["checkout"])
    assert "fed by payments-api" in _row(html, shop["dashboard"])
    assert "fed by" not in _row(html, shop["storefront"])


def test_the_desk_lists_components_under_their_group_and_offers_no_groups_state(
    client, support_lead, shop
):
    client.force_login(support_lead)
    html = client.get(reverse("status_desk", args=[shop["incident"].pk])).content.decode()
    heading = html.index('<th scope="rowgroup" colspan="3">Online store</th>')
    assert heading < html.index(f'id="desk-component-{shop["storefront"].pk}"')
    assert f'name="component_{shop["group"].pk}"' not in html


def test_the_support_lead_publishes_only_what_they_choose(client, support_lead, shop):
    client.force_login(support_lead)
    response = client.post(
        reverse("status_draft", args=[shop["incident"].pk]),
        {
            "version": 0,
            "name": "Card payments failing",
            "status": "identified",
            "impact": "major",
            "body": "Card payments fail at checkout.",
            f"component_{shop['checkout'].pk}": "major_outage",
            f"component_{shop['dashboard'].pk}": "",  # suggested, but customers see no harm
            "action": "publish",
        },
    )
    assert response.status_code == 302
    assert Revision.objects.get().component_statuses == {str(shop["checkout"].pk): "major_outage"}
    assert Component.objects.get(pk=shop["dashboard"].pk).status == "operational"


def test_a_saved_draft_keeps_its_choice_and_still_marks_the_suggestion(client, support_lead, shop):
    client.force_login(support_lead)
    client.post(
        reverse("status_draft", args=[shop["incident"].pk]),
        {
            "version": 0,
            "name": "Card payments failing",
            "status": "investigating",
            "impact": "minor",
            "body": "Looking.",
            f"component_{shop['checkout'].pk}": "degraded_performance",
        },
    )
    html = client.get(reverse("status_desk", args=[shop["incident"].pk])).content.decode()
    assert _selected(html, shop["checkout"]) == "degraded_performance"
    assert _selected(html, shop["dashboard"]) == ""
    assert "fed by payments-api" in _row(html, shop["dashboard"])


def test_a_component_fed_by_two_of_the_incidents_services_is_suggested_once(support_lead, shop):
    assert [c.name for c in texts.affected_components(shop["incident"])] == [
        "Checkout",
        "Dashboard",
    ]
    facts = texts.incident_facts(shop["incident"])
    assert facts["components"] == "Checkout, Dashboard"
