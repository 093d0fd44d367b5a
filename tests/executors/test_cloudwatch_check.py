"""The CloudWatch alarm-state check against a moto server over HTTP, alone and as a
service's check spec."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.stub import Stubber

from devinfra.processes import free_port
from executors.aws import aws_client
from executors.base import CheckStatus, ConfigError, Connections
from executors.check_specs import validate_checks
from executors.checks import VerificationDefaults, run_check
from executors.cloudwatch_check import cloudwatch_alarms


@pytest.fixture
def cloudwatch(aws: Connections):
    """Alarms errors and latency on the moto server, both OK."""
    client = boto3.client(
        "cloudwatch", endpoint_url=aws.aws_endpoint_url, region_name=aws.aws_region
    )
    for name in ("errors", "latency"):
        client.put_metric_alarm(
            AlarmName=name,
            Namespace="Shop",
            MetricName=name,
            Statistic="Average",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanThreshold",
        )
        client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="fine")
    return client


def test_alarms_all_ok_pass(aws, cloudwatch):
    result = cloudwatch_alarms(aws, ["errors", "latency"])

    assert result.status == CheckStatus.PASSED
    assert result.observed == "2 OK" and result.threshold == "OK"


def test_an_alarm_in_alarm_fails_naming_it_and_its_reason(aws, cloudwatch):
    cloudwatch.set_alarm_state(
        AlarmName="latency", StateValue="ALARM", StateReason="p99 <b>2.4 s</b>\nabove 1 s"
    )

    result = cloudwatch_alarms(aws, ["errors", "latency"])

    assert result.status == CheckStatus.FAILED
    assert result.detail == "in ALARM: latency: p99 <b>2.4 s</b> above 1 s"
    assert result.observed == "1 ALARM, 1 OK"


def test_insufficient_data_is_inconclusive(aws, cloudwatch):
    cloudwatch.set_alarm_state(
        AlarmName="errors", StateValue="INSUFFICIENT_DATA", StateReason="no datapoints"
    )

    result = cloudwatch_alarms(aws, ["errors", "latency"])

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "errors INSUFFICIENT_DATA" in result.detail


def test_a_missing_alarm_is_inconclusive_naming_it(aws, cloudwatch):
    result = cloudwatch_alarms(aws, ["errors", "エラー率-🚨"])

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "エラー率-🚨 not found" in result.detail


def test_alarm_beats_missing_and_insufficient_data(aws, cloudwatch):
    cloudwatch.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="5xx")

    assert cloudwatch_alarms(aws, ["errors", "gone"]).status == CheckStatus.FAILED


def test_an_alarm_that_clears_within_the_settle_time_passes(aws, cloudwatch, monkeypatch):
    monkeypatch.setattr("executors.cloudwatch_check.ALARM_REQUERY_SECONDS", 0.1)
    cloudwatch.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="5xx")
    clear = threading.Timer(
        0.3,
        lambda: cloudwatch.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="ok"),
    )
    clear.start()
    started = time.monotonic()

    result = cloudwatch_alarms(aws, ["errors"], settle_seconds=5)

    clear.join()
    assert result.status == CheckStatus.PASSED
    assert time.monotonic() - started < 2


def test_throttling_is_inconclusive_with_the_error(aws, cloudwatch):
    client = aws_client(aws, "cloudwatch")
    with Stubber(client) as stub:
        stub.add_client_error("describe_alarms", "Throttling", "Rate exceeded", 400)

        result = cloudwatch_alarms(aws, ["errors"], client=client)

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "Throttling: Rate exceeded" in result.detail


def test_no_answer_is_inconclusive():
    closed = Connections(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")

    result = cloudwatch_alarms(closed, ["errors"])

    assert result.status == CheckStatus.INCONCLUSIVE
    assert "AWS did not answer" in result.detail


def test_a_service_check_spec_runs_the_alarm_check(aws, cloudwatch):
    spec = validate_checks([{"kind": "cloudwatch_alarm", "alarms": ["errors", "latency"]}])[0]

    result = run_check(spec, version=None, connections=aws, defaults=VerificationDefaults())

    assert result.status == CheckStatus.PASSED
    assert result.name == "alarms errors, latency"


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "cloudwatch_alarm"},
        {"kind": "cloudwatch_alarm", "alarms": []},
        {"kind": "cloudwatch_alarm", "alarms": ["a", "a"]},
        {"kind": "cloudwatch_alarm", "alarms": ["x" * 256]},
        {"kind": "cloudwatch_alarm", "alarms": ["a"], "settle_seconds": -1},
        {"kind": "cloudwatch_alarm", "alarms": ["a"], "url": "http://x"},
    ],
)
def test_bad_alarm_specs_are_refused_with_their_place(spec):
    with pytest.raises(ConfigError, match="^checks/0"):
        validate_checks([spec])


def test_an_alarm_name_at_its_maximum_length_is_accepted(aws, cloudwatch):
    name = "告" * 255
    spec = validate_checks([{"kind": "cloudwatch_alarm", "name": "long", "alarms": [name]}])[0]

    result = run_check(spec, version=None, connections=aws, defaults=VerificationDefaults())

    assert result.status == CheckStatus.INCONCLUSIVE and "not found" in result.detail
