"""Importing services from what platforms run: Kubernetes (the stand-in), ECS, Route 53,
RDS and S3 + CloudFront (moto, seeded as the demo seeds them), from the page and from
`manage.py discover`; listing again shows what changed. Names stay unique, a re-import keeps
what was added by hand, and odd input is an error on its field, never a 500."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from devinfra.demo_services import seed_database, seed_dns, seed_ecs, seed_static_frontend
from executors.aws import aws_client
from executors.base import Connections
from executors.discovery import NAME_MAX, Candidate, slug
from incidents.models import Service
from rollbacks.services import discovery
from rollbacks.services.discovery import (
    CHANGED,
    NEW,
    SAME,
    discovery_import,
    discovery_rows,
    discovery_scan,
    merged_config,
)
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ic(client, roles):
    user = UserFactory(username="ic", roles=["Incident Commander"])
    client.force_login(user)
    return user


def test_a_namespace_is_listed_imported_and_listed_again(client, ic, shop):
    url = reverse("service_discover")
    listing = client.get(
        url, {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    )
    page = listing.content.decode()
    assert listing.status_code == 200 and "r/web:v1" in page and "r/api:v7" in page
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    response = client.post(url, {**query, "import": ["web", "api"]})
    assert response.status_code == 302
    web = Service.objects.get(name="web")
    assert web.backend == "kubernetes"
    assert web.target_config == {"namespace": "shop", "deployment": "web"}

    web.target_config = {"namespace": "shop", "deployment": "web-v1"}  # moved since
    web.save()
    states = {
        row.candidate.name: row.state
        for row in discovery_scan(
            source="kubernetes", params={"namespace": "shop"}, environment="production", actor=ic
        )
    }
    assert states == {"web": CHANGED, "api": SAME}


def test_a_label_selector_narrows_the_listing(ic, shop):
    rows = discovery_scan(
        source="kubernetes",
        params={"namespace": "shop", "selector": "tier=api"},
        environment="production",
        actor=ic,
    )
    assert [(row.candidate.name, row.state) for row in rows] == [("api", NEW)]


def test_aws_sources_list_what_the_demo_seeds(ic, aws):
    seed_ecs(aws), seed_dns(aws), seed_database(aws), seed_static_frontend(aws)
    found = {}
    for source, params in (
        ("ecs", {"cluster": "storefront"}),
        ("route53", {}),
        ("rds", {}),
        ("static", {}),
    ):
        rows = discovery_scan(source=source, params=params, environment="production", actor=ic)
        found[source] = {row.candidate.name: row.candidate for row in rows}
    assert found["ecs"]["checkout"].target_config == {
        "cluster": "storefront",
        "service": "checkout",
    }
    assert "checkout:2" in found["ecs"]["checkout"].live
    record = found["route53"]["status-backout-demo-example-com"]
    assert record.target_config["record_type"] == "CNAME"
    assert found["rds"]["orders-db"].target_config == {
        "source_instance": "orders-db",
        "mode": "snapshot",
        "secret": "backout-demo/orders-db",  # the secret whose value names its address
    }
    assert any(c.target_config["distribution_id"] for c in found["static"].values())


def test_the_terminal_lists_and_imports(ic, shop, capsys):
    call_command("discover", "kubernetes", "--namespace", "shop", "--as", "ic")
    listed = capsys.readouterr().out
    assert "new      api" in listed and "2 found, 2 new" in listed
    call_command("discover", "kubernetes", "--namespace", "shop", "--import-all", "--as", "ic")
    assert set(Service.objects.values_list("name", flat=True)) == {"api", "web"}
    with pytest.raises(CommandError, match="not a Kubernetes namespace"):
        call_command("discover", "kubernetes", "--namespace", "Shop!", "--as", "ic")
    with pytest.raises(CommandError, match="cluster: required"):
        call_command("discover", "ecs", "--as", "ic")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"source": "kubernetes", "namespace": ""}, "namespace: required"),
        ({"source": "kubernetes", "namespace": "x" * 64}, "at most 63"),
        ({"source": "kubernetes", "namespace": "<script>"}, "not a Kubernetes namespace"),
        ({"source": "nope"}, "Select a valid choice"),
    ],
)
def test_bad_sources_answer_400_and_import_nothing(client, ic, shop, query, says):
    response = client.get(reverse("service_discover"), {"environment": "production", **query})
    assert response.status_code == 400
    assert says in response.content.decode().replace("&lt;", "<")
    assert not Service.objects.exists()


def test_importing_something_no_longer_there_imports_nothing(client, ic, shop):
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    response = client.post(reverse("service_discover"), {**query, "import": ["web", "gone"]})
    assert response.status_code == 400 and "gone" in response.content.decode()
    assert not Service.objects.exists()


def test_only_commanders_and_staff_import(client, roles, shop):
    client.force_login(UserFactory(roles=["Responder"]))
    assert client.get(reverse("service_discover")).status_code == 403
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    assert client.post(reverse("service_discover"), {**query, "import": ["web"]}).status_code == 403
    assert not Service.objects.exists()


def test_a_database_no_secret_points_at_is_listed_but_not_imported(ic, aws):
    aws_client(aws, "rds").create_db_instance(
        DBInstanceIdentifier="lonely",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="u",
        MasterUserPassword="password-1",
        AllocatedStorage=20,
    )
    (row,) = discovery_scan(source="rds", params={}, environment="production", actor=ic)
    assert "secret" in row.candidate.problem
    with pytest.raises(Exception, match="Cannot import as listed: lonely"):
        discovery_import(
            source="rds", params={}, environment="production", names=["lonely"], actor=ic
        )
    assert not Service.objects.exists()


def test_a_service_already_on_that_target_is_found_under_its_own_name(ic, shop):
    ServiceFactory(
        name="storefront-web",
        backend="kubernetes",
        target_config={"namespace": "shop", "deployment": "web", "checks": []},
    )
    rows = discovery_scan(
        source="kubernetes", params={"namespace": "shop"}, environment="production", actor=ic
    )
    web = next(row for row in rows if row.candidate.name == "web")
    assert web.state == SAME and web.service.name == "storefront-web"


def route53_records(aws: Connections, zone: str, *records: tuple[str, str, str]) -> None:
    """A hosted zone holding `records` (name, type, value)."""
    route53 = aws_client(aws, "route53")
    zone_id = route53.create_hosted_zone(Name=zone, CallerReference=zone)["HostedZone"]["Id"]
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": name,
                "Type": kind,
                "TTL": 60,
                "ResourceRecords": [{"Value": value}],
            },
        }
        for name, kind, value in records
    ]
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})


def test_a_and_aaaa_records_of_one_name_import_as_two_services(client, ic, aws):
    route53_records(
        aws,
        "shop.example",
        ("www.shop.example", "A", "192.0.2.10"),
        ("www.shop.example", "AAAA", "2001:db8::10"),
    )
    query = {"source": "route53", "zone": "shop.example", "environment": "production"}
    rows = discovery_scan(
        source="route53", params={"zone": "shop.example"}, environment="production", actor=ic
    )
    names = {row.candidate.target_config["record_type"]: row.candidate.name for row in rows}
    assert names == {"A": "www-shop-example-a", "AAAA": "www-shop-example-aaaa"}

    response = client.post(reverse("service_discover"), {**query, "import": list(names.values())})
    assert response.status_code == 302
    imported = {s.name: s.target_config["record_type"] for s in Service.objects.all()}
    assert imported == {"www-shop-example-a": "A", "www-shop-example-aaaa": "AAAA"}


def test_deployments_whose_names_slug_alike_get_distinct_stable_names(client, ic, kube, shop):
    kube.seed(
        [
            {"namespace": "shop", "name": "cart-v2", "images": ["r/cart:2"]},
            {"namespace": "shop", "name": "cart.v2", "images": ["r/cart:2b"]},
        ]
    )

    def listed() -> dict[str, tuple[str, str]]:
        rows = discovery_scan(
            source="kubernetes", params={"namespace": "shop"}, environment="production", actor=ic
        )
        return {
            row.candidate.name: (row.candidate.target_config["deployment"], row.state)
            for row in rows
        }

    before = listed()
    assert before["cart-v2"] == ("cart-v2", NEW) and before["cart-v2-2"] == ("cart.v2", NEW)
    assert listed() == before  # the same names every time

    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    response = client.post(reverse("service_discover"), {**query, "import": list(before)})
    assert response.status_code == 302
    deployments = dict(Service.objects.values_list("name", "target_config__deployment"))
    assert deployments == {"cart-v2": "cart-v2", "cart-v2-2": "cart.v2", "web": "web", "api": "api"}
    assert {state for _, state in listed().values()} == {SAME}


def test_a_service_of_another_platform_with_that_name_is_not_overwritten(client, ic, aws):
    seed_ecs(aws)
    kube_checkout = ServiceFactory(
        name="checkout",
        backend="kubernetes",
        target_config={"namespace": "shop", "deployment": "checkout"},
    )
    (row,) = discovery_scan(
        source="ecs", params={"cluster": "storefront"}, environment="production", actor=ic
    )
    assert (row.candidate.name, row.state) == ("checkout-2", NEW)

    query = {"source": "ecs", "cluster": "storefront", "environment": "production"}
    response = client.post(reverse("service_discover"), {**query, "import": ["checkout-2"]})
    assert response.status_code == 302
    kube_checkout.refresh_from_db()
    assert kube_checkout.backend == "kubernetes"
    assert kube_checkout.target_config == {"namespace": "shop", "deployment": "checkout"}
    ecs_checkout = Service.objects.get(name="checkout-2")
    assert ecs_checkout.target_config == {"cluster": "storefront", "service": "checkout"}


def test_a_deployment_of_another_namespace_does_not_take_over_a_service_of_its_name(ic, shop):
    ServiceFactory(name="web", target_config={"namespace": "blog", "deployment": "web"})
    rows = discovery_scan(
        source="kubernetes", params={"namespace": "shop"}, environment="production", actor=ic
    )
    assert {(row.candidate.name, row.state) for row in rows} == {("web-2", NEW), ("api", NEW)}


def test_a_service_created_meanwhile_under_that_name_is_not_overwritten(
    client, ic, shop, monkeypatch
):
    listed_before = discovery.discovery_scan

    def scan_then_someone_creates_web(**kwargs):
        rows = listed_before(**kwargs)
        ServiceFactory(name="web", backend="ecs", target_config={"cluster": "c", "service": "s"})
        return rows

    monkeypatch.setattr(discovery, "discovery_scan", scan_then_someone_creates_web)
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    response = client.post(reverse("service_discover"), {**query, "import": ["web", "api"]})
    assert response.status_code == 400 and "list again" in response.content.decode()
    assert list(Service.objects.values_list("name", "backend")) == [("web", "ecs")]


def test_reimporting_a_changed_service_keeps_what_was_added_by_hand(client, ic, shop):
    checks = [{"kind": "http", "url": "https://shop.example/healthz"}]
    ServiceFactory(
        name="web",
        description="The storefront, as the team calls it",
        target_config={
            "namespace": "shop",
            "deployment": "web-v1",
            "container": "app",
            "checks": checks,
        },
    )
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    response = client.post(reverse("service_discover"), {**query, "import": ["web"]})
    assert response.status_code == 302
    web = Service.objects.get(name="web")
    assert web.target_config == {
        "namespace": "shop",
        "deployment": "web",
        "container": "app",
        "checks": checks,
    }
    assert web.description == "The storefront, as the team calls it"


def test_the_redirect_after_importing_carries_no_csrf_token(ic, shop):

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ic)
    query = {"source": "kubernetes", "namespace": "shop", "environment": "production"}
    url = reverse("service_discover")
    assert browser.get(url, query).status_code == 200
    token = browser.cookies["csrftoken"].value
    response = browser.post(url, {**query, "csrfmiddlewaretoken": token, "import": ["web"]})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "csrfmiddlewaretoken" not in location and token not in location
    assert urlsplit(location).path == url
    assert parse_qs(urlsplit(location).query) == {key: [value] for key, value in query.items()}
    assert browser.get(location).status_code == 200


def test_a_service_still_on_its_own_target_is_not_taken_for_a_moved_one(ic, kube, shop):
    kube.seed([{"namespace": "shop", "name": "frontend", "images": ["r/frontend:3"]}])
    ServiceFactory(name="web", target_config={"namespace": "shop", "deployment": "frontend"})
    rows = discovery_scan(
        source="kubernetes", params={"namespace": "shop"}, environment="production", actor=ic
    )
    states = {
        row.candidate.target_config["deployment"]: (row.candidate.name, row.state) for row in rows
    }
    assert states["frontend"] == ("frontend", SAME) and states["web"] == ("web-2", NEW)


def test_names_shortened_to_the_limit_keep_their_suffix():
    long = "checkout-" + "x" * 90
    candidates = [
        Candidate(slug(f"{long}-{n}"), "ecs", {"cluster": "c", "service": f"{long}-{n}"})
        for n in (1, 2, 3)
    ]
    names = [row.candidate.name for row in discovery_rows(candidates, [])]
    assert names == [names[0], f"{names[0][: NAME_MAX - 2]}-2", f"{names[0][: NAME_MAX - 2]}-3"]
    assert all(len(name) <= NAME_MAX for name in names)


def test_a_database_mode_chosen_by_hand_survives_a_reimport():
    orders = ServiceFactory(
        name="orders-db",
        backend="database",
        target_config={"source_instance": "orders-db", "mode": "point_in_time", "secret": "old"},
    )
    listed = Candidate(
        "orders-db",
        "database",
        {"source_instance": "orders-db", "mode": "snapshot", "secret": "orders/new"},
        identity=("source_instance",),
        suggested=("mode",),
    )
    (row,) = discovery_rows([listed], [orders])
    assert row.state == CHANGED and row.was == {"secret": "old"} and not row.candidate.problem
    assert merged_config(orders.target_config, listed) == {
        "source_instance": "orders-db",
        "mode": "point_in_time",
        "secret": "orders/new",
    }
    orders.target_config = {**orders.target_config, "secret": "orders/new"}
    (row,) = discovery_rows([listed], [orders])
    assert row.state == SAME


# Odd input: values at and past their length limits, scripts other than Latin, emoji,
# right-to-left marks, control characters and NUL. Each is an error on its field (400) or a
# CommandError, never a 500.

SOURCE_OF = {"namespace": "kubernetes", "selector": "kubernetes", "cluster": "ecs"}
# What the other fields of each source need for the one under test to be looked at.
GIVEN = {"namespace": {}, "selector": {"namespace": "shop"}, "cluster": {}}
TOO_LONG = {"namespace": "n" * 64, "selector": "tier=" + "w" * 249, "cluster": "c" * 256}
ODD_TEXT = {
    "cjk": "商店",
    "emoji": "shop🛒",
    "rtl": "shop\u202eweb",
    "bell": "sh\x07op",
    "newline": "sh\nop",
    "nul": "shop\x00",
}
BAD_VALUES = [
    pytest.param(field, value, id=f"{field}-{label}")
    for field in SOURCE_OF
    for label, value in {"too-long": TOO_LONG[field], **ODD_TEXT}.items()
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_the_page_names_the_field_of_a_value_it_cannot_use(client, ic, shop, aws, field, value):
    query = {"source": SOURCE_OF[field], "environment": "production", **GIVEN[field]}
    response = client.get(reverse("service_discover"), {**query, field: value})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    label = response.context["form"][field].label
    assert f'<p class="error">{label}: ' in response.content.decode()


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_importing_with_a_value_it_cannot_use_imports_nothing(client, ic, shop, aws, field, value):
    query = {"source": SOURCE_OF[field], "environment": "production", **GIVEN[field]}
    response = client.post(reverse("service_discover"), {**query, field: value, "import": ["web"]})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not Service.objects.exists()


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_the_terminal_names_the_option_of_a_value_it_cannot_use(ic, shop, aws, field, value):
    options = [f"--{name}={given}" for name, given in GIVEN[field].items()]
    with pytest.raises(CommandError, match=f"^{field}: "):
        call_command("discover", SOURCE_OF[field], *options, f"--{field}={value}", "--as", "ic")


def test_values_at_their_length_limits_are_asked_of_the_platform(client, ic, shop, aws):
    selector = "tier=" + "w" * 58 + ",app in (" + ",".join(["a" * 60] * 2) + ")"
    selector += "," + "k" * (253 - len(selector) - 1)
    assert len(selector) == 253
    url = reverse("service_discover")
    for query, status, says in (
        ({"source": "kubernetes", "namespace": "n" * 63}, 200, "Nothing found there"),
        ({"source": "kubernetes", "namespace": "shop", "selector": selector}, 200, "Nothing"),
        ({"source": "ecs", "cluster": "c" * 255}, 400, "Cluster not found"),
    ):
        response = client.get(url, {**query, "environment": "production"})
        assert not response.context["form"].errors, query
        assert response.status_code == status and says in response.content.decode(), query


def test_a_selector_in_the_kubernetes_grammar_is_accepted(client, ic, shop):
    response = client.get(
        reverse("service_discover"),
        {
            "source": "kubernetes",
            "namespace": "shop",
            "selector": "tier in (web, api), !canary, app.kubernetes.io/part-of!=blog",
            "environment": "production",
        },
    )
    assert response.status_code == 200 and b"r/web:v1" in response.content


def test_a_zone_in_another_script_is_looked_up_by_its_ascii_name(ic, aws):
    route53_records(aws, "xn--r8jz45g.jp", ("www.xn--r8jz45g.jp", "A", "192.0.2.1"))
    rows = discovery_scan(
        source="route53", params={"zone": "例え.jp"}, environment="production", actor=ic
    )
    assert [row.candidate.name for row in rows] == ["www-xn--r8jz45g-jp"]


def test_a_user_name_with_nul_is_a_command_error(ic, shop):
    with pytest.raises(CommandError, match="console user"):
        call_command("discover", "kubernetes", "--namespace", "shop", "--as", "ic\x00")
