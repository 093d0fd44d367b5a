"""The status page's components over the API: listed with `read`, and created, changed,
reordered and deleted with `statuspage:write` by a Support Lead, through the same services
as the console's components page; every refusal names its field and saves nothing."""

from __future__ import annotations

from typing import Any

import pytest

from incidents.models import Environment
from statuspage.models import Component, ComponentStatusChange
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db
LEAD = ["Support Lead"]
PATH = "/status-page/components"


@pytest.fixture
def lead_api(api_as):
    return api_as(LEAD, "statuspage:write", "read", user=UserFactory(username="sam", roles=LEAD))


def snapshot() -> list[tuple[Any, ...]]:
    return [
        (c.pk, c.name, c.description, c.group_id, c.position, c.only_show_if_degraded)
        + (tuple(c.services.order_by("pk").values_list("pk", flat=True)),)
        for c in Component.objects.order_by("pk")
    ]


def test_the_support_lead_lays_out_a_group_with_a_component_fed_by_two_services(lead_api):
    payments = ServiceFactory(name="payments-api", environment=Environment.PRODUCTION)
    checkout = ServiceFactory(name="checkout", environment=Environment.PRODUCTION)
    group = lead_api.call("post", PATH, {"name": "Online store 网店 🛒", "is_group": True})
    assert group.status_code == 201, group.content
    made = lead_api.call(
        "post",
        PATH,
        {
            "name": "Checkout الدفع",
            "description": "Basket and payments",
            "group": group.json()["id"],
            "services": [payments.pk, checkout.pk],
        },
    )
    assert made.status_code == 201, made.content
    shown = made.json()
    assert shown["group"] == group.json()["id"] and shown["position"] == 1
    assert shown["services"] == ["checkout", "payments-api"]
    assert shown["status"] == "operational"
    # Its uptime history starts when it is made.
    assert ComponentStatusChange.objects.filter(component_id=shown["id"]).count() == 1
    listed = lead_api.call("get", PATH).json()
    assert [c["name"] for c in listed] == ["Online store 网店 🛒", "Checkout الدفع"]


def test_a_change_keeps_the_fields_not_given_and_moves_to_the_top_level(lead_api):
    group = Component.objects.create(name="Shop", is_group=True, position=1)
    api = Component.objects.create(name="API", group=group, position=1, description="REST")
    response = lead_api.call("patch", f"{PATH}/{api.pk}", {"group": 0})
    assert response.status_code == 200, response.content
    api.refresh_from_db()
    assert (api.group_id, api.description, api.name) == (None, "REST", "API")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Check\x07out"}, "name"),
        ({"name": "<b>Checkout</b>\u202e"}, "name"),
        ({"name": "Checkout", "description": "d" * 301}, "description"),
        ({"name": "Checkout", "group": 999999}, "group"),
        ({"name": "Checkout", "services": [999999]}, "services"),
    ],
)
def test_refused_input_names_its_field_and_saves_nothing(lead_api, body, field):
    before = snapshot()
    response = lead_api.call("post", PATH, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert snapshot() == before


def test_reordering_needs_every_sibling_once(lead_api):
    first = Component.objects.create(name="A", position=1)
    second = Component.objects.create(name="B", position=2)
    bad = lead_api.call("put", f"{PATH}/order", {"order": [first.pk]})
    assert bad.status_code == 400 and "order" in bad.json()["errors"]
    good = lead_api.call("put", f"{PATH}/order", {"order": [second.pk, first.pk]})
    assert good.status_code == 200, good.content
    assert [c["name"] for c in good.json()] == ["B", "A"]


def test_without_the_role_or_the_scope_nothing_changes(api_as):
    component = Component.objects.create(name="Checkout", position=1)
    viewer = api_as(["Viewer"], "read")
    assert viewer.call("get", PATH).status_code == 200
    assert viewer.call("delete", f"{PATH}/{component.pk}").status_code == 403
    responder = api_as(["Responder"], "read")
    assert responder.call("post", PATH, {"name": "X"}).status_code == 403
    assert Component.objects.filter(pk=component.pk).exists()


def test_the_support_lead_deletes_a_component(lead_api):
    component = Component.objects.create(name="Old", position=1)
    assert lead_api.call("delete", f"{PATH}/{component.pk}").status_code == 204
    assert not Component.objects.filter(pk=component.pk).exists()
