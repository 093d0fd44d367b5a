"""S3VersionsBackend against a moto server over HTTP: a versioned bucket whose frontend build
was overwritten in place, and a CloudFront distribution in front of it."""

from __future__ import annotations

import datetime
import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.options import OptionError
from executors.s3_versions import S3VersionsBackend

BUCKET, PREFIX = "shop-web", "site/"
BUILD_1 = {"index.html": b"<h1>build 1</h1>", "app.js": b"one()", "logo.png": b"png"}
BUILD_2 = {"index.html": b"<h1>build 2</h1>", "app.js": b"two()", "chat.js": b"chat()"}
# Build 2 was uploaded over build 1 in place: the logo it did not change stayed.
SERVED_NOW = {**BUILD_2, "logo.png": BUILD_1["logo.png"]}


def upload(s3, files: dict[str, bytes], prefix: str = PREFIX) -> None:
    for name, body in files.items():
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=body, ContentType="text/plain")


def second_passed() -> str:
    """The whole second now, once it is over (moto's times are to the second): what was
    written until now is at or before it, what is written next is after it."""
    now = datetime.datetime.now(datetime.UTC)
    time.sleep(1.05 - now.microsecond / 1e6)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def s3(aws: Connections):
    client = boto3.client("s3", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture
def cloudfront(aws: Connections):
    return boto3.client("cloudfront", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


@pytest.fixture
def distribution_id(cloudfront) -> str:
    origin = {
        "Id": "web",
        "DomainName": f"{BUCKET}.s3.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    response = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "shop-web",
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "web",
                "ViewerProtocolPolicy": "redirect-to-https",
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "MinTTL": 0,
            },
            "Comment": "",
            "Enabled": True,
        }
    )
    return str(response["Distribution"]["Id"])


@pytest.fixture
def config(distribution_id) -> dict:
    return {"bucket": BUCKET, "prefix": PREFIX, "distribution_id": distribution_id}


@pytest.fixture
def builds(s3) -> dict:
    """Build 1 uploaded, then build 2 over it a second later: the instant between them."""
    upload(s3, BUILD_1)
    s3.put_object(Bucket=BUCKET, Key="other/keep.txt", Body=b"not ours")
    between = second_passed()
    upload(s3, BUILD_2)
    return {"between": between}


@pytest.fixture
def backend(aws, builds, config) -> S3VersionsBackend:
    return S3VersionsBackend(config, aws, poll_interval=0.05)


def served(s3, prefix: str = PREFIX) -> dict[str, bytes]:
    keys = [
        item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    ]
    return {
        key[len(prefix) :]: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys
    }


def all_versions(s3) -> int:
    listing = s3.list_object_versions(Bucket=BUCKET)
    return len(listing.get("Versions", []))


def invalidations(cloudfront, distribution_id) -> list[dict]:
    listing = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    return listing.get("Items", [])


def at(builds) -> RollbackTarget:
    return RollbackTarget(
        params={"restore_time": builds["between"], "drafted_at": "2026-12-04T09:00:00Z"}
    )


def test_plan_lists_copies_delete_markers_and_the_invalidation_without_writing(
    backend, builds, s3, cloudfront, distribution_id
):
    before = all_versions(s3)

    plan = backend.plan(at(builds))

    changes = [(c.resource, c.after) for c in plan.changes]
    assert [resource for resource, _ in changes[:2]] == [
        f"s3://{BUCKET}/site/app.js",
        f"s3://{BUCKET}/site/index.html",
    ]
    assert all("copied as a new version" in after for _, after in changes[:2])
    assert changes[2:] == [
        (f"s3://{BUCKET}/site/chat.js", "delete marker (every version kept)"),
        (f"cloudfront/{distribution_id}", "/site/*"),
    ]
    assert "no version is deleted" in plan.summary
    assert served(s3) == SERVED_NOW and all_versions(s3) == before
    assert invalidations(cloudfront, distribution_id) == []


