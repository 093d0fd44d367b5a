"""FeatureFlagBackend: Redis against a real Redis, SSM against a moto server over HTTP.

AppConfig is tested with botocore's Stubber (requests and responses checked against the
AppConfig service model, no server): moto does not implement AppConfig environments,
deployments or deployment strategies.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest
import redis
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from devinfra.processes import free_port
from executors.base import BackendError, CheckStatus, ConfigError, Connections, RollbackTarget
from executors.flags.backend import FeatureFlagBackend
from tests.workers import own_redis_url

# A db of its own on the shared Redis; each test also uses a prefix of its own, and deletes
# only its own keys.
REDIS_URL = own_redis_url("redis://127.0.0.1:6379/14")
TURN_ON = RollbackTarget(params={"state": "on"})
TURN_OFF = RollbackTarget()


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"test-flags-{uuid.uuid4().hex[:8]}:"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


def redis_backend(prefix: str, **config) -> FeatureFlagBackend:
    config = {"store": "redis", "key_prefix": prefix, **config}
    if "kill_all" not in config:
        config.setdefault("flag", "checkout_v2")
    return FeatureFlagBackend(config, Connections(redis_url=REDIS_URL))


def test_redis_live_version_reads_the_flag_state(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")

    assert redis_backend(prefix).live_version() == "checkout_v2=on"


def test_redis_plan_lists_the_flag_going_from_on_to_off_without_writing(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")

    plan = redis_backend(prefix).plan(TURN_OFF)

    [change] = plan.changes
    assert (change.resource, change.before, change.after) == (
        f"redis/{prefix}checkout_v2",
        "on",
        "off",
    )
    assert redis_client.get(f"{prefix}checkout_v2") == "on"


def test_redis_apply_turns_the_flag_off(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")
    lines: list[str] = []

    result = redis_backend(prefix).apply(TURN_OFF, log=lines.append)

    assert result.changed
    assert redis_client.get(f"{prefix}checkout_v2") == "off"
    assert lines == [f"redis/{prefix}checkout_v2: on → off"]


def test_redis_second_apply_changes_nothing(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")
    backend = redis_backend(prefix)
    backend.apply(TURN_OFF)

    result = backend.apply(TURN_OFF)

    assert not result.changed
    assert backend.plan(TURN_OFF).is_noop


def test_redis_state_on_turns_the_flag_back_on(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "off")

    redis_backend(prefix).apply(TURN_ON)

    assert redis_client.get(f"{prefix}checkout_v2") == "on"


def test_redis_absent_flag_is_written_off(redis_client, prefix):
    plan = redis_backend(prefix).plan(TURN_OFF)
    redis_backend(prefix).apply(TURN_OFF)

    assert plan.changes[0].before is None
    assert redis_client.get(f"{prefix}checkout_v2") == "off"


def test_redis_value_other_than_on_or_off_is_shown_as_unrecognised(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "enabled-for-beta")

    plan = redis_backend(prefix).plan(TURN_OFF)

    assert plan.current_version == "checkout_v2=unrecognised"
    assert plan.changes[0].after == "off"


def test_redis_kill_switch_turns_every_flag_under_the_prefix_off(redis_client, prefix):
    redis_client.mset({f"{prefix}a": "on", f"{prefix}b": "off", f"{prefix}c": "on"})

    result = redis_backend(prefix, kill_all=True).apply(TURN_OFF)

    assert result.facts["flipped"] == ["a", "c"]
    assert redis_client.mget([f"{prefix}a", f"{prefix}b", f"{prefix}c"]) == ["off"] * 3


def test_redis_kill_switch_leaves_keys_that_are_not_flags_alone(redis_client, prefix):
    redis_client.set(f"{prefix}a", "on")
    redis_client.set(f"{prefix}settings", '{"theme": "dark"}')
    redis_client.hset(f"{prefix}audit", "last", "on")

    plan = redis_backend(prefix, kill_all=True).plan(TURN_OFF)

    assert [change.resource for change in plan.changes] == [f"redis/{prefix}a"]
    assert plan.current_version == "a=on"


def test_redis_kill_switch_with_a_list_touches_only_the_listed_flags(redis_client, prefix):
    redis_client.mset({f"{prefix}a": "on", f"{prefix}b": "on"})

    redis_backend(prefix, kill_all=True, flags=["a"]).apply(TURN_OFF)

    assert redis_client.mget([f"{prefix}a", f"{prefix}b"]) == ["off", "on"]


def test_redis_kill_switch_refuses_to_turn_discovered_flags_on(prefix):
    with pytest.raises(ConfigError, match="turns on only the flags it lists"):
        redis_backend(prefix, kill_all=True).plan(TURN_ON)


def test_redis_checks_pass_when_the_flag_reads_back_off(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")
    backend = redis_backend(prefix)
    backend.apply(TURN_OFF)

    [result] = backend.checks(TURN_OFF)

    assert result.status is CheckStatus.PASSED


def test_redis_checks_fail_while_the_flag_is_still_on(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")

    [result] = redis_backend(prefix).checks(TURN_OFF)

    assert result.status is CheckStatus.FAILED
    assert "checkout_v2 is on" in result.detail


def test_redis_wait_raises_when_apply_has_not_run(redis_client, prefix):
    redis_client.set(f"{prefix}checkout_v2", "on")

    with pytest.raises(BackendError, match="apply has not run"):
        redis_backend(prefix).wait(TURN_OFF, deadline=time.monotonic() + 1)


def test_redis_url_can_come_from_a_named_environment_variable(redis_client, prefix, monkeypatch):
    redis_client.set(f"{prefix}checkout_v2", "on")
    monkeypatch.setenv("APP_FLAGS_REDIS_URL", REDIS_URL)
    config = {"store": "redis", "key_prefix": prefix, "flag": "checkout_v2"}
    elsewhere = Connections(redis_url=f"redis://127.0.0.1:{free_port()}/0")

    backend = FeatureFlagBackend({**config, "redis_url_env": "APP_FLAGS_REDIS_URL"}, elsewhere)

    assert backend.live_version() == "checkout_v2=on"


def test_redis_unreachable_is_a_retryable_error():
    connections = Connections(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    backend = FeatureFlagBackend({"store": "redis", "flag": "checkout_v2"}, connections)

    with pytest.raises(BackendError, match="Redis did not answer") as raised:
        backend.apply(TURN_OFF)

    assert raised.value.retryable


# -- SSM -----------------------------------------------------------------------------------------


@pytest.fixture
def ssm(aws: Connections):
    return boto3.client("ssm", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


def ssm_backend(aws: Connections, **config) -> FeatureFlagBackend:
    config = {"store": "ssm", "parameter_prefix": "/shop/flags/", **config}
    if "kill_all" not in config:
        config.setdefault("flag", "checkout_v2")
    return FeatureFlagBackend(config, aws)


def parameter(ssm, name: str) -> dict:
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]


def test_ssm_live_version_reads_the_parameter(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="String")

    assert ssm_backend(aws).live_version() == "checkout_v2=on"


def test_ssm_apply_turns_the_parameter_off(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="String")

    result = ssm_backend(aws).apply(TURN_OFF)

    assert result.changed
    assert parameter(ssm, "/shop/flags/checkout_v2")["Value"] == "off"


def test_ssm_second_apply_changes_nothing(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="String")
    backend = ssm_backend(aws)
    backend.apply(TURN_OFF)

    assert not backend.apply(TURN_OFF).changed
    assert parameter(ssm, "/shop/flags/checkout_v2")["Version"] == 2


def test_ssm_secure_string_parameter_keeps_its_type(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="SecureString")

    ssm_backend(aws).apply(TURN_OFF)

    written = parameter(ssm, "/shop/flags/checkout_v2")
    assert (written["Type"], written["Value"]) == ("SecureString", "off")


def test_ssm_absent_flag_is_created_as_a_string_parameter(aws, ssm):
    ssm_backend(aws).apply(TURN_OFF)

    written = parameter(ssm, "/shop/flags/checkout_v2")
    assert (written["Type"], written["Value"]) == ("String", "off")


def test_ssm_kill_switch_turns_every_parameter_under_the_prefix_off(aws, ssm):
    for index in range(12):  # more than one GetParameters batch
        ssm.put_parameter(Name=f"/shop/flags/flag_{index:02}", Value="on", Type="String")
    ssm.put_parameter(Name="/shop/other/flag", Value="on", Type="String")

    result = ssm_backend(aws, kill_all=True).apply(TURN_OFF)

    assert len(result.facts["flipped"]) == 12
    assert parameter(ssm, "/shop/flags/flag_11")["Value"] == "off"
    assert parameter(ssm, "/shop/other/flag")["Value"] == "on"


def test_ssm_checks_fail_while_a_flag_is_still_on(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="String")

    [result] = ssm_backend(aws).checks(TURN_OFF)

    assert result.status is CheckStatus.FAILED


def test_ssm_checks_pass_after_apply(aws, ssm):
    ssm.put_parameter(Name="/shop/flags/checkout_v2", Value="on", Type="String")
    backend = ssm_backend(aws)
    backend.apply(TURN_OFF)
    backend.wait(TURN_OFF, deadline=time.monotonic() + 5)

    [result] = backend.checks(TURN_OFF)

    assert result.status is CheckStatus.PASSED


# -- config --------------------------------------------------------------------------------------


def test_config_needs_a_flag_or_the_kill_switch():
    with pytest.raises(ConfigError, match="name one flag, or set kill_all"):
        FeatureFlagBackend({"store": "redis"}, Connections())


def test_config_refuses_a_field_of_another_store():
    with pytest.raises(ConfigError, match="parameter_prefix applies to the ssm store only"):
        FeatureFlagBackend(
            {"store": "redis", "flag": "a", "parameter_prefix": "/flags/"}, Connections()
        )


def test_config_appconfig_needs_its_ids():
    with pytest.raises(ConfigError, match="the appconfig store needs environment"):
        FeatureFlagBackend(
            {
                "store": "appconfig",
                "flag": "a",
                "application": "abc1234",
                "configuration_profile": "prof901",
                "deployment_strategy": "AppConfig.AllAtOnce",
            },
            Connections(),
        )


def test_the_state_param_must_be_on_or_off(redis_client, prefix):
    with pytest.raises(ConfigError, match="must be 'on' or 'off'"):
        redis_backend(prefix).plan(RollbackTarget(params={"state": "disabled"}))


# -- AppConfig (Stubber: moto has no AppConfig environments or deployments) ----------------------

APP, ENV, PROFILE, STRATEGY = "abc1234", "env5678", "prof901", "AppConfig.AllAtOnce"
IDS = {"ApplicationId": APP, "EnvironmentId": ENV}
FLAGS_CONTENT = {
    "version": "1",
    "flags": {"checkout_v2": {"name": "Checkout v2"}, "search_v3": {"name": "Search v3"}},
    "values": {"checkout_v2": {"enabled": True}, "search_v3": {"enabled": False}},
}


@pytest.fixture
def appconfig_backend(monkeypatch) -> FeatureFlagBackend:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = {
        "store": "appconfig",
        "flag": "checkout_v2",
        "application": APP,
        "environment": ENV,
        "configuration_profile": PROFILE,
        "deployment_strategy": STRATEGY,
    }
    # Nothing listens there: a call the stubs do not expect cannot reach anything.
    connections = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    return FeatureFlagBackend(config, connections, poll_interval=0.01)


@pytest.fixture
def stub(appconfig_backend) -> Iterator[Stubber]:
    with Stubber(appconfig_backend.store.client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def deployment(number: int, version: int, state: str = "COMPLETE", profile: str = PROFILE):
    return {
        "DeploymentNumber": number,
        "ConfigurationProfileId": profile,
        "ConfigurationName": "flags",
        "ConfigurationVersion": str(version),
        "State": state,
        "PercentageComplete": 100.0 if state in ("COMPLETE", "BAKING") else 40.0,
    }


def expect_live(stub: Stubber, deployments: list[dict], version: int, content: dict) -> None:
    """Stub reading the live configuration: the deployment list, then the version's content."""
    stub.add_response("list_deployments", {"Items": deployments}, IDS)
    body = json.dumps(content).encode()
    stub.add_response(
        "get_hosted_configuration_version",
        {
            "ApplicationId": APP,
            "ConfigurationProfileId": PROFILE,
            "VersionNumber": version,
            "Content": StreamingBody(io.BytesIO(body), len(body)),
            "ContentType": "application/json",
        },
        {"ApplicationId": APP, "ConfigurationProfileId": PROFILE, "VersionNumber": version},
    )


