"""Full runs of the secret switch and the ECS restart against a real moto server, seeded
by the demo's own seeds: the commander drafts in the console with step options, previews,
the approvers the policy names approve, the commander types the confirmation, a Celery
worker in its own process applies the step, and its checks and the verification round
(the service's health endpoint, and for the restart a CloudWatch alarm) decide, every stage
on the timeline and no secret value anywhere in what was recorded."""

from __future__ import annotations

from io import StringIO

import boto3
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from api.tokens import token_create
from devinfra.demo_secrets_ecs import (
    DEMO_ALARM,
    DEMO_PARAMETER,
    DEMO_SECRET,
    DEMO_SECRET_PASSWORD,
    RESTART_CLUSTER,
    RESTART_SERVICE,
    seed_ecs_restart,
    seed_parameter_switch,
    seed_secret_switch,
)
from executors.aws import aws_client
from incidents.models import Incident, TimelineEntry, TimelineKind
from rollbacks.models import Run, RunState
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
SWITCH_CHECKS = ["current value is the target version's", "previous value kept"]


def release(service, version):
    return service.releases.get(version=version)


def secret_values(infra) -> list[str]:
    """Every value the demo secret holds, and its password alone."""
    client = aws_client(infra, "secretsmanager")
    versions = client.list_secret_version_ids(SecretId=DEMO_SECRET)["Versions"]
    values = [
        client.get_secret_value(SecretId=DEMO_SECRET, VersionId=v["VersionId"])["SecretString"]
        for v in versions
    ]
    return [*values, DEMO_SECRET_PASSWORD]


def test_the_secret_goes_back_to_the_known_good_version(console, infra, health, incident, worker):
    demo = seed_secret_switch(infra)
    service = console_service(demo, health.url)
    secrets = secret_values(infra)
    worker()
    good = release(service, "replica-a")

    run = console.draft(incident(service), service, str(good.pk), {})
    preview = console.dry_run(run)
    assert f"from {demo.live_version[:8]}… to {good.artifact[:8]}…" in preview
    assert not [value for value in secrets if value in preview]
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=SWITCH_CHECKS, secrets=secrets)
    client = aws_client(infra, "secretsmanager")
    stages = client.describe_secret(SecretId=DEMO_SECRET)["VersionIdsToStages"]
    assert "AWSCURRENT" in stages[good.artifact]
    assert "AWSPREVIOUS" in stages[demo.live_version]
    step = run.steps.get()
    assert step.reached_version == "replica-a"
    assert step.apply_facts["from_version"] == demo.live_version


def test_a_secret_version_that_does_not_exist_is_refused_when_drafted(
    console, infra, health, incident
):
    service = console_service(seed_secret_switch(infra), health.url)
    opened = incident(service)

    refused = console.draft_refused(opened, service, "options", {"version": "v" * 64})
    assert refused.startswith("orders-db-url: version: " + "v" * 64 + " is not available"), refused
    too_long = console.draft_refused(opened, service, "options", {"version": "v" * 65})
    assert too_long == "orders-db-url: version: must be at most 64 characters"
    assert not Run.objects.filter(incident=opened).exists()


def test_a_secret_that_is_gone_is_refused_when_drafted(console, infra, health, incident):
    service = console_service(seed_secret_switch(infra), health.url)
    aws_client(infra, "secretsmanager").delete_secret(
        SecretId=DEMO_SECRET, ForceDeleteWithoutRecovery=True
    )
    opened = incident(service)

    refused = console.draft_refused(opened, service, "options", {})
    assert refused == f"orders-db-url: secret: secret {DEMO_SECRET} not found"
    assert not Run.objects.filter(incident=opened).exists()


def test_the_parameter_goes_back_to_a_chosen_version(console, infra, health, incident, worker):
    demo = seed_parameter_switch(infra)
    service = console_service(demo, health.url)
    ssm = aws_client(infra, "ssm")
    history = ssm.get_parameter_history(Name=DEMO_PARAMETER, WithDecryption=True)["Parameters"]
    values = [entry["Value"] for entry in history]
    worker()

    run = console.draft(incident(service), service, "options", {"version": "2"})
    assert "store the value of version 2 of parameter" in console.dry_run(run)
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=SWITCH_CHECKS, secrets=values)
    current = ssm.get_parameter(Name=DEMO_PARAMETER, WithDecryption=True)["Parameter"]
    assert (current["Version"], current["Value"], current["Type"]) == (4, values[1], "SecureString")
    assert run.steps.get().apply_facts == {
        "from_version": "3",
        "source_version": "2",
        "to_version": "4",
    }