def test_apply_restores_the_build_at_the_time_and_hides_newer_objects(backend, builds, s3):
    before = all_versions(s3)

    result = backend.apply(at(builds))

    assert result.changed and (result.facts["copied"], result.facts["hidden"]) == (2, 1)
    assert served(s3) == BUILD_1
    assert all_versions(s3) == before + 2  # logo.png was never overwritten: in place
    markers = s3.list_object_versions(Bucket=BUCKET, Prefix="site/chat.js")["DeleteMarkers"]
    assert markers and markers[0]["IsLatest"]
    assert served(s3, "other/") == {"keep.txt": b"not ours"}


def test_apply_twice_changes_nothing_and_invalidates_once(
    backend, builds, cloudfront, distribution_id
):
    backend.apply(at(builds))

    second = backend.apply(at(builds))

    assert not second.changed
    assert backend.plan(at(builds)).is_noop
    assert len(invalidations(cloudfront, distribution_id)) == 1


def test_an_apply_interrupted_before_the_invalidation_invalidates_on_retry(
    aws, backend, builds, config, cloudfront, distribution_id
):
    # The objects were restored, but the attempt ended before it invalidated.
    unfronted = {key: value for key, value in config.items() if key != "distribution_id"}
    S3VersionsBackend(unfronted, aws).apply(at(builds))

    retried = backend.apply(at(builds))

    assert retried.changed and retried.facts["copied"] == 0
    assert len(invalidations(cloudfront, distribution_id)) == 1
    assert not backend.apply(at(builds)).changed


def test_the_restored_content_is_the_live_version_of_the_old_build(aws, s3, config):
    upload(s3, BUILD_1)
    backend = S3VersionsBackend(config, aws)
    build_1 = backend.live_version()
    saved = backend.capture_backup()
    upload(s3, BUILD_2)
    assert backend.live_version() != build_1

    params = backend.validate_params({"versions": saved["versions"]}, live=True)
    backend.apply(RollbackTarget(params=params))

    assert backend.live_version() == build_1 and build_1.startswith("3 objects · content ")
    assert served(s3) == BUILD_1


def test_the_saved_versions_name_every_object_of_the_prefix(aws, builds, s3, config):
    saved = S3VersionsBackend(config, aws).capture_backup()["versions"]

    assert sorted(saved) == ["site/app.js", "site/chat.js", "site/index.html", "site/logo.png"]
    current = s3.list_object_versions(Bucket=BUCKET, Prefix="site/index.html")["Versions"]
    assert saved["site/index.html"] == next(v["VersionId"] for v in current if v["IsLatest"])


def test_an_object_deleted_at_the_time_stays_hidden_and_one_deleted_since_comes_back(
    aws, s3, config
):
    upload(s3, {"a.js": b"a", "gone.js": b"gone"})
    s3.delete_object(Bucket=BUCKET, Key="site/gone.js")
    then = second_passed()
    s3.delete_object(Bucket=BUCKET, Key="site/a.js")
    backend = S3VersionsBackend(config, aws)

    backend.apply(RollbackTarget(params={"restore_time": then}))

    assert served(s3) == {"a.js": b"a"}


def test_listings_are_paginated(aws, s3, config):
    files = {f"assets/{number:03}.js": f"v1 {number}".encode() for number in range(40)}
    upload(s3, files)
    saved = S3VersionsBackend(config, aws).capture_backup()["versions"]
    upload(s3, {name: b"v2" for name in list(files)[::2]})
    upload(s3, {"assets/new.js": b"new"})
    backend = S3VersionsBackend(config, aws, page_size=7)
    calls: list[str] = []
    for operation in ("ListObjectVersions", "ListObjectsV2"):
        backend.s3.meta.events.register(
            f"before-call.s3.{operation}", lambda model, **kw: calls.append(model.name)
        )

    plan = backend.plan(RollbackTarget(params={"versions": saved}))

    # 61 versions in pages of 7 (the restore), 41 current objects (the live version).
    assert (calls.count("ListObjectVersions"), calls.count("ListObjectsV2")) == (9, 6)
    assert len(plan.changes) == 20 + 1 + 1  # 20 copies, 1 delete marker, the invalidation
    backend.apply(RollbackTarget(params={"versions": saved}))
    assert served(s3) == files


