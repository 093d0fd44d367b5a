"""Service discovery over the API with a token: list what the Kubernetes stand-in and the
moto server run beside the console's services, import what is named, all or nothing, with
the page's checks; every refusal a 4xx naming its field."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from api.models import ApiToken
from api.tokens import token_create
from devinfra.demo_services import seed_database, seed_ecs
from executors.aws import aws_client
from incidents.models import Service
from tests.api.conftest import ApiClient
from tests.factories import ServiceFactory, UserFactory

pytestmark = pytest.mark.django_db
IC = ["Incident Commander"]
SHOP = "/discovery/kubernetes?namespace=shop"
SHOP_IMPORT = "/discovery/kubernetes/import?namespace=shop"


def states(api: ApiClient, path: str = SHOP) -> dict[str, str]:
    response = api.call("get", path)
    assert response.status_code == 200, response.content
    return {each["name"]: each["state"] for each in response.json()["candidates"]}


def test_a_namespace_is_listed_imported_and_listed_again(api_as, shop):
    api = api_as(IC, "services:write")
    listed = api.call("get", SHOP).json()
    assert listed["source"] == "kubernetes" and listed["environment"] == "production"
    web = next(each for each in listed["candidates"] if each["name"] == "web")
    assert web["state"] == "new" and web["importable"] and web["live"] == "r/web:v1"
    assert web["target_config"] == {"namespace": "shop", "deployment": "web"}

    imported = api.call("post", SHOP_IMPORT, {"names": ["web", "api"]})
    assert imported.status_code == 200, imported.content
    assert sorted(each["name"] for each in imported.json()["imported"]) == ["api", "web"]
    assert Service.objects.get(name="web").target_config == {
        "namespace": "shop",
        "deployment": "web",
    }
    assert states(api) == {"api": "same", "web": "same"}


def test_a_selector_narrows_the_listing(api_as, shop):
    api = api_as(IC, "services:write")
    assert states(api, f"{SHOP}&selector=tier%3Dapi") == {"api": "new"}


def test_a_changed_service_shows_what_it_was_and_keeps_what_was_set_by_hand(api_as, shop):
    checks = [{"kind": "http", "url": "https://shop.example/healthz"}]
    ServiceFactory(
        name="web",
        description="The storefront ✨",
        target_config={"namespace": "shop", "deployment": "web-v1", "checks": checks},
    )
    api = api_as(IC, "services:write")
    web = next(c for c in api.call("get", SHOP).json()["candidates"] if c["name"] == "web")
    assert web["state"] == "changed" and web["service"] == "web"
    assert web["was"] == {"deployment": "web-v1"}

    assert api.call("post", SHOP_IMPORT, {"names": ["web"]}).status_code == 200
    saved = Service.objects.get(name="web")
    assert saved.target_config == {"namespace": "shop", "deployment": "web", "checks": checks}
    assert saved.description == "The storefront ✨"


def test_an_ecs_cluster_on_the_moto_server_is_listed_and_imported(api_as, aws):
    seed_ecs(aws)
    api = api_as(IC, "services:write")
    query = "?cluster=storefront&environment=staging"
    assert states(api, f"/discovery/ecs{query}") == {"checkout": "new"}
    response = api.call("post", f"/discovery/ecs/import{query}", {"names": ["checkout"]})
    assert response.status_code == 200, response.content
    checkout = Service.objects.get(name="checkout")
    assert checkout.environment == "staging" and checkout.backend == "ecs"
    assert checkout.target_config == {"cluster": "storefront", "service": "checkout"}


def test_a_database_no_secret_points_at_is_listed_but_not_imported(api_as, aws):
    seed_database(aws)
    aws_client(aws, "rds").create_db_instance(
        DBInstanceIdentifier="lonely",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="u",
        MasterUserPassword="password-1",
        AllocatedStorage=20,
    )
    api = api_as(IC, "services:write")
    listed = {c["name"]: c for c in api.call("get", "/discovery/rds").json()["candidates"]}
    assert listed["orders-db"]["importable"] and not listed["lonely"]["importable"]
    assert "secret" in listed["lonely"]["problem"]
    refused = api.call("post", "/discovery/rds/import", {"names": ["orders-db", "lonely"]})
    assert refused.status_code == 400 and "lonely" in refused.json()["errors"]["names"][0]
    assert not Service.objects.exists()


def test_a_zone_in_another_script_is_asked_for_by_its_ascii_name(api_as, aws):
    route53 = aws_client(aws, "route53")
    zone = route53.create_hosted_zone(Name="xn--r8jz45g.jp", CallerReference="jp")
    route53.change_resource_record_sets(
        HostedZoneId=zone["HostedZone"]["Id"],
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": "www.xn--r8jz45g.jp",
                        "Type": "A",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.1"}],
                    },
                }
            ]
        },
    )
    api = api_as(IC, "services:write")
    path = f"/discovery/route53?{urlencode({'zone': '例え.jp'})}"
    assert states(api, path) == {"www-xn--r8jz45g-jp": "new"}


# Odd input in what narrows a listing: past its length limit, other scripts, emoji,
# right-to-left marks, control characters, NUL. Each is a 400 naming its field (NUL: the
# query), asked of no platform, and nothing is imported.
SOURCE_OF = {
    "namespace": "kubernetes",
    "selector": "kubernetes",
    "cluster": "ecs",
    "zone": "route53",
}
GIVEN = {"namespace": {}, "selector": {"namespace": "shop"}, "cluster": {}, "zone": {}}
TOO_LONG = {
    "namespace": "n" * 64,
    "selector": "tier=" + "w" * 249,
    "cluster": "c" * 256,
    "zone": "z" * 254,
}
ODD_TEXT = {
    "cjk": "商店",
    "emoji": "shop🛒",
    "rtl": "shop\u202eweb",
    "bell": "sh\x07op",
    "newline": "sh\nop",
    "nul": "shop\x00",
}
# A zone in another script is a name Route 53 knows by its ASCII form: those are asked for.
TAKEN_AS_ASCII = {("zone", "cjk"), ("zone", "emoji")}
BAD_VALUES = [
    pytest.param(field, value, id=f"{field}-{label}")
    for field in SOURCE_OF
    for label, value in {"too-long": TOO_LONG[field], **ODD_TEXT}.items()
    if (field, label) not in TAKEN_AS_ASCII
]


def asking(field: str, value: str) -> str:
    query = urlencode({**GIVEN[field], field: value})
    return f"/discovery/{SOURCE_OF[field]}?{query}"


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_a_listing_names_the_field_of_a_value_it_cannot_use(api_as, shop, aws, field, value):
    response = api_as(IC, "services:write").call("get", asking(field, value))
    assert response.status_code == 400, response.content
    assert ("query" if "\x00" in value else field) in response.json()["errors"]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_an_import_with_a_value_it_cannot_use_imports_nothing(api_as, shop, aws, field, value):
    path = asking(field, value).replace("?", "/import?")
    response = api_as(IC, "services:write").call("post", path, {"names": ["web"]})
    assert response.status_code == 400, response.content
    assert ("query" if "\x00" in value else field) in response.json()["errors"]
    assert not Service.objects.exists()


def test_values_at_their_length_limits_are_asked_of_the_platform(api_as, shop, aws):
    api = api_as(IC, "services:write")
    assert states(api, "/discovery/kubernetes?namespace=" + "n" * 63) == {}
    missing_cluster = api.call("get", "/discovery/ecs?cluster=" + "c" * 255)
    assert missing_cluster.status_code == 400
    assert "Cluster not found" in missing_cluster.json()["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/discovery/kubernetes", "namespace"),
        ("/discovery/ecs?cluster=", "cluster"),
        ("/discovery/nope", "source"),
        ("/discovery/%E5%95%86%E5%BA%97", "source"),
        (f"{SHOP}&environment=moon", "environment"),
        (f"{SHOP}&environment=" + "e" * 1000, "environment"),
    ],
)
def test_a_missing_parameter_or_unknown_source_is_named(api_as, shop, path, field):
    response = api_as(IC, "services:write").call("get", path)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    ("names", "says"),
    [
        ([], "at least one"),
        (["gone"], "Not in the listing: gone"),
        (["web", "商店"], "Not a name"),
        (["web-🛒"], "Not a name"),
        (["web\u202e"], "Not a name"),
        (["we\x07b"], "Not a name"),
        (["w" * 81], "Not a name"),
        ([f"n{i}" for i in range(501)], "At most 500"),
    ],
)
def test_names_an_import_cannot_take_are_refused_and_nothing_imported(api_as, shop, names, says):
    response = api_as(IC, "services:write").call("post", SHOP_IMPORT, {"names": names})
    assert response.status_code == 400, response.content
    assert says in response.json()["errors"]["names"][0]
    assert not Service.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"names": ["web\x00"]}, "body"), ({"names": "web"}, "body.names"), ({}, "body.names")],
)
def test_a_body_of_the_wrong_shape_is_refused_by_field(api_as, shop, body, field):
    response = api_as(IC, "services:write").call("post", SHOP_IMPORT, body)
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not Service.objects.exists()


def test_a_name_at_the_limit_is_looked_for_on_the_platform(api_as, shop):
    response = api_as(IC, "services:write").call("post", SHOP_IMPORT, {"names": ["w" * 80]})
    assert response.status_code == 400
    assert "Not in the listing" in response.json()["errors"]["names"][0]


def test_listing_and_importing_need_the_scope_and_the_role(api_as, shop):
    assert api_as(IC, "read").call("get", SHOP).status_code == 403
    assert api_as(IC, "read").call("post", SHOP_IMPORT, {"names": ["web"]}).status_code == 403
    responder = api_as(IC, "services:write").demote("Responder")
    assert responder.call("get", SHOP).status_code == 403
    refused = responder.call("post", SHOP_IMPORT, {"names": ["web"]})
    assert refused.status_code == 403 and "Incident Commanders" in refused.json()["detail"]
    assert ApiClient("bko_00000000_" + "x" * 40).call("get", SHOP).status_code == 401
    assert not Service.objects.exists()


def test_staff_import_without_a_role_as_on_the_page(roles, shop):
    person = UserFactory(is_staff=True)
    _, text = token_create(user=person, name="infra", scopes=["services:write"])
    response = ApiClient(text).call("post", SHOP_IMPORT, {"names": ["api"]})
    assert response.status_code == 200, response.content
    assert list(Service.objects.values_list("name", flat=True)) == ["api"]


def test_a_token_for_services_needs_an_owner_who_could_import(client, roles):
    client.force_login(UserFactory(roles=["Responder"]))
    response = client.post("/account/api-tokens/", {"name": "ci", "scopes": ["services:write"]})
    assert response.status_code == 400 and "do not allow" in response.content.decode()
    assert not ApiToken.objects.exists()
