"""RdsRestoreBackend against a moto server over HTTP."""

from __future__ import annotations

import datetime
import json
import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.database import Endpoint, RdsRestoreBackend, endpoint_in, with_endpoint
from tests.executors.rds_world import OLD_HOST, PASSWORD, SECRET_CONFIG, rds_secret

RESTORE_TIME = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(
    minutes=10
)
PITR = RollbackTarget(params={"restore_time": RESTORE_TIME.isoformat().replace("+00:00", "Z")})
PITR_INSTANCE = f"orders-restore-pitr-{RESTORE_TIME:%Y%m%d-%H%M%S}"


@pytest.fixture
def ssm(aws: Connections, rds):
    client = boto3.client("ssm", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.put_parameter(
        Name="/orders/database_url",
        Value=f"postgresql://app:{PASSWORD}@{OLD_HOST}:5432/orders?sslmode=require",
        Type="SecureString",
    )
    return client


@pytest.fixture
def backend(aws, secrets) -> RdsRestoreBackend:
    return RdsRestoreBackend(SECRET_CONFIG, aws, poll_interval=0.05)


def secret(secrets) -> dict:
    return json.loads(secrets.get_secret_value(SecretId="orders/db")["SecretString"])


def new_host(instance_id: str) -> str:
    return f"{instance_id}.aaaaaaaaaa.us-east-1.rds.amazonaws.com"


def test_live_version_is_the_instance_the_secret_points_at(backend):
    assert backend.live_version() == "orders"


def test_plan_describes_the_restore_and_the_secret_change_without_side_effects(
    backend, rds, secrets
):
    plan = backend.plan(PITR)

    assert (plan.current_version, plan.target_version) == ("orders", PITR_INSTANCE)
    assert [(c.resource, c.attribute, c.before) for c in plan.changes] == [
        (f"rds/{PITR_INSTANCE}", "instance", None),
        ("secret orders/db", "endpoint", f"{OLD_HOST}:5432"),
    ]
    assert len(rds.describe_db_instances()["DBInstances"]) == 1
    assert secret(secrets)["host"] == OLD_HOST


def test_point_in_time_apply_restores_a_new_instance_and_repoints_the_secret(backend, rds, secrets):
    result = backend.apply(PITR)

    instance = rds.describe_db_instances(DBInstanceIdentifier=PITR_INSTANCE)["DBInstances"][0]
    assert result.changed
    assert instance["DBInstanceStatus"] == "available"
    assert secret(secrets) == {
        **rds_secret(OLD_HOST),
        "host": new_host(PITR_INSTANCE),
        "dbInstanceIdentifier": PITR_INSTANCE,
    }


def test_apply_records_the_previous_endpoint_and_secret_version_for_audit(backend, secrets):
    old_version = secrets.get_secret_value(SecretId="orders/db")["VersionId"]

    facts = backend.apply(PITR).facts

    assert facts["previous_endpoint"] == f"{OLD_HOST}:5432"
    assert facts["previous_connection_version"] == old_version


def test_apply_twice_is_a_no_op(backend, rds):
    backend.apply(PITR)

    second = backend.apply(PITR)

    assert not second.changed
    assert backend.plan(PITR).is_noop
    assert len(rds.describe_db_instances()["DBInstances"]) == 2


def test_snapshot_restore_uses_the_snapshot_named_by_the_artifact(aws, rds, secrets):
    rds.create_db_snapshot(DBInstanceIdentifier="orders", DBSnapshotIdentifier="orders-nightly")
    backend = RdsRestoreBackend({**SECRET_CONFIG, "mode": "snapshot"}, aws)

    result = backend.apply(RollbackTarget(artifact="orders-nightly"))

    instance_id = result.facts["new_instance"]
    assert instance_id.startswith("orders-restore-snap-")
    assert secret(secrets)["host"] == new_host(instance_id)


def test_ssm_url_parameter_keeps_credentials_and_options(aws, ssm):
    config = {"source_instance": "orders", "mode": "point_in_time"}
    backend = RdsRestoreBackend({**config, "ssm_parameter": "/orders/database_url"}, aws)

    backend.apply(PITR)

    parameter = ssm.get_parameter(Name="/orders/database_url", WithDecryption=True)["Parameter"]
    assert parameter["Value"] == (
        f"postgresql://app:{PASSWORD}@{new_host(PITR_INSTANCE)}:5432/orders?sslmode=require"
    )
    assert parameter["Type"] == "SecureString"


def test_the_password_never_reaches_logs_or_facts(backend):
    lines: list[str] = []

    result = backend.apply(PITR, log=lines.append)
    backend.wait(PITR, deadline=time.monotonic() + 5, log=lines.append)

    assert lines
    assert PASSWORD not in json.dumps([lines, dict(result.facts), result.detail])


def test_wait_repoints_the_secret_once_the_instance_is_available(backend, secrets):
    backend.apply(PITR)
    # As if the instance had still been restoring when apply ran.
    secrets.put_secret_value(SecretId="orders/db", SecretString=json.dumps(rds_secret(OLD_HOST)))
    lines: list[str] = []

    backend.wait(PITR, deadline=time.monotonic() + 5, log=lines.append)

    assert lines[0] == f"{PITR_INSTANCE}: available"
    assert secret(secrets)["host"] == new_host(PITR_INSTANCE)


def test_wait_before_apply_says_apply_has_not_run(backend):
    with pytest.raises(BackendError, match="apply has not run"):
        backend.wait(PITR, deadline=time.monotonic() + 5)


def test_checks_pass_after_the_restore(backend):
    backend.apply(PITR)

    results = {check.name: check.status for check in backend.checks(PITR)}

    assert results == {
        "instance available": CheckStatus.PASSED,
        "connection points at new instance": CheckStatus.PASSED,
    }


def test_checks_fail_before_the_restore(backend):
    statuses = {check.status for check in backend.checks(PITR)}

    assert statuses == {CheckStatus.FAILED}


@pytest.mark.parametrize(
    "config",
    [
        {"source_instance": "orders", "mode": "point_in_time"},
        {**SECRET_CONFIG, "ssm_parameter": "/orders/database_url"},
        {**SECRET_CONFIG, "mode": "logical"},
        {**SECRET_CONFIG, "new_instance_prefix": "9-orders"},
    ],
)
def test_invalid_config_raises_config_error(aws, config):
    with pytest.raises(ConfigError):
        RdsRestoreBackend(config, aws)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "needs target.params\\['restore_time'\\]"),
        ({"restore_time": "yesterday"}, "not an ISO 8601 timestamp"),
        ({"restore_time": "2024-05-01T12:00:00"}, "has no timezone"),
        ({"restore_time": "2999-01-01T00:00:00Z"}, "after orders's latest restorable time"),
    ],
)
def test_unusable_restore_time_is_a_config_error(backend, params, message):
    with pytest.raises(ConfigError, match=message):
        backend.plan(RollbackTarget(params=params))