def test_a_big_plan_lists_200_changes_and_counts_the_rest(aws, s3, config):
    upload(s3, {f"{n}.txt": b"x" for n in range(210)})
    then = second_passed()
    upload(s3, {f"{n}.txt": b"y" for n in range(210)})
    backend = S3VersionsBackend(config, aws)

    plan = backend.plan(RollbackTarget(params={"restore_time": then}))

    assert len(plan.changes) == 202
    assert plan.changes[-2].after == "10 more changes"


def test_an_unversioned_bucket_is_refused_before_anything_is_written(aws, s3, config):
    s3.create_bucket(Bucket="plain-web")
    s3.put_object(Bucket="plain-web", Key="site/index.html", Body=b"x")
    backend = S3VersionsBackend({**config, "bucket": "plain-web"}, aws)

    with pytest.raises(ConfigError, match="versioning never enabled"):
        backend.apply(RollbackTarget(params={"restore_time": "2020-01-01T00:00:00Z"}))

    assert s3.get_object(Bucket="plain-web", Key="site/index.html")["Body"].read() == b"x"


def test_wait_ends_once_moto_reports_the_invalidation_completed(backend, builds):
    # moto has spelt the status both `COMPLETED` and `Completed` across releases.
    invalidation_id = backend.apply(at(builds)).facts["invalidation_id"]
    lines: list[str] = []

    backend.wait(at(builds), deadline=time.monotonic() + 5, log=lines.append)

    assert [line.casefold() for line in lines] == [
        f"invalidation {invalidation_id}: completed".casefold()
    ]


@pytest.mark.parametrize("status", ["Completed", "COMPLETED"])
def test_wait_accepts_completed_in_either_case(
    backend, builds, cloudfront, distribution_id, status
):
    invalidation_id = backend.apply(at(builds)).facts["invalidation_id"]
    made = cloudfront.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)
    summary = {
        "Id": invalidation_id,
        "CreateTime": made["Invalidation"]["CreateTime"],
        "Status": status,
    }
    listing = {"Marker": "", "MaxItems": 100, "IsTruncated": False, "Quantity": 1}
    answer = {**made["Invalidation"], "Status": status}
    lines: list[str] = []

    with Stubber(backend.cloudfront) as stub:
        stub.add_response(
            "list_invalidations", {"InvalidationList": {**listing, "Items": [summary]}}
        )
        # One read to match the restore's caller reference, one for the status.
        for _ in range(2):
            stub.add_response("get_invalidation", {"Invalidation": answer})
        backend.wait(at(builds), deadline=time.monotonic() + 5, log=lines.append)

    assert lines == [f"invalidation {invalidation_id}: {status}"]


def test_wait_raises_deadline_exceeded_while_the_invalidation_is_in_progress(
    backend, builds, cloudfront, distribution_id
):
    # moto completes invalidations at once: CloudFront's answers are stubbed as in progress.
    invalidation_id = backend.apply(at(builds)).facts["invalidation_id"]
    made = cloudfront.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)
    in_progress = {**made["Invalidation"], "Status": "InProgress"}
    summary = {
        "Id": invalidation_id,
        "CreateTime": in_progress["CreateTime"],
        "Status": "InProgress",
    }
    listing = {
        "Marker": "",
        "MaxItems": 100,
        "IsTruncated": False,
        "Quantity": 1,
        "Items": [summary],
    }
    with Stubber(backend.cloudfront) as stub:
        stub.add_response("list_invalidations", {"InvalidationList": listing})
        for _ in range(40):
            stub.add_response("get_invalidation", {"Invalidation": in_progress})

        with pytest.raises(BackendError, match="deadline passed.*InProgress") as raised:
            backend.wait(at(builds), deadline=time.monotonic() + 0.3)

    assert not raised.value.retryable


def test_wait_before_apply_says_apply_has_not_run(backend, builds):
    with pytest.raises(BackendError, match="apply has not run"):
        backend.wait(at(builds), deadline=time.monotonic() + 5)


