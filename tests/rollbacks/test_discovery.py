"""Importing services from what platforms run: Kubernetes (the stand-in), ECS, Route 53,
RDS and S3 + CloudFront (moto, seeded as the demo seeds them), from the page and from
`manage.py discover`; listing again shows what changed."""

from __future__ import annotations

import os

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from devinfra.demo_services import seed_database, seed_dns, seed_ecs, seed_static_frontend
from devinfra.processes import reset_moto_server
from executors.base import Connections
from incidents.models import Service
from rollbacks.services.discovery import CHANGED, NEW, SAME, discovery_scan
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(kube, engine_settings):
    kube.seed(
        [
            {"namespace": "shop", "name": "web", "images": ["r/web:v1"], "labels": {"tier": "web"}},
            {"namespace": "shop", "name": "api", "images": ["r/api:v7"], "labels": {"tier": "api"}},
        ]
    )


@pytest.fixture
def aws(settings, moto_server) -> Connections:
    reset_moto_server(moto_server.url)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    settings.AWS_ENDPOINT_URL = moto_server.url
    settings.AWS_REGION = "us-east-1"
    return Connections(aws_endpoint_url=moto_server.url, aws_region="us-east-1")


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
    from executors.aws import aws_client

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
        from rollbacks.services.discovery import discovery_import

        discovery_import(
            source="rds", params={}, environment="production", names=["lonely"], actor=ic
        )
    assert not Service.objects.exists()


def test_a_service_already_on_that_target_is_found_under_its_own_name(ic, shop):
    from tests.factories import ServiceFactory

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
