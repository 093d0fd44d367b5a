"""Full runs of the backends that restore S3 object versions, against a real moto server:
a Terraform state (S3 backend with a DynamoDB lock table) and a frontend overwritten in
place in a versioned bucket behind CloudFront. Each is seeded by the demo's own seed
function; the commander drafts in the console, previews, the approvers the policy names
approve, the commander types the confirmation, a Celery worker in its own process applies
the step, and its checks and the verification round pass, every stage on the timeline."""

from __future__ import annotations

import json
from html import unescape
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.tokens import token_create
from devinfra.demo_state_versions import (
    BUILDS_BUCKET,
    BUILDS_PREFIX,
    LOCK_TABLE,
    STATE_BUCKET,
    STATE_KEY,
    STATE_LINEAGE,
    seed_s3_versions,
    seed_terraform_state,
)
from executors.aws import aws_client
from incidents.models import Incident, TimelineEntry
from rollbacks.models import Run, RunState, StepState
from tests.rollbacks.engine_fixtures import wait_for
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
LOCK_ID = f"{STATE_BUCKET}/{STATE_KEY}"


def release(service, version):
    return service.releases.get(version=version)


def current_state(infra) -> dict:
    body = aws_client(infra, "s3").get_object(Bucket=STATE_BUCKET, Key=STATE_KEY)["Body"].read()
    return json.loads(body)


def test_terraform_state_goes_back_to_the_release_saved_state(
    console, infra, health, incident, worker
):
    network = seed_terraform_state(infra)
    service = console_service(network, health.url)
    worker()

    run = console.draft(incident(service), service, str(release(service, "network-41").pk), {})
    preview = console.dry_run(run)
    assert f"serial 2 · lineage {STATE_LINEAGE}" in preview
    assert "now run terraform apply" in preview
    run = console.approve_and_run(run)

    assert_recorded(
        run,
        step_checks=["state is the restored version", "state digest matches", "state unlocked"],
    )
    assert current_state(infra)["serial"] == 2
    step = run.steps.get()
    assert "now run terraform apply" in step.apply_detail
    assert (step.apply_facts["before_serial"], step.apply_facts["after_serial"]) == (3, 2)
    assert any("now run terraform apply" in line.line for line in step.log_lines.all())
    versions = aws_client(infra, "s3").list_object_versions(Bucket=STATE_BUCKET, Prefix=STATE_KEY)
    assert len(versions["Versions"]) == 4 and not versions.get("DeleteMarkers")


def test_terraform_state_waits_for_terraforms_lock_then_restores(
    console, infra, health, incident, worker
):
    network = seed_terraform_state(infra)
    service = console_service(network, health.url)
    dynamodb = aws_client(infra, "dynamodb")
    holder = {
        "ID": "9c0ffee0-1111-4a2b-8c3d-4e5f60718293",
        "Operation": "OperationTypeApply",
        "Who": "sam@ci-runner-3",
        "Created": "2026-12-04T09:00:00Z",
        "Info": "",
    }
    dynamodb.put_item(
        TableName=LOCK_TABLE, Item={"LockID": {"S": LOCK_ID}, "Info": {"S": json.dumps(holder)}}
    )
    worker()
    versions = aws_client(infra, "s3").list_object_versions(Bucket=STATE_BUCKET, Prefix=STATE_KEY)
    first = next(
        v["VersionId"]
        for v in versions["Versions"]
        if v["VersionId"]
        and not v["IsLatest"]
        and json.loads(
            aws_client(infra, "s3")
            .get_object(Bucket=STATE_BUCKET, Key=STATE_KEY, VersionId=v["VersionId"])["Body"]
            .read()
        )["serial"]
        == 1
    )

    run = console.draft(incident(service), service, "options", {"version_id": first})
    console.request_approval(run)
    console.approve(run)
    console.start(run)

    def refused_once() -> bool:
        step = run.steps.get()
        return step.attempts >= 2 or step.state == StepState.FAILED

    wait_for(refused_once, 60, "a refusal while terraform holds the lock")
    dynamodb.delete_item(TableName=LOCK_TABLE, Key={"LockID": {"S": LOCK_ID}})
    run = console.finish(run)

    step = run.steps.get()
    assert run.state == RunState.SUCCEEDED, (run.failure_reason, step.error)
    assert step.attempts >= 2 and current_state(infra)["serial"] == 1
    logged = "\n".join(line.line for line in step.log_lines.all())
    timeline = json.dumps(
        [e.body for e in TimelineEntry.objects.filter(incident_id=run.incident_id)],
        ensure_ascii=False,
    )
    assert "sam@ci-runner-3" in logged + timeline


def options_page(console, incident, service) -> str:
    url = reverse("plan_options", args=[incident.pk, service.pk])
    response = console.commander.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return unescape(response.content.decode())


