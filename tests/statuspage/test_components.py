"""The support lead's components page, through Django's test client: every role against
every view, adding, editing, ordering and deleting components and groups, and bad input
refused with a 400 naming the field, nothing saved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from typing import Any

import pytest
from django.urls import reverse

from incidents.errors import PermissionDenied
from statuspage import components, services
from statuspage.models import Component, PublicIncident
from tests.factories import ServiceFactory, UserFactory, incident_open
from tests.permissions import assert_reached_only_if_allowed, assert_sent_to_login

pytestmark = pytest.mark.django_db

ROLES = ["Viewer", "Responder", "Support Lead", "Approver", "Incident Commander"]


def _layout() -> list[tuple[str, str | None, int]]:
    """(name, group name, position) of every component, in page order."""
    return [
        (c.name, c.group.name if c.group else None, c.position)
        for c in sorted(
            Component.objects.select_related("group"),
            key=lambda c: (
                (c.group.position, c.group.pk, c.position) if c.group else (c.position, c.pk, 0)
            ),
        )
    ]


def _snapshot() -> list[tuple[Any, ...]]:
    return [
        (c.pk, c.name, c.description, c.group_id, c.position, c.only_show_if_degraded, c.status)
        + (tuple(c.services.order_by("pk").values_list("pk", flat=True)),)
        for c in Component.objects.order_by("pk")
    ]


@pytest.fixture
def lead_client(client, support_lead):
    client.force_login(support_lead)
    return client


@pytest.fixture
def store(db):
    """An "Online store" group holding "Storefront" and "Checkout" (fed by checkout and
    payments-api), and "API" at the top level."""
    checkout, payments = ServiceFactory(name="checkout"), ServiceFactory(name="payments-api")
    group = Component.objects.create(name="Online store", is_group=True, position=1)
    storefront = Component.objects.create(name="Storefront", group=group, position=1)
    cart = Component.objects.create(name="Checkout", group=group, position=2)
    cart.services.set([checkout, payments])
    api = Component.objects.create(name="API", position=2)
    return {"group": group, "storefront": storefront, "checkout": cart, "api": api}


# -- every role, every view --------------------------------------------------------------------


@dataclass
class Case:
    name: str
    request: Callable[[], tuple[str, str, dict[str, Any]]]

    def __str__(self) -> str:
        return self.name


def _component() -> Component:
    return Component.objects.create(name="Search", position=1)


CASES = [
    Case("status_components", lambda: ("get", reverse("status_components"), {})),
    Case(
        "status_component_create",
        lambda: ("post", reverse("status_component_create"), {"name": "Search"}),
    ),
    Case(
        "status_component_edit_form",
        lambda: ("get", reverse("status_component_edit", args=[_component().pk]), {}),
    ),
    Case(
        "status_component_edit",
        lambda: ("post", reverse("status_component_edit", args=[_component().pk]), {"name": "S"}),
    ),
    Case(
        "status_component_move",
        lambda: (
            "post",
            reverse("status_component_move", args=[_component().pk]),
            {"direction": "up"},
        ),
    ),
    Case(
        "status_component_delete",
        lambda: ("post", reverse("status_component_delete", args=[_component().pk]), {}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_anonymous_visitor_is_sent_to_login(client, roles, case):
    assert_sent_to_login(client, *case.request())


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_only_the_support_lead_reaches_the_components_page(client, roles, case, role):
    client.force_login(UserFactory(roles=[role]))
    method, url, data = case.request()
    allowed = role == "Support Lead"
    assert_reached_only_if_allowed(client, method, url, data, allowed=allowed)


def test_every_service_refuses_a_person_without_the_role(roles, store):
    viewer = UserFactory(roles=["Viewer"])
    calls = [
        lambda: components.component_create(actor=viewer, name="Search"),
        lambda: components.component_update(
            actor=viewer,
            component=store["api"],
            name="API",
            description="",
            group_id=None,
            only_show_if_degraded=False,
            service_ids=[],
        ),
        lambda: components.component_move(actor=viewer, component=store["api"], offset=-1),
        lambda: components.components_reorder(actor=viewer, group_id=None, order=[]),
        lambda: components.component_delete(actor=viewer, component=store["api"]),
    ]
    before = _snapshot()
    for call in calls:
        with pytest.raises(PermissionDenied):
            call()
    assert _snapshot() == before


# -- the page ------------------------------------------------------------------------------------


def test_the_page_lists_groups_with_their_components_and_the_services_feeding_them(
    lead_client, store
):
    page = lead_client.get(reverse("status_components")).content.decode()
    assert page.index("Online store") < page.index("Storefront") < page.index("Checkout")
    assert page.index("Checkout") < page.index(">API<")
    assert "checkout, payments-api" in page
    assert 'id="add-component"' in page and 'id="add-group"' in page


def test_the_console_links_the_components_page_for_the_support_lead_only(client, roles):
    client.force_login(UserFactory(roles=["Support Lead"]))
    assert reverse("status_components") in client.get(reverse("dashboard")).content.decode()
    client.force_login(UserFactory(roles=["Incident Commander"]))
    assert reverse("status_components") not in client.get(reverse("dashboard")).content.decode()


def test_the_support_lead_adds_a_group_then_a_component_fed_by_several_services(lead_client, db):
    checkout, payments = ServiceFactory(name="checkout"), ServiceFactory(name="payments-api")
    response = lead_client.post(
        reverse("status_component_create"),
        {"kind": "group", "name": "Online store", "description": "What shoppers use"},
    )
    assert response.status_code == 302
    group = Component.objects.get(name="Online store")
    assert (group.is_group, group.group_id, group.position) == (True, None, 1)

    response = lead_client.post(
        reverse("status_component_create"),
        {
            "kind": "component",
            "name": "  Checkout ",
            "description": "Basket and payments",
            "group": str(group.pk),
            "services": [checkout.pk, payments.pk],
            "only_show_if_degraded": "on",
        },
    )
    assert response.status_code == 302
    component = Component.objects.get(name="Checkout")
    assert component.group == group and not component.is_group
    assert component.description == "Basket and payments"
    assert component.only_show_if_degraded is True
    assert set(component.services.all()) == {checkout, payments}
    assert component.status == "operational" and component.position == 1
    page = lead_client.get(response["Location"]).content.decode()
    assert "Component Checkout added." in page


def test_an_htmx_post_answers_with_the_list_fragment(lead_client, db):
    response = lead_client.post(
        reverse("status_component_create"), {"name": "Search"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="components"') and "<html" not in body
    assert "Component Search added." in body


def test_a_service_feeds_several_components_and_a_component_stands_for_several(lead_client, store):
    payments = store["checkout"].services.get(name="payments-api")
    lead_client.post(
        reverse("status_component_create"), {"name": "Dashboard", "services": [payments.pk]}
    )
    fed = Component.objects.filter(services=payments).order_by("name")
    assert [c.name for c in fed] == ["Checkout", "Dashboard"]
    assert store["checkout"].services.count() == 2


def test_the_same_name_may_stand_in_two_groups(roles, support_lead):
    europe = components.component_create(actor=support_lead, name="Europe", is_group=True)
    america = components.component_create(actor=support_lead, name="Americas", is_group=True)
    components.component_create(actor=support_lead, name="API", group_id=europe.pk)
    components.component_create(actor=support_lead, name="API", group_id=america.pk)
    assert Component.objects.filter(name="API").count() == 2


# -- bad input: 400 naming the field, nothing saved ----------------------------------------------

LONG_NAME = "N" * (components.NAME_MAX + 1)
LONG_DESCRIPTION = "d" * (components.DESCRIPTION_MAX + 1)


def _bad_posts(store: dict[str, Component]) -> list[tuple[str, dict[str, Any], str]]:
    group, other = store["group"], store["api"]
    staging = ServiceFactory(name="checkout-staging", environment="staging")
    return [
        ("blank name", {"name": "   "}, "Name:"),
        ("no name at all", {}, "Name:"),
        ("over-length name", {"name": LONG_NAME}, "Name: at most 100 characters (this has 101)"),
        ("bell in the name", {"name": "Check\x07out"}, "Name: control characters"),
        ("new line in the name", {"name": "Check\nout"}, "Name: control characters"),
        ("tab in the name", {"name": "Check\tout"}, "Name: control characters"),
        ("NUL in the name", {"name": "Check\x00out"}, "Name:"),
        ("C1 control in the name", {"name": "Check\x85out"}, "Name: control characters"),
        ("right-to-left override", {"name": "\u202etuokcehC"}, "Name: control characters"),
        ("line separator", {"name": "Check\u2028out"}, "Name: control characters"),
        ("over-length description", {"name": "Search", "description": LONG_DESCRIPTION}, "Desc"),
        ("escape in description", {"name": "Search", "description": "a\x1b[31m"}, "Description:"),
        (
            "a component in two groups",
            {"name": "Search", "group": [str(group.pk), str(other.pk)]},
            "Group: a component belongs to at most one group",
        ),
        ("an unknown group", {"name": "Search", "group": "99999"}, "Group: there is no group"),
        ("a component as group", {"name": "Search", "group": str(other.pk)}, "Group:"),
        ("a group that is no number", {"name": "Search", "group": "online"}, "Group:"),
        ("a group id past bigint", {"name": "Search", "group": "9" * 30}, "is not a group"),
        (
            "a group inside a group",
            {"kind": "group", "name": "Nested", "group": str(group.pk)},
            "Group: groups do not nest",
        ),
        (
            "a group fed by services",
            {
                "kind": "group",
                "name": "Fed",
                "services": [store["checkout"].services.get(name="checkout").pk],
            },
            "Services: a group is fed by its components",
        ),
        (
            "a group shown only if degraded",
            {"kind": "group", "name": "Hidden", "only_show_if_degraded": "on"},
            "Only show if degraded:",
        ),
        ("an unknown service", {"name": "Search", "services": ["99999"]}, "services:"),
        ("a staging service", {"name": "Search", "services": [str(staging.pk)]}, "services:"),
        ("a name taken at its level", {"name": "api"}, "Name: 'api' is already listed"),
        (
            "a name taken in its group",
            {"name": "CHECKOUT", "group": str(group.pk)},
            "Name: 'CHECKOUT' is already listed in Online store",
        ),
        ("an unknown kind", {"kind": "folder", "name": "Search"}, "Kind:"),
    ]


def test_bad_input_to_create_answers_400_naming_the_field_and_saves_nothing(lead_client, store):
    for label, data, message in _bad_posts(store):
        before = _snapshot()
        response = lead_client.post(reverse("status_component_create"), data)
        assert response.status_code == 400, label
        assert message.lower() in unescape(response.content.decode()).lower(), label
        assert _snapshot() == before, label


@pytest.mark.parametrize(
    ("field", "data", "message"),
    [
        ("name", {"name": ""}, "Name:"),
        ("name", {"name": LONG_NAME}, "Name: at most 100"),
        ("name", {"name": "Store\x7f"}, "Name: control characters"),
        ("name", {"name": "Storefront\r\n"}, None),  # stripped: fine
        ("group", {"name": "Storefront", "group": ["1", "2"]}, "Group: a component belongs"),
    ],
)
def test_bad_input_to_edit_answers_400_and_changes_nothing(
    lead_client, store, field, data, message
):
    if isinstance(data.get("group"), list):
        data["group"] = [str(store["group"].pk), str(store["api"].pk)]
    before = _snapshot()
    response = lead_client.post(
        reverse("status_component_edit", args=[store["storefront"].pk]), data
    )
    if message is None:
        assert response.status_code == 302
        return
    assert response.status_code == 400
    body = unescape(response.content.decode())
    assert message in body
    assert 'role="alert"' in body
    assert _snapshot() == before


def test_a_group_cannot_be_put_inside_another_by_editing(lead_client, store):
    other = Component.objects.create(name="Developers", is_group=True, position=3)
    before = _snapshot()
    response = lead_client.post(
        reverse("status_component_edit", args=[other.pk]),
        {"name": "Developers", "group": str(store["group"].pk)},
    )
    assert response.status_code == 400
    assert "Group: groups do not nest" in response.content.decode()
    assert _snapshot() == before


@pytest.mark.parametrize(
    "name",
    [
        "N" * components.NAME_MAX,
        "結帳與付款",
        "お支払い 🛒",
        "👩‍💻 Developer API",  # a joiner inside the emoji
        "الدفع والطلبات",
        "\u200fתשלומים",  # a right-to-left mark before Hebrew
        "Ödeme / Zahlungen",
    ],
)
def test_names_at_the_limit_and_in_any_script_are_saved_as_typed(lead_client, db, name):
    description = "ü" * components.DESCRIPTION_MAX
    response = lead_client.post(
        reverse("status_component_create"), {"name": name, "description": description}
    )
    assert response.status_code == 302, response.content.decode()[:500]
    component = Component.objects.get()
    assert (component.name, component.description) == (name, description)
    assert name in lead_client.get(reverse("status_page")).content.decode()


def test_a_name_in_decomposed_form_is_kept_composed_and_found_taken(lead_client, db):
    lead_client.post(reverse("status_component_create"), {"name": "Cafe\u0301"})
    assert Component.objects.get().name == "Café"
    response = lead_client.post(reverse("status_component_create"), {"name": "CAFÉ"})
    assert response.status_code == 400
    assert Component.objects.count() == 1


# -- editing, ordering, deleting -----------------------------------------------------------------


def test_editing_changes_the_public_fields_and_services_and_never_the_state(lead_client, store):
    store["checkout"].status = "partial_outage"
    store["checkout"].save()
    storefront_web = ServiceFactory(name="storefront-web")
    response = lead_client.post(
        reverse("status_component_edit", args=[store["checkout"].pk]),
        {
            "name": "Checkout & payments",
            "description": "Cards and wallets",
            "group": str(store["group"].pk),
            "services": [storefront_web.pk],
        },
    )
    assert response.status_code == 302
    checkout = Component.objects.get(pk=store["checkout"].pk)
    assert (checkout.name, checkout.description) == ("Checkout & payments", "Cards and wallets")
    assert list(checkout.services.all()) == [storefront_web]
    assert checkout.status == "partial_outage"


def test_the_edit_form_shows_what_is_saved(lead_client, store):
    page = lead_client.get(reverse("status_component_edit", args=[store["checkout"].pk]))
    body = page.content.decode()
    assert 'value="Checkout"' in body
    assert f'<option value="{store["group"].pk}" selected>Online store</option>' in body
    for service in store["checkout"].services.all():
        assert f'value="{service.pk}"' in body


def test_moving_a_component_to_another_group_puts_it_last_there_and_closes_the_gap(
    lead_client, store
):
    developers = Component.objects.create(name="Developers", is_group=True, position=3)
    Component.objects.create(name="Webhooks", group=developers, position=1)
    lead_client.post(
        reverse("status_component_edit", args=[store["storefront"].pk]),
        {"name": "Storefront", "group": str(developers.pk)},
    )
    assert _layout() == [
        ("Online store", None, 1),
        ("Checkout", "Online store", 1),
        ("API", None, 2),
        ("Developers", None, 3),
        ("Webhooks", "Developers", 1),
        ("Storefront", "Developers", 2),
    ]
    lead_client.post(
        reverse("status_component_edit", args=[store["storefront"].pk]), {"name": "Storefront"}
    )
    assert ("Storefront", None, 4) in _layout()


def test_up_and_down_reorder_among_siblings_and_stop_at_the_ends(lead_client, store):
    move = reverse("status_component_move", args=[store["api"].pk])
    assert lead_client.post(move, {"direction": "up"}).status_code == 302
    assert [row for row in _layout() if row[1] is None] == [
        ("API", None, 1),
        ("Online store", None, 2),
    ]
    lead_client.post(move, {"direction": "up"})  # already first
    assert ("API", None, 1) in _layout()
    lead_client.post(
        reverse("status_component_move", args=[store["storefront"].pk]), {"direction": "down"}
    )
    assert [row for row in _layout() if row[1] == "Online store"] == [
        ("Checkout", "Online store", 1),
        ("Storefront", "Online store", 2),
    ]


def test_an_unknown_direction_answers_400(lead_client, store):
    before = _snapshot()
    response = lead_client.post(
        reverse("status_component_move", args=[store["api"].pk]), {"direction": "sideways"}
    )
    assert response.status_code == 400
    assert "Direction:" in response.content.decode()
    assert _snapshot() == before


def test_reordering_must_name_every_sibling_once(roles, support_lead, store):
    before = _snapshot()
    for order in ([store["api"].pk], [store["api"].pk, store["api"].pk], [store["checkout"].pk]):
        with pytest.raises(components.ComponentRefused, match="^Order:"):
            components.components_reorder(actor=support_lead, group_id=None, order=order)
    assert _snapshot() == before
    components.components_reorder(
        actor=support_lead,
        group_id=store["group"].pk,
        order=[store["checkout"].pk, store["storefront"].pk],
    )
    assert _layout()[1:3] == [("Checkout", "Online store", 1), ("Storefront", "Online store", 2)]


def test_deleting_a_group_keeps_its_components_at_its_place(lead_client, store):
    Component.objects.create(name="Status", position=3)
    response = lead_client.post(reverse("status_component_delete", args=[store["group"].pk]))
    assert response.status_code == 302
    assert _layout() == [
        ("Storefront", None, 1),
        ("Checkout", None, 2),
        ("API", None, 3),
        ("Status", None, 4),
    ]
    assert store["checkout"].services.count() == 2


@pytest.mark.parametrize("top_name", ["Checkout", "Online store"])
def test_a_group_whose_member_would_clash_at_the_top_level_is_not_deleted(
    lead_client, store, top_name
):
    if top_name == "Checkout":
        Component.objects.create(name="Checkout", position=3)
    else:
        store["storefront"].name = "Online store"
        store["storefront"].save()
    before = _snapshot()
    response = lead_client.post(reverse("status_component_delete", args=[store["group"].pk]))
    assert response.status_code == 400 and "rename one first" in response.content.decode()
    assert _snapshot() == before


def test_deleting_a_component_takes_it_off_the_page_and_its_json(lead_client, client, store):
    response = lead_client.post(reverse("status_component_delete", args=[store["api"].pk]))
    assert response.status_code == 302
    assert not Component.objects.filter(pk=store["api"].pk).exists()
    summary = client.get(reverse("status_summary_json")).json()
    assert "API" not in [c["name"] for c in summary["components"]]


def test_a_component_an_unresolved_incident_lists_cannot_be_deleted(
    lead_client, support_lead, store
):
    incident = incident_open()
    services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=0,
        name="Payments failing",
        status="investigating",
        impact="major",
        body="Looking.",
        component_statuses={str(store["checkout"].pk): "major_outage"},
    )
    before = _snapshot()
    for target in (store["checkout"], store["group"]):
        response = lead_client.post(reverse("status_component_delete", args=[target.pk]))
        assert response.status_code == 400
        assert "Component: the unresolved incident 'Payments failing'" in unescape(
            response.content.decode()
        )
    assert _snapshot() == before
    services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=1,
        name="Payments failing",
        status="resolved",
        impact="major",
        body="Fixed.",
        component_statuses={str(store["checkout"].pk): "operational"},
    )
    response = lead_client.post(reverse("status_component_delete", args=[store["checkout"].pk]))
    assert response.status_code == 302
    assert list(PublicIncident.objects.get().components.all()) == []


def test_a_restored_revision_leaves_out_components_deleted_since(support_lead, store):
    incident = incident_open()
    revision = services.draft_publish(
        incident=incident,
        actor=support_lead,
        version=0,
        name="Slow API",
        status="resolved",
        impact="minor",
        body="Fixed.",
        component_statuses={
            str(store["api"].pk): "operational",
            str(store["checkout"].pk): "operational",
        },
    )
    components.component_delete(actor=support_lead, component=store["api"])
    draft = services.revision_restore(revision=revision, actor=support_lead, version=1)
    assert draft.component_statuses == {str(store["checkout"].pk): "operational"}