def with_flag(enabled: bool) -> dict:
    content = json.loads(json.dumps(FLAGS_CONTENT))
    content["values"]["checkout_v2"]["enabled"] = enabled
    return content


def test_appconfig_live_version_reads_the_deployed_configuration(appconfig_backend, stub):
    expect_live(stub, [deployment(4, 7)], 7, FLAGS_CONTENT)

    assert appconfig_backend.live_version() == "checkout_v2=on"


def test_appconfig_live_state_skips_rolled_back_deployments(appconfig_backend, stub):
    # Deployment 5 (version 8, flag off) was rolled back: version 7 is what clients have.
    expect_live(stub, [deployment(5, 8, "ROLLED_BACK"), deployment(4, 7)], 7, FLAGS_CONTENT)

    assert appconfig_backend.live_version() == "checkout_v2=on"


def test_appconfig_live_state_ignores_deployments_of_other_profiles(appconfig_backend, stub):
    other = deployment(5, 2, profile="other99")
    expect_live(stub, [other, deployment(4, 7)], 7, FLAGS_CONTENT)

    assert appconfig_backend.live_version() == "checkout_v2=on"


def test_appconfig_apply_deploys_a_new_version_with_the_flag_disabled(appconfig_backend, stub):
    expect_live(stub, [deployment(4, 7)], 7, FLAGS_CONTENT)
    stub.add_response(
        "create_hosted_configuration_version",
        {"ApplicationId": APP, "ConfigurationProfileId": PROFILE, "VersionNumber": 8},
        {
            "ApplicationId": APP,
            "ConfigurationProfileId": PROFILE,
            "Content": ANY,
            "ContentType": "application/json",
            "Description": ANY,
        },
    )
    stub.add_response(
        "start_deployment",
        {**IDS, "DeploymentNumber": 5, "State": "DEPLOYING"},
        {
            **IDS,
            "DeploymentStrategyId": STRATEGY,
            "ConfigurationProfileId": PROFILE,
            "ConfigurationVersion": "8",
            "Description": ANY,
            "LatestDeploymentNumber": 4,
        },
    )
    sent: dict = {}
    appconfig_backend.store.client.meta.events.register(
        "provide-client-params.appconfig.CreateHostedConfigurationVersion",
        lambda params, **_: sent.update(params),
    )

    result = appconfig_backend.apply(TURN_OFF)

    assert result.changed
    assert result.facts["deployment_number"] == 5
    assert json.loads(sent["Content"]) == with_flag(False)


