"""Route53Backend against a moto server over HTTP."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.dns import Route53Backend, normalise_name

MAINTENANCE = RollbackTarget(params={"maintenance_target": "maintenance.example.net"})


@pytest.fixture
def route53(aws: Connections):
    return boto3.client("route53", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


@pytest.fixture
def zone_id(route53) -> str:
    """example.com with app.example.com CNAME lb-blue.example.net (TTL 300)."""
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="example")
    zone_id = str(zone["HostedZone"]["Id"])
    upsert(
        route53,
        zone_id,
        {
            "Name": "app.example.com",
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": "lb-blue.example.net"}],
        },
    )
    return zone_id


@pytest.fixture
def config(zone_id) -> dict:
    return {"hosted_zone_id": zone_id, "record_name": "app.example.com", "record_type": "CNAME"}


@pytest.fixture
def backend(aws, config) -> Route53Backend:
    return Route53Backend(config, aws, poll_interval=0.05)


def upsert(route53, zone_id: str, *record_sets: dict) -> None:
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in record_sets]
        },
    )


def record_sets(route53, zone_id: str, name: str = "app.example.com.") -> list[dict]:
    listing = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [r for r in listing if r["Name"] == name]


def test_backup_returns_the_current_record_sets(backend):
    assert backend.backup() == [
        {
            "Name": "app.example.com.",
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": "lb-blue.example.net"}],
        }
    ]


def test_live_version_describes_the_record_values(backend):
    assert backend.live_version() == "lb-blue.example.net (TTL 300)"


def test_plan_shows_before_and_after_without_changing_the_record(backend, route53, zone_id):
    plan = backend.plan(MAINTENANCE)

    assert [(c.before, c.after) for c in plan.changes] == [
        ("lb-blue.example.net (TTL 300)", "maintenance.example.net (TTL 300)")
    ]
    assert record_sets(route53, zone_id)[0]["ResourceRecords"] == [{"Value": "lb-blue.example.net"}]


def test_maintenance_target_points_the_record_at_the_maintenance_value(backend, route53, zone_id):
    result = backend.apply(MAINTENANCE)

    assert result.changed
    assert record_sets(route53, zone_id) == [
        {
            "Name": "app.example.com.",
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": "maintenance.example.net"}],
        }
    ]


def test_backup_restores_the_saved_values_after_a_release_changed_them(backend, route53, zone_id):
    saved = backend.backup()
    upsert(
        route53,
        zone_id,
        {
            "Name": "app.example.com",
            "Type": "CNAME",
            "TTL": 60,
            "ResourceRecords": [{"Value": "lb-green.example.net"}],
        },
    )

    backend.apply(RollbackTarget(params={"backup": saved}))

    assert record_sets(route53, zone_id) == saved


def test_apply_twice_is_a_no_op(backend):
    backend.apply(MAINTENANCE)

    second = backend.apply(MAINTENANCE)

    assert not second.changed
    assert backend.plan(MAINTENANCE).is_noop


def test_maintenance_alias_replaces_the_values_with_an_alias(aws, route53, zone_id):
    upsert(
        route53,
        zone_id,
        {
            "Name": "example.com",
            "Type": "A",
            "TTL": 60,
            "ResourceRecords": [{"Value": "192.0.2.10"}],
        },
    )
    backend = Route53Backend(
        {"hosted_zone_id": zone_id, "record_name": "example.com", "record_type": "A"}, aws
    )
    alias = {"DNSName": "d111111abcdef8.cloudfront.net", "HostedZoneId": "Z2FDTNDATAQYW2"}

    backend.apply(RollbackTarget(params={"maintenance_target": alias}))

    assert backend.live_version() == "alias d111111abcdef8.cloudfront.net."
    assert backend.plan(RollbackTarget(params={"maintenance_target": alias})).is_noop


def test_wait_polls_the_change_until_insync_then_reads_the_values_back(backend):
    result = backend.apply(MAINTENANCE)
    lines: list[str] = []

    backend.wait(MAINTENANCE, deadline=time.monotonic() + 5, log=lines.append)

    assert lines == [
        f"change {result.facts['change_id']}: INSYNC",
        "app.example.com. CNAME reads back the target values",
    ]


def test_wait_without_apply_says_apply_has_not_run(backend):
    with pytest.raises(BackendError, match="apply has not run"):
        backend.wait(MAINTENANCE, deadline=time.monotonic() + 5)


def test_checks_pass_after_apply(backend):
    backend.apply(MAINTENANCE)

    assert [(c.name, c.status) for c in backend.checks(MAINTENANCE)] == [
        ("record values", CheckStatus.PASSED)
    ]


def test_checks_fail_while_the_record_has_other_values(backend):
    [check] = backend.checks(MAINTENANCE)

    assert check.status == CheckStatus.FAILED
    assert "lb-blue.example.net" in check.detail


@pytest.fixture
def weighted(route53, zone_id) -> None:
    upsert(
        route53,
        zone_id,
        *(
            {
                "Name": "api.example.com",
                "Type": "A",
                "SetIdentifier": colour,
                "Weight": weight,
                "TTL": 60,
                "ResourceRecords": [{"Value": address}],
            }
            for colour, weight, address in (("blue", 90, "192.0.2.1"), ("green", 10, "192.0.2.2"))
        ),
    )


def test_maintenance_on_a_weighted_record_needs_a_set_identifier(aws, zone_id, weighted):
    config = {"hosted_zone_id": zone_id, "record_name": "api.example.com", "record_type": "A"}

    with pytest.raises(ConfigError, match="has 2 record sets"):
        Route53Backend(config, aws).plan(RollbackTarget(params={"maintenance_target": "192.0.2.9"}))


def test_set_identifier_changes_only_that_weighted_set_and_keeps_its_weight(
    aws, route53, zone_id, weighted
):
    config = {
        "hosted_zone_id": zone_id,
        "record_name": "api.example.com",
        "record_type": "A",
        "set_identifier": "green",
    }

    Route53Backend(config, aws).apply(RollbackTarget(params={"maintenance_target": "192.0.2.9"}))

    sets = {r["SetIdentifier"]: r for r in record_sets(route53, zone_id, "api.example.com.")}
    assert sets["blue"]["ResourceRecords"] == [{"Value": "192.0.2.1"}]
    assert sets["green"]["ResourceRecords"] == [{"Value": "192.0.2.9"}]
    assert sets["green"]["Weight"] == 10


def test_backup_of_another_record_is_refused(backend):
    other = {
        "Name": "www.example.com.",
        "Type": "CNAME",
        "TTL": 60,
        "ResourceRecords": [{"Value": "x.example.net"}],
    }

    with pytest.raises(ConfigError, match="holds www.example.com. CNAME"):
        backend.plan(RollbackTarget(params={"backup": [other]}))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"backup": [], "maintenance_target": "x"},
        {"maintenance_target": 42},
        {"maintenance_target": "x", "ttl": "soon"},
        {"backup": "app.example.com"},
    ],
)
def test_target_without_a_usable_backup_or_maintenance_value_is_a_config_error(backend, params):
    with pytest.raises(ConfigError):
        backend.plan(RollbackTarget(params=params))


@pytest.mark.parametrize(
    "change",
    [{"record_type": "ALIAS"}, {"record_name": ""}, {"hosted_zone_id": None}, {"zone": "x"}],
)
def test_invalid_config_raises_config_error(aws, config, change):
    bad = {key: value for key, value in {**config, **change}.items() if value is not None}

    with pytest.raises(ConfigError):
        Route53Backend(bad, aws)


def test_unknown_hosted_zone_is_a_config_error(aws, config):
    backend = Route53Backend({**config, "hosted_zone_id": "Z0NOPE"}, aws)

    with pytest.raises(ConfigError, match="'Z0NOPE' not found"):
        backend.live_version()


def test_normalise_name_lowercases_adds_the_dot_and_unescapes_octal():
    assert normalise_name("\\052.Example.COM") == "*.example.com."


def test_prior_request_not_complete_is_retryable(backend):
    with Stubber(backend.client) as stub:
        stub.add_client_error("list_resource_record_sets", "PriorRequestNotComplete", "busy", 400)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_invalid_change_batch_is_permanent(backend):
    with Stubber(backend.client) as stub:
        stub.add_client_error("list_resource_record_sets", "InvalidChangeBatch", "bad", 400)

        with pytest.raises(BackendError, match="InvalidChangeBatch: bad") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable(config):
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        Route53Backend(config, closed).live_version()

    assert raised.value.retryable