def test_checks_pass_after_the_restore_and_fail_after_a_new_upload(backend, builds, s3):
    backend.apply(at(builds))
    assert {c.name: c.status for c in backend.checks(at(builds))} == {
        "objects at the restore point": CheckStatus.PASSED,
        "invalidation completed": CheckStatus.PASSED,
    }

    upload(s3, {"index.html": b"hotfix"})

    results = {c.name: c.status for c in backend.checks(at(builds))}
    assert results["objects at the restore point"] == CheckStatus.FAILED


def test_without_a_distribution_nothing_is_invalidated(aws, builds, s3, config):
    config = {key: value for key, value in config.items() if key != "distribution_id"}
    backend = S3VersionsBackend(config, aws)

    assert backend.apply(at(builds)).changed
    backend.wait(at(builds), deadline=time.monotonic() + 1)

    assert [c.name for c in backend.checks(at(builds))] == ["objects at the restore point"]


def test_a_time_outside_the_kept_versions_is_refused_at_draft(backend):
    with pytest.raises(OptionError) as refused:
        backend.validate_params({"restore_time": "2001-01-01T00:00:00Z"}, live=True)

    assert refused.value.option == "restore_time" and "outside" in str(refused.value)


def test_a_saved_version_that_no_longer_exists_is_refused_at_draft(backend, builds):
    saved = backend.capture_backup()["versions"]
    saved["site/app.js"] = "no-such-version"

    with pytest.raises(OptionError) as refused:
        backend.validate_params({"versions": saved}, live=True)

    assert refused.value.option == "versions" and "site/app.js" in str(refused.value)


@pytest.mark.parametrize(
    ("params", "option"),
    [
        ({}, "restore_time"),
        ({"restore_time": "2026-12-04T09:00:00Z", "versions": {"site/a": "v"}}, "versions"),
        ({"versions": {"elsewhere/a": "v"}}, "versions"),
        ({"restore_time": "yesterday"}, "restore_time"),
        ({"drafted_at": "x\x00y", "restore_time": "2026-12-04T09:00:00Z"}, "drafted_at"),
    ],
)
def test_bad_options_are_refused_naming_the_option(backend, params, option):
    with pytest.raises(OptionError) as refused:
        backend.validate_params(params)

    assert refused.value.option == option


def test_the_draft_is_stamped(backend, builds):
    params = backend.validate_params({"restore_time": builds["between"]}, live=True)

    assert params["drafted_at"].endswith("Z")


def test_an_unknown_distribution_is_refused_before_anything_is_written(aws, builds, s3, config):
    backend = S3VersionsBackend({**config, "distribution_id": "E000NOPE"}, aws)

    with pytest.raises(ConfigError, match="'E000NOPE' not found"):
        backend.apply(at(builds))

    assert served(s3) == SERVED_NOW


def test_a_missing_bucket_is_a_config_error(aws, config):
    with pytest.raises(ConfigError, match="does not exist"):
        S3VersionsBackend({**config, "bucket": "no-such-bucket"}, aws).live_version()


def test_keys_with_long_non_latin_and_markup_names_are_restored(aws, s3, config):
    name = "資産/שלום/<script>alert(1)</script>/" + "é" * 200 + "/🚀.js"
    upload(s3, {name: b"one"})
    backend = S3VersionsBackend(config, aws)
    saved = backend.capture_backup()["versions"]
    upload(s3, {name: b"two"})

    backend.apply(RollbackTarget(params={"versions": saved}))

    assert served(s3) == {name: b"one"}


@pytest.mark.parametrize(
    "change",
    [
        {"bucket": None},
        {"prefix": None},
        {"prefix": "site/\x1b[31m"},
        {"invalidation_path": "site/*"},
        {"endpoint": "http://[fe80::1]:9000"},
        {"x": 1},
    ],
)
def test_invalid_config_raises_config_error(aws, config, change):
    bad = {key: value for key, value in {**config, **change}.items() if value is not None}

    with pytest.raises(ConfigError):
        S3VersionsBackend(bad, aws)


def test_slow_down_is_retryable(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("list_objects_v2", "SlowDown", http_status_code=503)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_access_denied_is_permanent(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("list_objects_v2", "AccessDenied", "no", http_status_code=403)

        with pytest.raises(BackendError, match="AccessDenied") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable(config):
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        S3VersionsBackend(config, closed).live_version()

    assert raised.value.retryable