def test_appconfig_apply_starts_nothing_when_a_deployment_in_flight_has_the_flag_off(
    appconfig_backend, stub
):
    expect_live(stub, [deployment(5, 8, "DEPLOYING"), deployment(4, 7)], 8, with_flag(False))

    result = appconfig_backend.apply(TURN_OFF)

    assert not result.changed


def test_appconfig_apply_is_retryable_while_another_deployment_runs(appconfig_backend, stub):
    expect_live(stub, [deployment(4, 7)], 7, FLAGS_CONTENT)
    stub.add_response(
        "create_hosted_configuration_version",
        {"ApplicationId": APP, "ConfigurationProfileId": PROFILE, "VersionNumber": 8},
    )
    stub.add_client_error(
        "start_deployment", "ConflictException", "a deployment is in progress", 409
    )

    with pytest.raises(BackendError, match="another deployment is in progress") as raised:
        appconfig_backend.apply(TURN_OFF)

    assert raised.value.retryable


def test_appconfig_a_flag_the_profile_does_not_define_is_a_config_error(appconfig_backend, stub):
    content = {"version": "1", "flags": {"search_v3": {"name": "Search v3"}}, "values": {}}
    expect_live(stub, [deployment(4, 7)], 7, content)

    with pytest.raises(ConfigError, match="defines no flag checkout_v2"):
        appconfig_backend.plan(TURN_OFF)


