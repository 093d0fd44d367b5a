"""EdgeFunctionsBackend against the moto server (devinfra.moto_server) over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devinfra.demo_edge import EDGE_FUNCTION, seed_edge_functions
from devinfra.demo_services import DemoService
from devinfra.processes import free_port
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.edge_functions import EdgeFunctionsBackend
from executors.options import OptionError

ACCOUNT = "123456789012"
HEADERS_FUNCTION = f"arn:aws:cloudfront::{ACCOUNT}:function/security-headers"


def version_arn(version: int | str, function: str = EDGE_FUNCTION) -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}:{version}"


@pytest.fixture
def edge(aws: Connections) -> DemoService:
    """The demo's seed: storefront-edge-auth versions 1-3, the default behaviour on 3."""
    return seed_edge_functions(aws)


@pytest.fixture
def cloudfront(aws: Connections) -> Any:
    return boto3.client("cloudfront", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


def set_deploy_reads(aws: Connections, reads: int | None) -> None:
    """How many reads an updated distribution stays InProgress for (None: moto's default)."""
    model: dict[str, Any] = {"model_name": "cloudfront::distribution"}
    body: dict[str, Any]
    if reads is None:
        path, body = "unset-transition", model
    else:
        path = "set-transition"
        body = {**model, "transition": {"progression": "manual", "times": reads}}
    request = urllib.request.Request(
        f"{aws.aws_endpoint_url}/moto-api/state-manager/{path}",
        data=json.dumps(body).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def slow_deploys(aws: Connections) -> Iterator[None]:
    yield
    set_deploy_reads(aws, None)


def backend_for(aws: Connections, edge: DemoService, **config: Any) -> EdgeFunctionsBackend:
    return EdgeFunctionsBackend({**edge.target_config, **config}, aws, poll_interval=0.02)


def drafted_previous(backend: EdgeFunctionsBackend) -> RollbackTarget:
    """A step back to the previous version, as drafted (stamped) by the console."""
    return RollbackTarget(previous=True, params=backend.validate_params({}, live=True))


def associations(cloudfront: Any, distribution_id: str) -> dict[str, Any]:
    """Every association of the distribution: {(behaviour, event): ARN}."""
    config = cloudfront.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    behaviours = [("default", config["DefaultCacheBehavior"])] + [
        (b["PathPattern"], b) for b in (config.get("CacheBehaviors") or {}).get("Items") or []
    ]
    found = {}
    for name, behaviour in behaviours:
        for item in behaviour["LambdaFunctionAssociations"].get("Items") or []:
            found[(name, item["EventType"])] = item["LambdaFunctionARN"]
        for item in behaviour["FunctionAssociations"].get("Items") or []:
            found[(name, item["EventType"])] = item["FunctionARN"]
    return found


def add_api_behaviour(cloudfront: Any, distribution_id: str) -> None:
    """Add /api/* (origin-request on version 1) and a CloudFront Function on the default
    behaviour's viewer responses, the way a person would in the console."""
    answer = cloudfront.get_distribution_config(Id=distribution_id)
    config = answer["DistributionConfig"]
    config["DefaultCacheBehavior"]["FunctionAssociations"] = {
        "Quantity": 1,
        "Items": [{"FunctionARN": HEADERS_FUNCTION, "EventType": "viewer-response"}],
    }
    api = {
        key: config["DefaultCacheBehavior"][key]
        for key in ("TargetOriginId", "ViewerProtocolPolicy", "ForwardedValues", "MinTTL")
    }
    api["PathPattern"] = "/api/*"
    api["LambdaFunctionAssociations"] = {
        "Quantity": 1,
        "Items": [{"LambdaFunctionARN": version_arn(1), "EventType": "origin-request"}],
    }
    config["CacheBehaviors"] = {"Quantity": 1, "Items": [api]}
    cloudfront.update_distribution(
        Id=distribution_id, IfMatch=answer["ETag"], DistributionConfig=config
    )


def test_live_version_is_the_qualified_arn_the_behaviour_runs(aws, edge):
    backend = backend_for(aws, edge)

    assert backend.live_version() == version_arn(3) == edge.live_version
    assert backend.capture_backup() == {"function_version": version_arn(3)}
    assert backend.describe_backup("function_version", version_arn(3)) == f"{EDGE_FUNCTION}:3"


def test_plan_names_the_association_change_and_changes_nothing(aws, edge, cloudfront):
    distribution_id = edge.target_config["distribution_id"]
    etag = cloudfront.get_distribution_config(Id=distribution_id)["ETag"]

    backend = backend_for(aws, edge)
    plan = backend.plan(drafted_previous(backend))

    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [
        ("viewer-request function", version_arn(3), version_arn(2))
    ]
    assert cloudfront.get_distribution_config(Id=distribution_id)["ETag"] == etag


def test_previous_goes_back_one_version_and_a_second_apply_changes_nothing(aws, edge):
    backend = backend_for(aws, edge)
    target = drafted_previous(backend)

    first = backend.apply(target)
    second = backend_for(aws, edge).apply(target)

    assert first.changed
    assert first.facts["to_function_version"] == version_arn(2)
    assert not second.changed
    assert backend.live_version() == version_arn(2)
    assert backend.plan(target).is_noop


def test_another_step_back_goes_back_one_more_version(aws, edge):
    backend = backend_for(aws, edge)
    backend.apply(drafted_previous(backend))

    assert backend.apply(drafted_previous(backend)).changed

    assert backend.live_version() == version_arn(1)


def test_a_step_back_not_drafted_is_refused_at_run_time(aws, edge):
    with pytest.raises(ConfigError, match="draft it again"):
        backend_for(aws, edge).apply(RollbackTarget(previous=True, params={"edge_stamp": "x"}))


def test_a_release_artifact_or_version_number_is_the_target(aws, edge):
    backend = backend_for(aws, edge)

    backend.apply(RollbackTarget(version="auth-1.2.0", artifact=version_arn(1)))
    assert backend.live_version() == version_arn(1)
    backend.apply(RollbackTarget(artifact="2"))
    assert backend.live_version() == version_arn(2)


def test_the_step_option_wins_over_the_release(aws, edge):
    backend = backend_for(aws, edge)
    params = backend.validate_params({"function_version": version_arn(1)}, live=True)

    backend.apply(RollbackTarget(artifact=version_arn(2), params=params))

    assert params["function_version"] == "1"
    assert backend.live_version() == version_arn(1)


def test_apply_edits_only_its_behaviour_and_event(aws, edge, cloudfront):
    distribution_id = edge.target_config["distribution_id"]
    add_api_behaviour(cloudfront, distribution_id)
    backend = backend_for(aws, edge, path_pattern="/api/*", event_type="origin-request")

    assert backend.live_version() == version_arn(1)
    backend.apply(RollbackTarget(artifact="2"))

    assert associations(cloudfront, distribution_id) == {
        ("default", "viewer-request"): version_arn(3),
        ("default", "viewer-response"): HEADERS_FUNCTION,
        ("/api/*", "origin-request"): version_arn(2),
    }


def test_a_behaviour_without_the_event_gets_an_association(aws, edge, cloudfront):
    distribution_id = edge.target_config["distribution_id"]
    backend = backend_for(aws, edge, event_type="origin-response")
    assert backend.live_version() is None

    assert backend.apply(RollbackTarget(artifact="1")).changed

    assert associations(cloudfront, distribution_id) == {
        ("default", "viewer-request"): version_arn(3),
        ("default", "origin-response"): version_arn(1),
    }


def test_wait_follows_the_distribution_until_it_is_deployed(aws, edge, slow_deploys):
    set_deploy_reads(aws, 3)
    backend = backend_for(aws, edge)
    target = drafted_previous(backend)
    backend.apply(target)
    lines: list[str] = []

    backend.wait(target, deadline=time.monotonic() + 10, log=lines.append)

    distribution_id = edge.target_config["distribution_id"]
    assert lines == [
        f"distribution {distribution_id}: InProgress, {EDGE_FUNCTION}:2",
        f"distribution {distribution_id}: Deployed, {EDGE_FUNCTION}:2",
    ]
    assert [check.status for check in backend.checks(target)] == [CheckStatus.PASSED] * 3


def test_wait_past_the_deadline_raises_and_the_checks_say_in_progress(aws, edge, slow_deploys):
    set_deploy_reads(aws, 10_000)
    backend = backend_for(aws, edge)
    target = RollbackTarget(artifact="1")
    backend.apply(target)

    with pytest.raises(DeadlineExceeded, match="InProgress"):
        backend.wait(target, deadline=time.monotonic() + 0.2)
    checks = {check.name: check for check in backend.checks(target)}
    assert checks["distribution deployed"].status == CheckStatus.FAILED
    assert checks["function version associated"].status == CheckStatus.PASSED


def test_checks_fail_when_the_bad_version_is_associated_again(aws, edge, cloudfront):
    backend = backend_for(aws, edge)
    target = RollbackTarget(artifact="2")
    backend.apply(target)
    backend_for(aws, edge).apply(RollbackTarget(artifact="3"))  # someone rolls forward

    checks = {check.name: check for check in backend.checks(target)}

    association = checks["function version associated"]
    assert association.status == CheckStatus.FAILED
    assert (association.observed, association.threshold) == (version_arn(3), version_arn(2))
    with pytest.raises(BackendError, match="changed again"):
        backend.wait(target, deadline=time.monotonic() + 1)


def test_a_concurrent_edit_fails_apply_retryably_and_the_retry_keeps_it(aws, edge, cloudfront):
    distribution_id = edge.target_config["distribution_id"]
    backend = backend_for(aws, edge)

    def someone_else_edits(**_: Any) -> None:
        backend.cloudfront.meta.events.unregister(
            "before-call.cloudfront.UpdateDistribution", someone_else_edits
        )
        answer = cloudfront.get_distribution_config(Id=distribution_id)
        answer["DistributionConfig"]["Comment"] = "edited by hand"
        cloudfront.update_distribution(
            Id=distribution_id,
            IfMatch=answer["ETag"],
            DistributionConfig=answer["DistributionConfig"],
        )

    backend.cloudfront.meta.events.register(
        "before-call.cloudfront.UpdateDistribution", someone_else_edits
    )
    target = drafted_previous(backend)
    with pytest.raises(BackendError, match="changed while it was being edited") as raised:
        backend.apply(target)
    assert raised.value.retryable
    assert backend.live_version() == version_arn(3)

    assert backend.apply(target).changed

    config = cloudfront.get_distribution_config(Id=distribution_id)["DistributionConfig"]
    assert config["Comment"] == "edited by hand"
    assert backend.live_version() == version_arn(2)


def test_an_unreachable_endpoint_is_retryable(edge):
    nowhere = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    backend = EdgeFunctionsBackend(edge.target_config, nowhere)

    with pytest.raises(BackendError) as raised:
        backend.live_version()

    assert raised.value.retryable


@pytest.mark.parametrize(
    ("artifact", "message"),
    [
        ("$LATEST", "needs a published version"),
        (version_arn("$LATEST"), "needs a published version"),
        (version_arn("live"), "alias"),
        (version_arn(1).rpartition(":")[0], "unqualified ARN"),
        (version_arn(1, function="checkout-edge"), "is not a version of"),
        ("9", "has no published version 9"),
    ],
)
def test_a_target_lambda_edge_cannot_run_is_refused_at_run_time(aws, edge, artifact, message):
    backend = backend_for(aws, edge)

    with pytest.raises(ConfigError, match=message) as raised:
        backend.apply(RollbackTarget(artifact=artifact))

    assert not raised.value.retryable
    assert backend.live_version() == version_arn(3)


def test_previous_of_the_first_version_is_refused(aws, edge):
    backend = backend_for(aws, edge)
    backend.apply(RollbackTarget(artifact="1"))

    with pytest.raises(ConfigError, match="no published version before 1"):
        backend_for(aws, edge).apply(drafted_previous(backend))


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"distribution_id": "E0000000000000"}, "distribution_id"),
        ({"path_pattern": "/images/*"}, "path_pattern"),
        ({"function": "no-such-function"}, "function"),
    ],
)
def test_a_target_that_does_not_exist_is_refused_at_draft_naming_the_field(
    aws, edge, config, field
):
    with pytest.raises(OptionError) as raised:
        backend_for(aws, edge, **config).validate_params({}, live=True)

    assert raised.value.option == field


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("7", "has no published version 7"),
        ("$LATEST", "needs a published version"),
        (version_arn(2).rpartition(":")[0], "unqualified ARN"),
        (version_arn("prod"), "alias"),
        ("版本二", "must be a published version number"),
        ("2 🚀", "must be a published version number"),
        ("<b>2</b>", "must be a published version number"),
        ("2\x07", "control characters"),
        ("1" * 257, "at most 256 characters"),
        ("\u202e2", "must be a published version number"),
    ],
)
def test_a_version_lambda_edge_cannot_run_is_refused_at_draft(aws, edge, given, message):
    with pytest.raises(OptionError, match=message) as raised:
        backend_for(aws, edge).validate_params({"function_version": given}, live=True)

    assert raised.value.option == "function_version"


@pytest.mark.parametrize(
    "config",
    [
        {"distribution_id": "e-1<script>"},
        {"path_pattern": "/api/\x00*"},
        {"path_pattern": "/" + "a" * 300},
        {"event_type": "viewer-requests"},
        {"function": f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:{EDGE_FUNCTION}"},
        {"function": version_arn(3)},
        {"function": "función-edge"},
    ],
)
def test_a_target_config_lambda_edge_cannot_use_is_refused(aws, edge, config):
    with pytest.raises(ConfigError):
        backend_for(aws, edge, **config)


def test_the_version_choices_are_the_published_versions_newest_first(aws, edge):
    choices = backend_for(aws, edge).live_options()["function_version"].choices

    assert [(c.value, c.current) for c in choices] == [("3", True), ("2", False), ("1", False)]
    assert "auth-1.3.0" in choices[1].detail
