"""Components and groups on the public surfaces: summary.json and components.json in the
Statuspage v2 shape field by field (a group is `group: true` with its components' ids, a
member carries `group_id`), and the page showing groups with their components, hiding
`only_show_if_degraded` ones while they are operational."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from statuspage import services
from statuspage.models import Component
from tests.factories import ServiceFactory, incident_open

pytestmark = pytest.mark.django_db

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
COMPONENT_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "position", "description",
    "showcase", "start_date", "group_id", "page_id", "group", "only_show_if_degraded",
}  # fmt: skip


@pytest.fixture
def page(db):
    """The page as a shop would lay it out: an "Online store" group (Storefront, Checkout
    fed by three services), a lone "Email" shown only when degraded, and "API"."""
    checkout = ServiceFactory(name="checkout", description="ECS service checkout in vpc-1")
    payments = ServiceFactory(name="payments-api", description="Deployment payments/api")
    storefront_api = ServiceFactory(name="storefront-api", description="Deployment sf/api")
    long_ago = timezone.now() - timedelta(days=3)
    group = Component.objects.create(
        name="Online store", description="What shoppers use", is_group=True, position=1
    )
    storefront = Component.objects.create(
        name="Storefront", group=group, position=1, updated_at=long_ago
    )
    cart = Component.objects.create(
        name="Checkout", description="Basket and payments", group=group, position=2
    )
    cart.services.set([checkout, payments, storefront_api])
    email = Component.objects.create(name="Email", position=2, only_show_if_degraded=True)
    api = Component.objects.create(name="API", position=3)
    api.services.set([storefront_api])
    return {"group": group, "storefront": storefront, "checkout": cart, "email": email, "api": api}


def _publish(actor, statuses, *, incident=None, version=0, status="investigating"):
    return services.draft_publish(
        incident=incident or incident_open(),
        actor=actor,
        version=version,
        name="Payments failing",
        status=status,
        impact="major",
        body="Looking into it.",
        component_statuses={str(c.pk): state for c, state in statuses.items()},
    )


def test_summary_json_lists_a_group_then_its_members_in_the_statuspage_shape(
    client, support_lead, page
):
    _publish(support_lead, {page["checkout"]: "partial_outage"})
    summary = client.get(reverse("status_summary_json")).json()
    listed = summary["components"]
    assert [c["name"] for c in listed] == ["Online store", "Storefront", "Checkout", "Email", "API"]
    group, storefront, checkout, email, api = listed
    page_id = summary["page"]["id"]

    assert set(group) == COMPONENT_KEYS | {"components"}
    assert group["id"] == str(page["group"].pk)
    assert group["group"] is True and group["group_id"] is None
    assert group["components"] == [str(page["storefront"].pk), str(page["checkout"].pk)]
    assert group["status"] == "partial_outage"  # its members' worst
    assert group["description"] == "What shoppers use"
    assert group["position"] == 1 and group["only_show_if_degraded"] is False
    assert group["showcase"] is True and group["start_date"] is None
    assert group["page_id"] == page_id
    assert ISO.match(group["created_at"]) and group["updated_at"] == checkout["updated_at"]

    for member, position in ((storefront, 1), (checkout, 2)):
        assert set(member) == COMPONENT_KEYS
        assert member["group_id"] == str(page["group"].pk)
        assert member["group"] is False and member["position"] == position
        assert member["page_id"] == page_id
        assert ISO.match(member["created_at"]) and ISO.match(member["updated_at"])
    assert checkout["id"] == str(page["checkout"].pk)
    assert checkout["status"] == "partial_outage"
    assert checkout["description"] == "Basket and payments"
    assert checkout["only_show_if_degraded"] is False
    assert storefront["status"] == "operational" and storefront["description"] is None

    assert set(email) == COMPONENT_KEYS
    assert email["only_show_if_degraded"] is True  # listed in the JSON all the same
    assert email["group_id"] is None and email["group"] is False and email["position"] == 2
    assert api["position"] == 3 and api["group_id"] is None

    [incident] = summary["incidents"]
    assert [c["id"] for c in incident["components"]] == [str(page["checkout"].pk)]
    assert incident["components"][0]["group_id"] == str(page["group"].pk)
    assert incident["incident_updates"][0]["affected_components"] == [
        {
            "code": str(page["checkout"].pk),
            "name": "Checkout",
            "old_status": "operational",
            "new_status": "partial_outage",
        }
    ]
    assert summary["status"]["indicator"] == "major"


def test_components_json_has_the_page_and_the_same_components_as_the_summary(client, page):
    response = client.get(reverse("status_components_json"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    body = response.json()
    assert set(body) == {"page", "components"}
    assert set(body["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    summary = client.get(reverse("status_summary_json")).json()
    assert body["components"] == summary["components"]


def test_an_empty_group_has_no_components_and_is_operational(client, db):
    Component.objects.create(name="Coming soon", is_group=True, position=1)
    [group] = client.get(reverse("status_components_json")).json()["components"]
    assert (group["group"], group["components"], group["status"]) == (True, [], "operational")


def test_no_internal_service_name_or_description_reaches_the_public(client, support_lead, page):
    _publish(support_lead, {page["checkout"]: "major_outage"})
    surfaces = "".join(
        client.get(reverse(name)).content.decode()
        for name in (
            "status_page",
            "status_summary_json",
            "status_components_json",
            "status_history_atom",
        )
    )
    for internal in ("payments-api", "storefront-api", "vpc-1", "Deployment payments/api"):
        assert internal not in surfaces


def test_the_page_shows_each_group_with_its_components_under_it(client, support_lead, page):
    _publish(support_lead, {page["checkout"]: "major_outage"})
    html = client.get(reverse("status_page")).content.decode()
    group = html[html.index(f'id="component-{page["group"].pk}"') :]
    group = group[: group.index("</tbody>")]
    assert '<th scope="rowgroup">Online store' in group
    assert "Major outage" in group  # the group's state: its worst member's
    assert group.index("Storefront") < group.index("Checkout")
    assert f'id="component-{page["checkout"].pk}"' in group
    assert "Basket and payments" in group
    assert f'id="component-{page["api"].pk}"' not in group


def test_a_component_shown_only_if_degraded_appears_while_it_is_not_operational(
    client, support_lead, page
):
    email = f'id="component-{page["email"].pk}"'
    assert email not in client.get(reverse("status_page")).content.decode()

    incident = incident_open()
    _publish(support_lead, {page["email"]: "degraded_performance"}, incident=incident)
    html = client.get(reverse("status_page")).content.decode()
    assert email in html and "Degraded performance" in html

    _publish(
        support_lead,
        {page["email"]: "operational"},
        incident=incident,
        version=1,
        status="resolved",
    )
    assert email not in client.get(reverse("status_page")).content.decode()


def test_a_group_whose_components_are_all_hidden_is_left_out(client, db):
    group = Component.objects.create(name="Notifications", is_group=True, position=1)
    Component.objects.create(name="SMS", group=group, position=1, only_show_if_degraded=True)
    html = client.get(reverse("status_page")).content.decode()
    assert "Notifications" not in html and "SMS" not in html
    assert "No components listed." in html


def test_a_groups_own_state_never_counts_towards_the_indicator(client, page):
    Component.objects.filter(pk=page["group"].pk).update(status="major_outage")
    summary = client.get(reverse("status_summary_json")).json()
    assert summary["status"]["indicator"] == "none"
    assert summary["components"][0]["status"] == "operational"


def test_a_draft_cannot_set_a_groups_state(support_lead, page):
    with pytest.raises(services.DomainError, match="Unknown component"):
        _publish(support_lead, {page["group"]: "major_outage"})


def test_the_summary_with_groups_takes_a_fixed_number_of_queries(
    client, support_lead, page, django_assert_max_num_queries
):
    for _ in range(3):
        _publish(support_lead, {page["checkout"]: "partial_outage", page["api"]: "major_outage"})
    # Components, incidents with their revisions and components, the maintenances (none
    # here), and the components' history for the updates' old states.
    with django_assert_max_num_queries(6):
        client.get(reverse("status_summary_json"))
    # The page adds the uptime bars' four (statuspage.uptime).
    with django_assert_max_num_queries(10):
        client.get(reverse("status_page"))