def test_appconfig_nothing_deployed_is_a_config_error(appconfig_backend, stub):
    stub.add_response("list_deployments", {"Items": []}, IDS)

    with pytest.raises(ConfigError, match="nothing is deployed"):
        appconfig_backend.plan(TURN_OFF)


def test_appconfig_wait_polls_the_deployment_until_it_completes(appconfig_backend, stub):
    appconfig_backend.store.deployment_number = 5
    for state in ("DEPLOYING", "DEPLOYING", "COMPLETE"):
        stub.add_response(
            "get_deployment",
            {**IDS, **deployment(5, 8, state)},
            {**IDS, "DeploymentNumber": 5},
        )
    expect_live(stub, [deployment(5, 8)], 8, with_flag(False))
    lines: list[str] = []

    appconfig_backend.wait(TURN_OFF, deadline=time.monotonic() + 5, log=lines.append)

    assert lines[0] == "deployment 5 DEPLOYING (40 %)"
    assert "deployment 5 COMPLETE (100 %)" in lines


def test_appconfig_wait_raises_when_the_deployment_rolls_back(appconfig_backend, stub):
    appconfig_backend.store.deployment_number = 5
    stub.add_response(
        "get_deployment",
        {**IDS, **deployment(5, 8, "ROLLED_BACK")},
        {**IDS, "DeploymentNumber": 5},
    )

    with pytest.raises(BackendError, match="deployment 5 ROLLED_BACK") as raised:
        appconfig_backend.wait(TURN_OFF, deadline=time.monotonic() + 5)

    assert not raised.value.retryable


def test_appconfig_checks_pass_once_the_deployment_has_completed(appconfig_backend, stub):
    expect_live(stub, [deployment(5, 8)], 8, with_flag(False))

    results = appconfig_backend.checks(TURN_OFF)

    assert [result.status for result in results] == [CheckStatus.PASSED, CheckStatus.PASSED]


def test_appconfig_checks_are_inconclusive_while_the_deployment_rolls_out(appconfig_backend, stub):
    expect_live(stub, [deployment(5, 8, "DEPLOYING")], 8, with_flag(False))

    flag_state, rollout = appconfig_backend.checks(TURN_OFF)

    assert flag_state.status is CheckStatus.PASSED
    assert rollout.status is CheckStatus.INCONCLUSIVE
