"""TerraformStateBackend against a moto server over HTTP: a versioned state bucket and a
DynamoDB lock table laid out as Terraform's S3 backend writes them."""

from __future__ import annotations

import datetime
import hashlib
import json
import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.options import OptionError
from executors.terraform_locks import LOCK_OPERATION
from executors.terraform_state import TerraformStateBackend

BUCKET, KEY, TABLE = "infra-state", "network/terraform.tfstate", "infra-locks"
LINEAGE = "6f1c2a8e-5b0d-4c1e-9a77-2f3c4d5e6f70"
CONFIG = {"bucket": BUCKET, "key": KEY, "lock_table": TABLE, "apply_command": "network-apply"}


def state(serial: int, lineage: str = LINEAGE, size: str = "t3.small") -> bytes:
    document = {
        "version": 4,
        "terraform_version": "1.9.8",
        "serial": serial,
        "lineage": lineage,
        "outputs": {},
        "resources": [{"type": "aws_instance", "name": "nat", "instances": [{"size": size}]}],
    }
    return json.dumps(document, indent=2).encode()


@pytest.fixture
def s3(aws: Connections):
    return boto3.client("s3", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


@pytest.fixture
def dynamodb(aws: Connections):
    client = boto3.client("dynamodb", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def versions(s3, dynamodb) -> list[str]:
    """Serials 1, 2 and 3 of one lineage written as terraform writes them; their version ids."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ids = []
    for serial, size in ((1, "t3.micro"), (2, "t3.small"), (3, "t3.xlarge")):
        body = state(serial, size=size)
        ids.append(
            s3.put_object(Bucket=BUCKET, Key=KEY, Body=body, ContentType="application/json")[
                "VersionId"
            ]
        )
        write_digest(dynamodb, body)
    return ids


def write_digest(dynamodb, body: bytes) -> None:
    digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": f"{BUCKET}/{KEY}-md5"}, "Digest": {"S": digest}}
    )


def hold_lock(dynamodb, **info) -> dict:
    lock = {
        "ID": "3a1e7c52-0d6f-4b8a-8f10-5e2b9c4d7a11",
        "Operation": "OperationTypeApply",
        "Info": "",
        "Who": "dana@ci-runner-7",
        "Version": "1.9.8",
        "Created": "2026-12-04T08:59:12.3456Z",
        "Path": f"{BUCKET}/{KEY}",
        **info,
    }
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": f"{BUCKET}/{KEY}"}, "Info": {"S": json.dumps(lock)}},
    )
    return lock


@pytest.fixture
def backend(aws, versions) -> TerraformStateBackend:
    return TerraformStateBackend(CONFIG, aws, poll_interval=0.05)


def current_body(s3) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()


def version_count(s3) -> int:
    return len(s3.list_object_versions(Bucket=BUCKET, Prefix=KEY).get("Versions", []))


def to(version_id: str) -> RollbackTarget:
    return RollbackTarget(params={"version_id": version_id})


def test_live_version_is_the_current_serial_and_lineage(backend):
    assert backend.live_version() == f"serial 3 · lineage {LINEAGE}"


def test_the_options_list_the_versions_newest_first_with_serial_and_lineage(backend, versions):
    choices = backend.live_options()["version_id"].choices

    assert [choice.value for choice in choices] == versions[::-1]
    assert choices[0].label == f"serial 3 · lineage {LINEAGE} (current)" and choices[0].current
    assert [choice.label.split(" ·")[0] for choice in choices] == [
        "serial 3",
        "serial 2",
        "serial 1",
    ]


def test_plan_describes_the_copy_and_the_digest_without_writing(backend, s3, versions):
    plan = backend.plan(to(versions[1]))

    assert (plan.current_version, plan.target_version) == (
        f"serial 3 · lineage {LINEAGE}",
        f"serial 2 · lineage {LINEAGE}",
    )
    assert [(change.resource, change.attribute) for change in plan.changes] == [
        (f"s3://{BUCKET}/{KEY}", "current version"),
        (f"dynamodb/{TABLE}/{BUCKET}/{KEY}-md5", "Digest"),
    ]
    assert "no version is deleted" in plan.summary
    assert "now run terraform apply" in plan.summary and "network-apply" in plan.summary
    assert current_body(s3) == state(3, size="t3.xlarge") and version_count(s3) == 3


def test_apply_copies_the_chosen_version_back_and_keeps_every_version(backend, s3, versions):
    lines: list[str] = []

    result = backend.apply(to(versions[1]), log=lines.append)

    assert result.changed
    assert current_body(s3) == state(2, size="t3.small")
    assert version_count(s3) == 4
    assert (result.facts["before_serial"], result.facts["after_serial"]) == (3, 2)
    assert result.facts["before_lineage"] == result.facts["after_lineage"] == LINEAGE
    assert "now run terraform apply" in result.detail and "'network-apply'" in result.detail
    assert any("now run terraform apply" in line for line in lines)


def test_apply_rewrites_terraforms_digest_and_releases_its_lock(backend, dynamodb, versions):
    backend.apply(to(versions[0]))

    digest = dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}-md5"}})
    lock = dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}"}})
    expected = hashlib.md5(state(1, size="t3.micro"), usedforsecurity=False).hexdigest()
    assert digest["Item"]["Digest"]["S"] == expected
    assert "Item" not in lock


def test_apply_twice_changes_nothing_the_second_time(backend, s3, versions):
    backend.apply(to(versions[1]))

    second = backend.apply(to(versions[1]))

    assert not second.changed
    assert "now run terraform apply" in second.detail
    assert version_count(s3) == 4
    assert backend.plan(to(versions[1])).is_noop


def test_previous_after_a_restore_stays_on_the_version_restored(backend, s3):
    previous = RollbackTarget(previous=True)
    assert backend.apply(previous).changed

    assert not backend.apply(previous).changed
    assert json.loads(current_body(s3))["serial"] == 2


def test_a_release_artifact_names_the_version_by_serial(backend):
    target = RollbackTarget(version="infra-41", artifact=f"serial 1 · lineage {LINEAGE}")

    backend.apply(target)

    assert backend.live_version() == f"serial 1 · lineage {LINEAGE}"


def test_a_lock_held_by_terraform_refuses_the_restore_naming_its_holder(
    backend, s3, dynamodb, versions
):
    hold_lock(dynamodb)

    with pytest.raises(BackendError) as refused:
        backend.apply(to(versions[1]))

    assert refused.value.retryable
    message = str(refused.value)
    assert "dana@ci-runner-7" in message and "OperationTypeApply" in message
    assert "2026-12-04T08:59:12" in message
    assert "terraform force-unlock 3a1e7c52-0d6f-4b8a-8f10-5e2b9c4d7a11" in message
    assert current_body(s3) == state(3, size="t3.xlarge") and version_count(s3) == 3
    assert "dana@ci-runner-7" in backend.plan(to(versions[1])).summary


def test_a_lock_holders_text_is_shown_bounded_whatever_it_holds(backend, dynamodb, versions):
    who = "渡辺 🚀 שלום <script>alert(1)</script>\u202e\x07" + "w" * 5000
    hold_lock(dynamodb, Who=who)

    with pytest.raises(BackendError) as refused:
        backend.apply(to(versions[1]))

    message = str(refused.value)
    assert "渡辺 🚀 שלום <script>alert(1)</script>www" in message
    assert "w" * 5000 not in message and "\x07" not in message and "\u202e" not in message
    assert len(message) < 1000


def test_a_lock_with_unreadable_info_is_still_refused(backend, dynamodb, versions):
    dynamodb.put_item(
        TableName=TABLE, Item={"LockID": {"S": f"{BUCKET}/{KEY}"}, "Info": {"S": "\x00<b>"}}
    )

    with pytest.raises(BackendError, match="locked by someone") as refused:
        backend.apply(to(versions[1]))

    assert refused.value.retryable


def test_backouts_own_lock_left_by_a_dead_attempt_is_taken_over(backend, dynamodb, versions):
    hold_lock(dynamodb, Operation=LOCK_OPERATION, Info=f"restore version {versions[1]}")

    assert backend.apply(to(versions[1])).changed

    assert "Item" not in dynamodb.get_item(
        TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}"}}
    )


def test_terraforms_s3_lock_file_refuses_the_restore_without_a_lock_table(aws, s3, versions):
    lock = {"ID": "f00d", "Operation": "OperationTypePlan", "Who": "lee@laptop", "Created": "x"}
    s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=json.dumps(lock).encode())
    backend = TerraformStateBackend({"bucket": BUCKET, "key": KEY}, aws)

    with pytest.raises(BackendError, match="lee@laptop") as refused:
        backend.apply(to(versions[1]))

    assert refused.value.retryable


def test_another_lineage_is_refused_unless_allowed(backend, s3, versions):
    other = s3.put_object(Bucket=BUCKET, Key=KEY, Body=state(9, lineage="0000-other"))["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=state(4))  # ours again

    with pytest.raises(OptionError) as refused:
        backend.validate_params({"version_id": other}, live=True)
    assert refused.value.option == "version_id" and "0000-other" in str(refused.value)
    with pytest.raises(ConfigError, match="allow_lineage_change"):
        backend.apply(to(other))

    allowed = backend.validate_params(
        {"version_id": other, "allow_lineage_change": "yes"}, live=True
    )
    assert backend.apply(RollbackTarget(params=allowed)).changed
    assert backend.live_version() == "serial 9 · lineage 0000-other"


def test_an_unknown_version_is_refused_at_draft_naming_the_option(backend):
    with pytest.raises(OptionError) as refused:
        backend.validate_params({"version_id": "not-a-version"}, live=True)

    assert refused.value.option == "version_id" and "not available" in str(refused.value)


def test_a_saved_state_is_what_a_release_restores(backend, versions):
    saved = backend.capture_backup()
    backend.apply(to(versions[0]))

    params = backend.validate_params({"saved_state": saved["state_version"]}, live=True)
    backend.apply(RollbackTarget(params=params))

    assert saved["state_version"]["serial"] == 3
    assert backend.live_version() == f"serial 3 · lineage {LINEAGE}"
    assert backend.describe_backup("state_version", saved["state_version"]).startswith("serial 3")


def test_wait_returns_once_the_digest_matches_and_says_the_next_step(backend, versions):
    backend.apply(to(versions[1]))
    lines: list[str] = []

    backend.wait(to(versions[1]), deadline=time.monotonic() + 5, log=lines.append)

    assert lines and "now run terraform apply" in lines[-1]


def test_wait_raises_deadline_exceeded_while_the_digest_is_stale(backend, dynamodb, versions):
    backend.apply(to(versions[1]))
    write_digest(dynamodb, b"something else")

    with pytest.raises(BackendError, match="deadline passed") as raised:
        backend.wait(to(versions[1]), deadline=time.monotonic() + 0.3)

    assert not raised.value.retryable


def test_wait_fails_at_once_when_terraform_wrote_the_state_again(backend, s3, versions):
    backend.apply(to(versions[1]))
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=state(4))

    with pytest.raises(BackendError, match="written again since"):
        backend.wait(to(versions[1]), deadline=time.monotonic() + 5)


def test_checks_pass_after_the_restore_and_fail_on_a_stale_digest(backend, dynamodb, versions):
    backend.apply(to(versions[1]))
    assert {c.name: c.status for c in backend.checks(to(versions[1]))} == {
        "state is the restored version": CheckStatus.PASSED,
        "state digest matches": CheckStatus.PASSED,
        "state unlocked": CheckStatus.PASSED,
    }

    write_digest(dynamodb, b"stale")

    results = {c.name: c.status for c in backend.checks(to(versions[1]))}
    assert results["state digest matches"] == CheckStatus.FAILED


def test_a_missing_state_or_bucket_is_a_config_error(aws, s3, versions):
    with pytest.raises(ConfigError, match="no state at"):
        TerraformStateBackend({**CONFIG, "key": "nope.tfstate"}, aws).plan(
            RollbackTarget(previous=True)
        )
    with pytest.raises(ConfigError, match="does not exist"):
        TerraformStateBackend({**CONFIG, "bucket": "no-such-bucket"}, aws).live_version()


def test_a_missing_lock_table_is_a_config_error(aws, versions):
    backend = TerraformStateBackend({**CONFIG, "lock_table": "no-such-table"}, aws)

    with pytest.raises(ConfigError, match="'no-such-table' does not exist"):
        backend.apply(to(versions[0]))


@pytest.mark.parametrize(
    "change",
    [
        {"bucket": None},
        {"key": ""},
        {"key": "network/\x00.tfstate"},
        {"apply_command": "apply\nrm -rf /"},
        {"lock_table": "locks; drop"},
        {"endpoint": "http://169.254.169.254/"},
        {"endpoint": "ftp://example.com"},
        {"region": "moon"},
        {"colour": "red"},
    ],
)
def test_invalid_config_raises_config_error(aws, change):
    bad = {key: value for key, value in {**CONFIG, **change}.items() if value is not None}

    with pytest.raises(ConfigError):
        TerraformStateBackend(bad, aws)


def test_the_configs_endpoint_and_region_replace_the_consoles(aws, versions):
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}", aws_region="eu-west-1")
    config = {**CONFIG, "endpoint": aws.aws_endpoint_url, "region": "us-east-1"}

    assert TerraformStateBackend(config, closed).live_version().startswith("serial 3")


def test_keys_with_long_non_latin_names_are_restored(aws, s3, dynamodb, versions):
    key = "環境/production/שלום/" + "ü" * 300 + "/🚀.tfstate"
    first = s3.put_object(Bucket=BUCKET, Key=key, Body=state(1))["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=state(2))
    backend = TerraformStateBackend({**CONFIG, "key": key}, aws)

    backend.apply(to(first))

    assert backend.live_version() == f"serial 1 · lineage {LINEAGE}"


def test_throttling_is_retryable(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("get_object", "SlowDown", http_status_code=503)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_access_denied_is_permanent_and_names_the_state(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("get_object", "AccessDenied", "denied", http_status_code=403)

        with pytest.raises(BackendError, match=f"s3://{BUCKET}/{KEY}: AccessDenied") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        TerraformStateBackend(CONFIG, closed).live_version()

    assert raised.value.retryable


def test_the_lock_it_takes_is_terraforms_shape(backend, dynamodb, versions):
    seen: list[dict] = []

    def look_at_the_lock(line: str) -> None:
        if line.startswith("locked"):
            item = dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}"}})
            seen.append(json.loads(item["Item"]["Info"]["S"]))

    backend.apply(to(versions[0]), log=look_at_the_lock)

    assert seen[0]["Operation"] == LOCK_OPERATION and seen[0]["Path"] == f"{BUCKET}/{KEY}"
    assert set(seen[0]) == {"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}
    assert datetime.datetime.fromisoformat(seen[0]["Created"]).tzinfo is not None