def restart_service(infra, health_url):
    """The demo's orders-worker, verified by its health endpoint and its CloudWatch alarm."""
    demo = seed_ecs_restart(infra)
    service = console_service(demo, health_url)
    service.target_config["checks"] += demo.target_config["checks"]
    service.full_clean()
    service.save()
    return service


def primary_deployment(infra) -> str:
    described = aws_client(infra, "ecs").describe_services(
        cluster=RESTART_CLUSTER, services=[RESTART_SERVICE]
    )["services"][0]
    return described["deployments"][0]["id"]


def test_the_worker_restarts_once_and_its_alarm_verifies_it(
    console, infra, health, incident, worker
):
    service = restart_service(infra, health.url)
    before = primary_deployment(infra)
    worker()

    run = console.draft(incident(service), service, "options", {})
    assert f"restart ECS service {RESTART_CLUSTER}/{RESTART_SERVICE}" in console.dry_run(run)
    run = console.approve_and_run(run)

    entries = assert_recorded(
        run, step_checks=["new deployment", "rollout completed", "running count"]
    )
    after = primary_deployment(infra)
    assert after != before
    assert run.steps.get().apply_facts["deployment"] == after
    verified = [
        entry.payload
        for entry in entries
        if entry.kind == TimelineKind.CHECK_RESULT
        and entry.payload.get("kind") == "cloudwatch_alarm"
    ]
    assert [(p["check"], p["outcome"], p["observed"]) for p in verified] == [
        ("job failures", "passed", "1 OK")
    ]


def test_an_alarm_still_firing_fails_the_verification(console, infra, health, incident, worker):
    service = restart_service(infra, health.url)
    cloudwatch = boto3.client(
        "cloudwatch", endpoint_url=infra.aws_endpoint_url, region_name=infra.aws_region
    )
    cloudwatch.set_alarm_state(
        AlarmName=DEMO_ALARM, StateValue="ALARM", StateReason="12 failed jobs in a minute"
    )
    worker()

    run = console.draft(incident(service), service, "options", {})
    run = console.approve_and_run(run)

    assert run.state == RunState.FAILED
    assert "job failures" in run.failure_reason
    assert "12 failed jobs in a minute" in run.failure_reason
    assert TimelineEntry.objects.filter(
        incident_id=run.incident_id, kind=TimelineKind.CHECK_RESULT, payload__outcome="failed"
    ).exists()


def rollback_command(*args: object) -> str:
    out = StringIO()
    call_command("rollback", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_terminal_offers_and_checks_the_same_versions(commander, infra, health, incident):
    service = console_service(seed_parameter_switch(infra), health.url)
    opened = incident(service)
    Incident.objects.filter(pk=opened.pk).update(severity="P3")  # no approval to wait for
    common = ("checkout-psp-endpoint", "--incident", opened.pk, "--as", "ic")

    shown = rollback_command(*common, "--show-options")
    assert "3: version 3 (current) — " in shown and "1: version 1 — " in shown
    with pytest.raises(CommandError, match="version: 9 is not available"):
        rollback_command(*common, "--yes", "--set", "version=9")
    assert not Run.objects.filter(incident=opened).exists()

    output = rollback_command(*common, "--yes", "--set", "version=1")

    assert "version 4 is current (value of 1); 3 kept for the way back" in output
    assert "backout-demo.example.net" not in shown + output  # the values are endpoints there
    run = Run.objects.get(incident=opened)
    assert run.state == RunState.SUCCEEDED, run.failure_reason
    current = aws_client(infra, "ssm").get_parameter(Name=DEMO_PARAMETER)["Parameter"]
    assert current["Version"] == 4


def test_a_pipeline_drafts_the_restart_through_the_api(
    console, commander, infra, health, incident, worker
):
    service = restart_service(infra, health.url)
    service.releases.filter(version="v1.4.0").update(known_good=True, known_good_at=timezone.now())
    opened = incident(service)
    _, token = token_create(user=commander, name="pipeline", scopes=["runs:write"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    path = f"/api/v1/incidents/{opened.pk}/rollbacks"
    worker()

    answer = api.post(path, {"services": ["orders-worker"]}, content_type="application/json")

    assert answer.status_code == 201, answer.content
    assert answer.json()["steps"][0]["backend"] == "ecs_restart"
    run = console.approve_and_run(Run.objects.get(pk=answer.json()["id"]))
    assert_recorded(run, step_checks=["new deployment", "rollout completed", "running count"])
    aws_client(infra, "ecs").delete_service(
        cluster=RESTART_CLUSTER, service=RESTART_SERVICE, force=True
    )
    gone = api.post(path, {"services": ["orders-worker"]}, content_type="application/json")
    assert gone.status_code == 400, gone.content
    assert "orders-worker: service:" in gone.content.decode()
    assert Run.objects.filter(incident=opened).count() == 1
