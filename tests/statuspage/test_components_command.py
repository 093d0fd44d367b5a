"""`manage.py status_components`: the demo's customer-facing layout as bin/demo runs it,
and the components page's operations from a terminal, with the same checks and role."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from devinfra import demo_services
from devinfra.demo_seeding import kubernetes_services
from incidents.demo import DEMO_INCIDENT_SERVICES
from statuspage.components import PlannedGroup
from statuspage.demo import DEMO_LAYOUT
from statuspage.models import Component
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db

# The demo's services (devinfra.demo and devinfra.kube_standin's seed).
DEMO_SERVICES = (
    "checkout",
    "web-frontend",
    "status-dns",
    "new-checkout-flow",
    "orders-db",
    "orders-schema",
    "orders-integrity",
    "storefront-web",
    "storefront-api",
    "storefront-worker",
    "payments-api",
)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("status_components", *args, stdout=out)
    return out.getvalue()


def _tree() -> list[tuple[str, list[str], bool, list[str]]]:
    """(name, services, only shown if degraded, members) of each top-level line."""
    tree = []
    for top in Component.objects.filter(group=None).order_by("position"):
        members = [m.name for m in top.members.order_by("position")]
        fed = sorted(top.services.values_list("name", flat=True))
        tree.append((top.name, fed, top.only_show_if_degraded, members))
    return tree


def test_the_demo_gets_customer_facing_components_with_several_services_behind_checkout(db):
    for name in DEMO_SERVICES:
        ServiceFactory(name=name, description=f"internal: {name}")
    ServiceFactory(name="storefront-web", environment="staging")

    output = _run()  # as bin/demo runs it

    assert "8 status-page component(s) and group(s) created" in output
    assert _tree() == [
        ("Online store", [], False, ["Storefront", "Checkout", "Order history"]),
        ("For merchants", [], False, ["Dashboard", "API"]),
        ("Email notifications", ["storefront-worker"], True, []),
    ]
    checkout = Component.objects.get(name="Checkout")
    assert sorted(checkout.services.values_list("name", flat=True)) == [
        "checkout",
        "new-checkout-flow",
        "payments-api",
        "storefront-api",
    ]
    assert sorted(
        Component.objects.get(name="Storefront").services.values_list("name", flat=True)
    ) == ["storefront-web", "web-frontend"]
    assert not Component.objects.filter(services__name__in=["status-dns", "orders-integrity"])
    for component in Component.objects.all():
        assert "internal" not in component.description and component.description


def test_the_demo_layout_names_the_services_the_demo_seeds_and_its_incident_names():
    planned = [
        member
        for item in DEMO_LAYOUT
        for member in (item.components if isinstance(item, PlannedGroup) else (item,))
    ]
    named = {name for member in planned for name in member.services}
    seeded = {service.name for service in kubernetes_services()}
    seeded |= set(re.findall(r'"([a-z][a-z0-9-]+)"', Path(demo_services.__file__).read_text()))
    assert named <= seeded
    assert named <= set(DEMO_SERVICES)
    assert set(DEMO_INCIDENT_SERVICES) <= named  # the live incident's desk has suggestions


def test_running_the_demo_layout_again_creates_nothing_and_keeps_edits(db):
    for name in DEMO_SERVICES:
        ServiceFactory(name=name)
    _run()
    Component.objects.filter(name="API").update(description="Edited by the support lead")
    assert "0 status-page component(s)" in _run("demo")
    assert Component.objects.count() == 8
    assert Component.objects.get(name="API").description == "Edited by the support lead"


def test_without_the_demo_infrastructure_only_checkout_is_laid_out(db):
    ServiceFactory(name="checkout")  # incidents.demo's fallback service
    _run()
    assert _tree() == [("Online store", [], False, ["Checkout"])]


def test_a_console_without_the_demos_services_gets_no_component(db):
    ServiceFactory(name="billing")
    assert "0 status-page component(s)" in _run()
    assert not Component.objects.exists()


def test_the_support_lead_builds_the_page_from_a_terminal(roles, db):
    UserFactory(username="sam", roles=["Support Lead"])
    ServiceFactory(name="checkout")
    ServiceFactory(name="payments-api")

    assert "Added the group Online store" in _run("add-group", "Online store", "--as", "sam")
    _run(
        "add",
        "Checkout",
        "--group",
        "Online store",
        "--service",
        "checkout",
        "--service",
        "payments-api",
        "--description",
        "Basket and payments",
        "--as",
        "sam",
    )
    _run("add", "Storefront", "--group", "Online store", "--as", "sam")
    _run("add", "Email", "--only-show-if-degraded", "--as", "sam")
    _run("order", "--group", "Online store", "Storefront", "Checkout", "--as", "sam")
    _run("edit", "Email", "--name", "Email notifications", "--always-show", "--as", "sam")

    assert _tree() == [
        ("Online store", [], False, ["Storefront", "Checkout"]),
        ("Email notifications", [], False, []),
    ]
    listing = _run("list")
    assert " 1. [group] Online store" in listing
    assert "     2. Checkout" in listing and "fed by checkout, payments-api" in listing

    _run("edit", "Checkout", "--no-group", "--no-services", "--as", "sam")
    assert ("Checkout", [], False, []) in _tree()
    assert "Removed Online store" in _run("remove", "Online store", "--as", "sam")
    assert [line[0] for line in _tree()] == ["Storefront", "Email notifications", "Checkout"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "   "), "Name: give it one"),
        (("add", "N" * 101), "Name: at most 100 characters"),
        (("add", "Check\x1bout"), "Name: control characters"),
        (("add", "Search", "--group", "Online store", "--group", "Developers"), "Group: a comp"),
        (("add", "Search", "--group", "API"), "--group: 'API' is a component"),
        (("add", "Search", "--service", "nope"), "service: no production service named"),
        (("add-group", "Nested", "--description", "x" * 301), "Description: at most 300"),
        (("edit", "Online store", "--group", "Developers"), "Group: groups do not nest"),
        (("edit", "Nothing"), "component: none is named"),
        (("order", "API"), "Order: name each component"),
    ],
)
def test_bad_input_from_a_terminal_is_refused_and_saves_nothing(roles, db, args, message):
    UserFactory(username="sam", roles=["Support Lead"])
    Component.objects.create(name="Online store", is_group=True, position=1)
    Component.objects.create(name="Developers", is_group=True, position=2)
    Component.objects.create(name="API", position=3)
    before = list(Component.objects.order_by("pk").values())
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        _run(*args, "--as", "sam")
    assert list(Component.objects.order_by("pk").values()) == before


def test_a_person_without_the_role_is_refused(roles, db):
    UserFactory(username="ic", roles=["Incident Commander"])
    with pytest.raises(CommandError, match="--as ic: You do not have the role"):
        _run("add", "Search", "--as", "ic")
    assert not Component.objects.exists()


def test_names_in_any_script_are_added_from_a_terminal(roles, db):
    UserFactory(username="sam", roles=["Support Lead"])
    _run("add", "お支払い 🛒", "--as", "sam")
    assert Component.objects.get().name == "お支払い 🛒"
