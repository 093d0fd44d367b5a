"""StaticFrontendBackend against a moto server over HTTP."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.options import OptionError
from executors.static_frontend import MARKER_KEY, StaticFrontendBackend

RELEASES = {
    "v1": {"index.html": b"<h1>v1</h1>", "app.js": b"console.log(1)", "logo.png": b"png"},
    "v2": {"index.html": b"<h1>v2</h1>", "app.js": b"console.log(2)", "chat.js": b"chat"},
}
V1 = RollbackTarget(version="v1")


@pytest.fixture
def s3(aws: Connections):
    """Releases v1 and v2 in the releases bucket; the live bucket serves v2 (no marker)."""
    client = boto3.client("s3", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)
    client.create_bucket(Bucket="site-releases")
    client.create_bucket(Bucket="site-live")
    for release, files in RELEASES.items():
        for key, body in files.items():
            client.put_object(Bucket="site-releases", Key=f"releases/{release}/{key}", Body=body)
    for key, body in RELEASES["v2"].items():
        client.put_object(Bucket="site-live", Key=key, Body=body)
    return client


@pytest.fixture
def cloudfront(aws: Connections):
    return boto3.client("cloudfront", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


@pytest.fixture
def distribution_id(cloudfront) -> str:
    origin = {
        "Id": "live",
        "DomainName": "site-live.s3.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    response = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": "site",
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "live",
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
    return {
        "releases_bucket": "site-releases",
        "releases_prefix": "releases/",
        "live_bucket": "site-live",
        "distribution_id": distribution_id,
    }


@pytest.fixture
def backend(aws, s3, config) -> StaticFrontendBackend:
    return StaticFrontendBackend(config, aws, poll_interval=0.05)


def live_files(s3) -> dict[str, bytes]:
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="site-live").get("Contents", [])]
    return {key: s3.get_object(Bucket="site-live", Key=key)["Body"].read() for key in keys}


def invalidation_count(cloudfront, distribution_id) -> int:
    listing = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    return int(listing["Quantity"])


def test_live_version_without_a_marker_is_the_release_whose_index_matches(backend):
    assert backend.live_version() == "v2"


def test_plan_lists_every_copy_and_delete_without_writing(backend, s3, cloudfront, distribution_id):
    plan = backend.plan(V1)

    assert (plan.current_version, plan.target_version) == ("v2", "v1")
    assert [(c.resource, c.after) for c in plan.changes] == [
        ("s3://site-live/app.js", "s3://site-releases/releases/v1/app.js"),
        ("s3://site-live/logo.png", "s3://site-releases/releases/v1/logo.png"),
        ("s3://site-live/index.html", "s3://site-releases/releases/v1/index.html"),
        ("s3://site-live/chat.js", None),
        (f"s3://site-live/{MARKER_KEY}", "v1"),
        (f"cloudfront/{distribution_id}", "/*"),
    ]
    assert live_files(s3) == RELEASES["v2"]
    assert invalidation_count(cloudfront, distribution_id) == 0


def test_apply_publishes_the_release_and_deletes_what_it_lacks(backend, s3):
    result = backend.apply(V1)

    files = live_files(s3)
    assert result.changed
    assert result.facts["copied"] == 3 and result.facts["deleted"] == 1
    assert files.pop(MARKER_KEY)
    assert files == RELEASES["v1"]


def test_apply_twice_is_a_no_op(backend, cloudfront, distribution_id):
    backend.apply(V1)

    second = backend.apply(V1)

    assert not second.changed
    assert backend.plan(V1).is_noop
    assert invalidation_count(cloudfront, distribution_id) == 1


def test_live_version_comes_from_the_marker_after_apply(backend):
    backend.apply(V1)

    assert backend.live_version() == "v1"


def test_apply_after_an_interrupted_publish_still_invalidates(
    backend, s3, cloudfront, distribution_id
):
    # The objects were copied, but the run stopped before the invalidation and the marker.
    s3.delete_object(Bucket="site-live", Key="chat.js")
    for key, body in RELEASES["v1"].items():
        s3.put_object(Bucket="site-live", Key=key, Body=body)

    result = backend.apply(V1)

    assert result.changed and result.facts["copied"] == 0
    assert invalidation_count(cloudfront, distribution_id) == 1


@pytest.mark.parametrize("artifact", ["releases/v1/", "v1", "s3://site-releases/releases/v1/"])
def test_release_can_be_named_by_prefix_folder_or_s3_url(backend, artifact):
    assert backend.plan(RollbackTarget(artifact=artifact)).target_version == "v1"


def test_multipart_release_objects_are_not_copied_again(backend, s3):
    key = "releases/v1/bundle.js"
    upload = s3.create_multipart_upload(
        Bucket="site-releases", Key=key, ContentType="text/javascript"
    )
    parts = [
        s3.upload_part(
            Bucket="site-releases", Key=key, UploadId=upload["UploadId"], PartNumber=n, Body=body
        )["ETag"]
        for n, body in ((1, b"a" * 5 * 1024 * 1024), (2, b"b"))
    ]
    s3.complete_multipart_upload(
        Bucket="site-releases",
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(parts, 1)]},
    )
    backend.apply(V1)

    assert backend.plan(V1).is_noop
    assert s3.head_object(Bucket="site-live", Key="bundle.js")["ContentType"] == "text/javascript"


def test_wait_ends_once_moto_reports_the_invalidation_completed(backend):
    # moto has spelt the status both `COMPLETED` and `Completed` across releases.
    invalidation_id = backend.apply(V1).facts["invalidation_id"]
    lines: list[str] = []

    backend.wait(V1, deadline=time.monotonic() + 5, log=lines.append)

    assert [line.casefold() for line in lines] == [
        f"invalidation {invalidation_id}: completed".casefold()
    ]


@pytest.mark.parametrize("status", ["Completed", "COMPLETED"])
def test_wait_and_checks_accept_completed_in_either_case(backend, status):
    invalidation_id = backend.apply(V1).facts["invalidation_id"]
    answer = {"Invalidation": {**invalidation_of(backend, invalidation_id), "Status": status}}
    lines: list[str] = []

    with Stubber(backend.cloudfront) as stub:
        stub.add_response("get_invalidation", answer)
        stub.add_response("get_invalidation", answer)
        backend.wait(V1, deadline=time.monotonic() + 5, log=lines.append)
        checks = {check.name: check.status for check in backend.checks(V1)}

    assert lines == [f"invalidation {invalidation_id}: {status}"]
    assert checks["invalidation completed"] == CheckStatus.PASSED


def invalidation_of(backend, invalidation_id: str) -> dict:
    return backend.cloudfront.get_invalidation(
        DistributionId=backend.config["distribution_id"], Id=invalidation_id
    )["Invalidation"]


def test_wait_before_apply_says_apply_has_not_run(backend):
    with pytest.raises(BackendError, match="apply has not run"):
        backend.wait(V1, deadline=time.monotonic() + 5)


def test_checks_pass_after_the_rollback(backend):
    backend.apply(V1)

    results = {check.name: check.status for check in backend.checks(V1)}

    assert results == {
        "invalidation completed": CheckStatus.PASSED,
        "index.html matches release": CheckStatus.PASSED,
        "live objects match release": CheckStatus.PASSED,
    }


def test_index_check_fails_when_the_live_index_differs_from_the_release(backend, s3):
    backend.apply(V1)
    s3.put_object(Bucket="site-live", Key="index.html", Body=b"<h1>hotfix</h1>")

    results = {check.name: check.status for check in backend.checks(V1)}

    assert results["index.html matches release"] == CheckStatus.FAILED


def test_releases_kept_in_the_live_bucket_are_never_deleted(aws, s3, config):
    for key, body in RELEASES["v1"].items():
        s3.put_object(Bucket="site-live", Key=f"releases/v1/{key}", Body=body)
    backend = StaticFrontendBackend({**config, "releases_bucket": "site-live"}, aws)

    backend.apply(V1)

    assert "releases/v1/index.html" in live_files(s3)


@pytest.mark.parametrize(
    "change",
    [
        {"distribution_id": None},
        {"releases_prefix": "releases"},
        {"releases_bucket": "site-live", "releases_prefix": ""},
        {"bucket": "x"},
    ],
)
def test_invalid_config_raises_config_error(aws, config, change):
    bad = {key: value for key, value in {**config, **change}.items() if value is not None}

    with pytest.raises(ConfigError):
        StaticFrontendBackend(bad, aws)


def test_unknown_release_is_a_config_error_naming_it(backend):
    with pytest.raises(ConfigError, match="no release 'v9'"):
        backend.plan(RollbackTarget(version="v9"))


def test_target_without_version_or_artifact_is_a_config_error(backend):
    with pytest.raises(ConfigError, match="needs target.artifact"):
        backend.plan(RollbackTarget(previous=True))


def test_unknown_distribution_is_a_config_error_before_anything_is_copied(aws, s3, config):
    backend = StaticFrontendBackend({**config, "distribution_id": "E000NOPE"}, aws)

    with pytest.raises(ConfigError, match="'E000NOPE' not found"):
        backend.apply(V1)

    assert live_files(s3) == RELEASES["v2"]


def test_slow_down_is_retryable(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("head_object", "SlowDown", http_status_code=503)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_access_denied_is_permanent(backend):
    with Stubber(backend.s3) as stub:
        stub.add_client_error("head_object", "AccessDenied", "no", http_status_code=403)

        with pytest.raises(BackendError, match="AccessDenied") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_unreachable_endpoint_is_retryable(config):
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        StaticFrontendBackend(config, closed).live_version()

    assert raised.value.retryable


def test_the_options_offer_the_release_folders_the_live_one_marked(backend, s3):
    for release in ("v10", "v9"):
        s3.put_object(Bucket="site-releases", Key=f"releases/{release}/index.html", Body=b"x")
    choices = backend.live_options()["release"].choices
    assert [choice.value for choice in choices] == ["v10", "v9", "v2", "v1"]
    assert [choice.label for choice in choices if choice.current] == ["v2 (live)"]
    assert backend.capture_backup() == {"release": "v2"}


def test_a_chosen_release_is_what_goes_live(backend, s3):
    params = backend.validate_params({"release": "v1"}, live=True)
    backend.apply(RollbackTarget(params=params))
    assert backend.live_version() == "v1"
    with pytest.raises(OptionError) as refused:
        backend.validate_params({"release": "v7"}, live=True)
    assert refused.value.option == "release" and "available: v2, v1" in str(refused.value)