def test_unknown_snapshot_is_a_config_error_naming_it(aws, secrets):
    backend = RdsRestoreBackend({**SECRET_CONFIG, "mode": "snapshot"}, aws)

    with pytest.raises(ConfigError, match="'orders-missing' not found"):
        backend.plan(RollbackTarget(artifact="orders-missing"))


def test_snapshot_of_another_instance_is_refused(aws, rds, secrets):
    rds.create_db_instance(
        DBInstanceIdentifier="billing",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="app",
        MasterUserPassword=PASSWORD,
        AllocatedStorage=20,
    )
    rds.create_db_snapshot(DBInstanceIdentifier="billing", DBSnapshotIdentifier="billing-nightly")
    backend = RdsRestoreBackend({**SECRET_CONFIG, "mode": "snapshot"}, aws)

    with pytest.raises(ConfigError, match="is of 'billing', not of 'orders'"):
        backend.plan(RollbackTarget(artifact="billing-nightly"))


def test_missing_secret_is_a_config_error(aws, rds):
    backend = RdsRestoreBackend(SECRET_CONFIG, aws)

    with pytest.raises(ConfigError, match="secret orders/db not found"):
        backend.live_version()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '{"host": "old", "port": "5432", "password": "x"}',
            '{"host": "new", "port": "6543", "password": "x"}',
        ),
        ("mysql://u:p@old:3306/db", "mysql://u:p@new:6543/db"),
        ("postgres://u:p@old/db", "postgres://u:p@new/db"),
        ("old:5432", "new:6543"),
        ("old", "new"),
    ],
)
def test_with_endpoint_changes_only_host_and_a_named_port(value, expected):
    assert with_endpoint(value, Endpoint("new", 6543), "new") == expected
    assert endpoint_in(expected).reaches(Endpoint("new", 6543))


def test_throttling_is_retryable(backend):
    with Stubber(backend.settings) as stub:
        stub.add_client_error("get_secret_value", "ThrottlingException", http_status_code=400)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_access_denied_is_permanent(backend):
    with Stubber(backend.rds) as stub:
        stub.add_client_error("describe_db_instances", "AccessDenied", "no", http_status_code=403)

        with pytest.raises(BackendError, match="AccessDenied") as raised:
            backend.checks(PITR)

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        RdsRestoreBackend(SECRET_CONFIG, closed).live_version()

    assert raised.value.retryable
