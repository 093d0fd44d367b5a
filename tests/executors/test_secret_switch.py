"""SecretSwitchBackend against a moto server over HTTP: Secrets Manager versions and stages,
SSM parameter history, and no value ever in what the backend says."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.demo_secrets_ecs import seed_parameter_switch, seed_secret_switch
from devinfra.processes import free_port
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.options import OptionError
from executors.secret_switch import SWITCH_TAG, SecretSwitchBackend, Stored
from rollbacks.engine.retries import retry_after_hint

# Values the backend must never repeat: a URL with a password, CJK, emoji, right-to-left.
GOOD = "postgres://app:ｇｏｏｄ-密码-🔑@orders-old.internal:5432/orders"
BAD = "postgres://app:שלום-bad-pässword@orders-new.internal:5432/orders"
PREVIOUS = RollbackTarget(previous=True, params={"switch_stamp": "0123456789abcdef"})


def previous_step(backend: SecretSwitchBackend) -> RollbackTarget:
    """Another "previous" step, drafted now (a stamp of its own)."""
    return RollbackTarget(previous=True, params=backend.validate_params({}, live=True))


def everything_said(*things: object) -> str:
    return "\n".join(repr(thing) for thing in things)


@pytest.fixture
def sm(aws: Connections):
    return boto3.client(
        "secretsmanager", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region
    )


@pytest.fixture
def ssm(aws: Connections):
    return boto3.client("ssm", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region)


@pytest.fixture
def secret(sm) -> dict[str, str]:
    """Secret orders/db-url: GOOD first, then BAD current; their version ids."""
    first = sm.create_secret(Name="orders/db-url", SecretString=GOOD)["VersionId"]
    second = sm.put_secret_value(SecretId="orders/db-url", SecretString=BAD)["VersionId"]
    return {"good": first, "bad": second}


@pytest.fixture
def parameter(ssm) -> None:
    """SecureString /orders/db-url: version 1 GOOD, version 2 BAD (current)."""
    ssm.put_parameter(Name="/orders/db-url", Value=GOOD, Type="SecureString")
    ssm.put_parameter(Name="/orders/db-url", Value=BAD, Type="SecureString", Overwrite=True)


def secret_backend(aws: Connections) -> SecretSwitchBackend:
    return SecretSwitchBackend({"secret": "orders/db-url"}, aws, poll_interval=0.05)


def parameter_backend(aws: Connections) -> SecretSwitchBackend:
    return SecretSwitchBackend({"parameter": "/orders/db-url"}, aws, poll_interval=0.05)


def current_secret(sm) -> str:
    # By its stage: moto's GetSecretValue without one returns the version put last, even
    # after UpdateSecretVersionStage moved AWSCURRENT away from it.
    answer = sm.get_secret_value(SecretId="orders/db-url", VersionStage="AWSCURRENT")
    return answer["SecretString"]


def current_parameter(ssm) -> tuple[int, str]:
    found = ssm.get_parameter(Name="/orders/db-url", WithDecryption=True)["Parameter"]
    return found["Version"], found["Value"]


# -- Secrets Manager -------------------------------------------------------------------------


def test_live_version_is_the_current_version_id_not_the_value(aws, secret):
    assert secret_backend(aws).live_version() == secret["bad"]


def test_plan_moves_awscurrent_without_touching_the_secret(aws, sm, secret):
    plan = secret_backend(aws).plan(PREVIOUS)

    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [
        ("AWSCURRENT", secret["bad"], secret["good"])
    ]
    assert current_secret(sm) == BAD
    assert GOOD not in everything_said(plan) and BAD not in everything_said(plan)


def test_apply_switches_to_the_previous_version_and_keeps_the_old_one_as_awsprevious(
    aws, sm, secret
):
    lines: list[str] = []
    result = secret_backend(aws).apply(PREVIOUS, log=lines.append)

    assert result.changed
    assert current_secret(sm) == GOOD
    stages = sm.describe_secret(SecretId="orders/db-url")["VersionIdsToStages"]
    assert "AWSPREVIOUS" in stages[secret["bad"]]
    assert sm.describe_secret(SecretId="orders/db-url")["Tags"] == [
        {"Key": SWITCH_TAG, "Value": f"0123456789abcdef {secret['good']}"}
    ]
    assert result.facts == {
        "from_version": secret["bad"],
        "source_version": secret["good"],
        "to_version": secret["good"],
    }
    said = everything_said(result, lines)
    assert GOOD not in said and BAD not in said


def test_applying_previous_twice_does_not_switch_back(aws, sm, secret):
    backend = secret_backend(aws)
    backend.apply(PREVIOUS)

    second = backend.apply(PREVIOUS)

    assert not second.changed
    assert current_secret(sm) == GOOD
    assert backend.plan(PREVIOUS).is_noop


def test_a_chosen_version_is_validated_live_and_applied(aws, sm, secret):
    backend = secret_backend(aws)
    params = backend.validate_params({"version": secret["good"]}, live=True)

    backend.apply(RollbackTarget(params=params))

    assert current_secret(sm) == GOOD
    assert not backend.apply(RollbackTarget(params=params)).changed


def test_a_version_that_does_not_exist_is_refused_naming_the_option(aws, secret):
    with pytest.raises(OptionError) as refused:
        secret_backend(aws).validate_params({"version": "0" * 36}, live=True)

    assert refused.value.option == "version"


def test_a_secret_that_does_not_exist_is_refused_when_drafted(aws):
    backend = SecretSwitchBackend({"secret": "orders/" + "秘密" * 200}, aws)

    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)

    assert refused.value.option == "secret" and "not found" in refused.value.reason


def test_copy_stores_the_old_value_as_a_new_current_version_once(aws, sm, secret):
    backend = secret_backend(aws)
    target = RollbackTarget(params={"version": secret["good"], "method": "copy"})

    first = backend.apply(target)
    second = backend.apply(target)

    assert first.changed and not second.changed
    assert current_secret(sm) == GOOD
    new = first.facts["to_version"]
    assert new not in (secret["good"], secret["bad"])
    stages = sm.describe_secret(SecretId="orders/db-url")["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[new] and "AWSPREVIOUS" in stages[secret["bad"]]
    assert len(stages) == 3


def test_the_options_list_every_version_with_the_current_one_marked(aws, secret):
    choices = secret_backend(aws).live_options()["version"].choices

    assert {choice.value for choice in choices} == {secret["good"], secret["bad"]}
    assert [choice.value for choice in choices if choice.current] == [secret["bad"]]
    assert all(GOOD not in repr(choice) and BAD not in repr(choice) for choice in choices)


def test_wait_returns_once_the_value_is_current_and_says_so(aws, secret):
    backend = secret_backend(aws)
    backend.apply(PREVIOUS)
    lines: list[str] = []

    backend.wait(PREVIOUS, deadline=time.monotonic() + 5, log=lines.append)

    assert lines == [
        f"secret orders/db-url: version {secret['good'][:8]}… has the value of {secret['good']}"
    ]


def test_wait_raises_deadline_exceeded_while_the_switch_has_not_happened(aws, secret):
    with pytest.raises(DeadlineExceeded, match="does not have yet"):
        secret_backend(aws).wait(
            RollbackTarget(params={"version": secret["good"]}), deadline=time.monotonic() + 0.2
        )


def test_checks_pass_after_the_switch_and_fail_before(aws, secret):
    backend = secret_backend(aws)
    target = RollbackTarget(params={"version": secret["good"]})
    before = {check.name: check.status for check in backend.checks(target)}
    backend.apply(target)
    after = {check.name: check.status for check in backend.checks(target)}

    assert before["current value is the target version's"] == CheckStatus.FAILED
    assert after == {
        "current value is the target version's": CheckStatus.PASSED,
        "previous value kept": CheckStatus.PASSED,
    }


def test_capture_backup_records_the_current_version_id(aws, secret):
    assert secret_backend(aws).capture_backup() == {"version": secret["bad"]}


def test_throttling_is_retryable(aws, secret):
    backend = secret_backend(aws)
    with Stubber(backend.client) as stub:
        stub.add_client_error("describe_secret", "ThrottlingException", http_status_code=400)

        with pytest.raises(BackendError) as raised:
            backend.live_version()

    assert raised.value.retryable


def test_bad_credentials_are_a_permanent_failure_naming_the_service(aws, secret):
    backend = secret_backend(aws)
    with Stubber(backend.client) as stub:
        stub.add_client_error(
            "describe_secret", "UnrecognizedClientException", "The security token is invalid", 400
        )

        with pytest.raises(BackendError, match="secret orders/db-url: Unrecognized") as raised:
            backend.live_version()

    assert not raised.value.retryable


def test_a_failed_put_masks_the_value_and_chains_nothing(aws, secret):
    backend = secret_backend(aws)
    target = RollbackTarget(params={"version": secret["good"], "method": "copy"})
    stages = {secret["good"]: ["AWSPREVIOUS"], secret["bad"]: ["AWSCURRENT"]}
    with Stubber(backend.client) as stub:
        stub.add_response(
            "describe_secret", {"Name": "orders/db-url", "VersionIdsToStages": stages}
        )
        for version, value in (
            (secret["bad"], BAD),
            (secret["good"], GOOD),
            (secret["good"], GOOD),
        ):
            stub.add_response("get_secret_value", {"VersionId": version, "SecretString": value})
        stub.add_client_error(
            "put_secret_value", "InternalServiceError", f"could not store {GOOD}", 500
        )
        with pytest.raises(BackendError) as raised:
            backend.apply(target)

    assert raised.value.retryable
    assert GOOD not in str(raised.value) and "****" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None


def test_a_later_separate_previous_step_steps_back_again(aws, sm, secret):
    backend = secret_backend(aws)
    first = previous_step(backend)
    assert backend.apply(first).changed
    assert not backend.apply(first).changed
    assert current_secret(sm) == GOOD

    second = previous_step(backend)

    assert second.params["switch_stamp"] != first.params["switch_stamp"]
    assert backend.apply(second).changed
    assert current_secret(sm) == BAD


def test_a_parameter_previous_step_after_another_steps_back_again(aws, ssm, parameter):
    backend = parameter_backend(aws)
    assert backend.apply(previous_step(backend)).changed
    assert current_parameter(ssm) == (3, GOOD)

    assert backend.apply(previous_step(backend)).changed
    assert current_parameter(ssm) == (4, BAD)


def test_a_switch_stamp_given_is_replaced(aws, secret):
    given = {"switch_stamp": "0123456789abcdef"}

    assert secret_backend(aws).validate_params(given)["switch_stamp"] != "0123456789abcdef"
    with pytest.raises(ConfigError, match="draft it again"):
        secret_backend(aws).plan(RollbackTarget(previous=True, params={"switch_stamp": "x"}))


@pytest.mark.parametrize(
    ("header", "low", "high"),
    # A date decades away is taken as the longest wait there is (RETRY_AFTER_CAP).
    [("7", 7, 7), ("Wed, 21 Oct 2099 07:28:00 GMT", 3600, 3600), ("soon", None, None)],
)
def test_a_throttled_put_keeps_the_servers_retry_after(aws, secret, header, low, high):
    backend = secret_backend(aws)
    target = RollbackTarget(params={"version": secret["good"], "method": "copy"})
    stages = {secret["good"]: ["AWSPREVIOUS"], secret["bad"]: ["AWSCURRENT"]}
    with Stubber(backend.client) as stub:
        stub.add_response(
            "describe_secret", {"Name": "orders/db-url", "VersionIdsToStages": stages}
        )
        for version, value in (
            (secret["bad"], BAD),
            (secret["good"], GOOD),
            (secret["good"], GOOD),
        ):
            stub.add_response("get_secret_value", {"VersionId": version, "SecretString": value})
        stub.add_client_error(
            "put_secret_value",
            "ThrottlingException",
            "Rate exceeded",
            400,
            response_meta={"HTTPHeaders": {"retry-after": header}},
        )
        with pytest.raises(BackendError) as raised:
            backend.apply(target)

    assert raised.value.retryable
    hint = retry_after_hint(raised.value)
    if low is None:
        assert hint is None
    else:
        assert hint is not None and low <= hint <= high


def test_a_stored_value_is_not_in_its_repr():
    assert GOOD not in repr(Stored(GOOD, "string"))


def test_unreachable_endpoint_is_retryable():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(BackendError, match="AWS did not answer") as raised:
        SecretSwitchBackend({"secret": "x"}, closed).live_version()

    assert raised.value.retryable


@pytest.mark.parametrize(
    "config", [{}, {"secret": "a", "parameter": "b"}, {"secret": ""}, {"secret": "a", "x": 1}]
)
def test_config_names_exactly_one_secret_or_parameter(aws, config):
    with pytest.raises(ConfigError):
        SecretSwitchBackend(config, aws)


def test_a_target_without_version_release_or_previous_is_a_config_error(aws, secret):
    with pytest.raises(ConfigError, match="needs the version option"):
        secret_backend(aws).plan(RollbackTarget())


# -- SSM Parameter Store ---------------------------------------------------------------------


def test_parameter_live_version_is_the_version_number(aws, parameter):
    assert parameter_backend(aws).live_version() == "2"


def test_parameter_restore_puts_the_old_value_back_as_the_next_version(aws, ssm, parameter):
    backend = parameter_backend(aws)
    plan = backend.plan(PREVIOUS)
    assert current_parameter(ssm) == (2, BAD)

    lines: list[str] = []
    result = backend.apply(PREVIOUS, log=lines.append)

    assert result.changed and result.facts["to_version"] == "3"
    assert current_parameter(ssm) == (3, GOOD)
    history = ssm.get_parameter_history(Name="/orders/db-url", WithDecryption=True)["Parameters"]
    assert [(entry["Version"], entry["Type"]) for entry in history] == [
        (1, "SecureString"),
        (2, "SecureString"),
        (3, "SecureString"),
    ]
    assert history[1]["Value"] == BAD  # kept for the way back
    said = everything_said(plan, result, lines)
    assert GOOD not in said and BAD not in said


def test_parameter_previous_applied_twice_stays_put(aws, ssm, parameter):
    backend = parameter_backend(aws)
    backend.apply(PREVIOUS)

    second = backend.apply(PREVIOUS)

    assert not second.changed
    assert current_parameter(ssm) == (3, GOOD)
    backend.wait(PREVIOUS, deadline=time.monotonic() + 5)
    assert {c.status for c in backend.checks(PREVIOUS)} == {CheckStatus.PASSED}


def test_parameter_keeps_its_kms_key(aws, ssm):
    ssm.put_parameter(Name="/k", Value=GOOD, Type="SecureString", KeyId="alias/orders")
    ssm.put_parameter(Name="/k", Value=BAD, Type="SecureString", Overwrite=True)
    backend = SecretSwitchBackend({"parameter": "/k"}, aws)

    backend.apply(RollbackTarget(params={"version": "1"}))

    found = ssm.get_parameter_history(Name="/k", WithDecryption=True)["Parameters"][-1]
    assert (found["Value"], found["KeyId"]) == (GOOD, "alias/orders")


def test_parameter_version_not_in_the_history_is_refused(aws, parameter):
    with pytest.raises(OptionError, match="9 is not available"):
        parameter_backend(aws).validate_params({"version": "9"}, live=True)


def test_parameter_that_does_not_exist_is_refused_naming_it(aws):
    with pytest.raises(OptionError) as refused:
        SecretSwitchBackend({"parameter": "/nope"}, aws).validate_params({}, live=True)

    assert refused.value.option == "parameter"


def test_a_method_is_not_an_option_of_a_parameter(aws, parameter):
    with pytest.raises(OptionError, match="unknown option"):
        parameter_backend(aws).validate_params({"method": "stage"})


# -- the demo's seeds ----------------------------------------------------------------------------


def test_the_demo_secret_sits_at_its_bad_version_with_the_good_one_before(aws):
    demo = seed_secret_switch(aws)
    backend = SecretSwitchBackend(demo.target_config, aws)

    assert backend.live_version() == demo.live_version == demo.releases[-1].artifact
    assert backend.plan(PREVIOUS).target_version == demo.known_good.artifact


def test_the_demo_parameter_has_a_history_to_go_back_in(aws):
    demo = seed_parameter_switch(aws)
    backend = SecretSwitchBackend(demo.target_config, aws)

    assert backend.live_version() == demo.live_version
    assert backend.plan(PREVIOUS).target_version == demo.known_good.artifact