def test_terraform_state_refuses_an_unknown_version_at_draft(console, infra, health, incident):
    network = seed_terraform_state(infra)
    service = console_service(network, health.url)
    opened = incident(service)
    page = options_page(console, opened, service)
    assert f"serial 3 · lineage {STATE_LINEAGE} (current)" in page
    assert f"serial 1 · lineage {STATE_LINEAGE}" in page and "network-41" in page

    refused = console.draft_refused(opened, service, "options", {"version_id": "no-such-version"})

    assert refused.startswith("network-state: version_id: no-such-version is not available")
    assert not Run.objects.filter(incident=opened).exists()


def test_s3_versions_restore_the_build_a_release_saved(console, infra, health, incident, worker):
    shop = seed_s3_versions(infra)
    service = console_service(shop, health.url)
    worker()

    good = release(service, "v7.0.0")
    run = console.draft(incident(service), service, str(good.pk), {})
    preview = console.dry_run(run)
    assert "shop/reviews.js" in preview and "delete marker (every version kept)" in preview
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["objects at the restore point", "invalidation completed"])
    s3 = aws_client(infra, "s3")
    script = s3.get_object(Bucket=BUILDS_BUCKET, Key=f"{BUILDS_PREFIX}app.js")["Body"].read()
    assert script == b"console.log('shop v7.0.0');"
    hidden = s3.list_object_versions(Bucket=BUILDS_BUCKET, Prefix=f"{BUILDS_PREFIX}reviews.js")
    assert hidden["DeleteMarkers"][0]["IsLatest"] and len(hidden["Versions"]) == 1
    assert run.steps.get().to_version == "v7.0.0"
    cloudfront = aws_client(infra, "cloudfront")
    listing = cloudfront.list_invalidations(DistributionId=shop.target_config["distribution_id"])
    assert listing["InvalidationList"]["Quantity"] == 1


def test_s3_versions_restore_to_a_time_between_the_builds(console, infra, health, incident, worker):
    shop = seed_s3_versions(infra)
    service = console_service(shop, health.url)
    worker()
    listing = aws_client(infra, "s3").list_object_versions(Bucket=BUILDS_BUCKET)
    first_build = min(v["LastModified"] for v in listing["Versions"])
    between = first_build.strftime("%Y-%m-%dT%H:%M:%SZ")
    opened = incident(service)
    page = options_page(console, opened, service)
    assert "versions kept since" in page and "3 object versions" in page

    refused = console.draft_refused(
        opened, service, "options", {"restore_time": "2001-01-01T00:00:00Z"}
    )
    assert refused.startswith("shop-web: restore_time: 2001-01-01T00:00:00Z is outside")
    run = console.draft(opened, service, "options", {"restore_time": between})
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["objects at the restore point"])
    step = run.steps.get()
    assert step.reached_version == release(service, "v7.0.0").version


def rollback_command(*args: object) -> str:
    out = StringIO()
    call_command("rollback", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_terminal_lists_checks_and_restores_the_state_versions(
    commander, infra, health, incident
):
    service = console_service(seed_terraform_state(infra), health.url)
    opened = incident(service)
    Incident.objects.filter(pk=opened.pk).update(severity="P3")  # no approval to wait for
    common = ("network-state", "--incident", opened.pk, "--as", "ic")
    listing = aws_client(infra, "s3").list_object_versions(Bucket=STATE_BUCKET, Prefix=STATE_KEY)
    oldest = listing["Versions"][-1]["VersionId"]

    shown = rollback_command(*common, "--show-options")
    assert f"serial 3 · lineage {STATE_LINEAGE} (current)" in shown
    assert f"{oldest}: serial 1 · lineage {STATE_LINEAGE}" in shown
    with pytest.raises(CommandError, match="version_id: v-nope is not available"):
        rollback_command(*common, "--yes", "--set", "version_id=v-nope")
    assert not Run.objects.filter(incident=opened).exists()

    output = rollback_command(*common, "--yes", "--set", f"version_id={oldest}")

    assert "now run terraform apply" in output
    assert Run.objects.get(incident=opened).state == RunState.SUCCEEDED
    assert current_state(infra)["serial"] == 1


def test_a_pipeline_drafts_the_restore_of_the_known_good_build_through_the_api(
    console, commander, infra, health, incident, worker
):
    service = console_service(seed_s3_versions(infra), health.url)
    service.releases.filter(version="v7.0.0").update(known_good=True, known_good_at=timezone.now())
    opened = incident(service)
    _, token = token_create(user=commander, name="pipeline", scopes=["runs:write"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    path = f"/api/v1/incidents/{opened.pk}/rollbacks"
    worker()

    previous = api.post(
        path, {"services": ["shop-web"], "to": "previous"}, content_type="application/json"
    )
    assert previous.status_code == 400, previous.content
    assert "shop-web: restore_time:" in previous.content.decode()
    answer = api.post(path, {"services": ["shop-web"]}, content_type="application/json")

    assert answer.status_code == 201, answer.content
    assert answer.json()["steps"][0]["to_version"] == "v7.0.0"
    run = console.approve_and_run(Run.objects.get(pk=answer.json()["id"]))
    assert_recorded(run, step_checks=["objects at the restore point", "invalidation completed"])
    assert Run.objects.filter(incident=opened).count() == 1
