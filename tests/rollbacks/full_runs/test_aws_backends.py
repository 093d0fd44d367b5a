"""Full runs of the AWS backends against a real moto server: the commander drafts in the
console with step options, previews, asks for approval, the approvers the policy names
approve, the commander types the confirmation, a Celery worker in its own process applies
the step, and the run is verified by its checks, every stage on the timeline."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from devinfra.demo_services import seed_database, seed_dns, seed_ecs, seed_static_frontend
from executors.aws import aws_client
from incidents.models import Incident, TimelineEntry
from rollbacks.models import ApprovalRequestStatus, Run
from tests.rollbacks.full_runs.conftest import assert_secret_switched, console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]


def release(service, version):
    return service.releases.get(version=version)


def test_dns_restores_the_saved_record_set(console, infra, health, incident, worker):
    dns = seed_dns(infra)
    service = console_service(dns, health.url)
    worker()

    run = console.draft(incident(service), service, str(release(service, "blue").pk), {})
    preview = console.dry_run(run)
    assert "status-green.backout-demo.example.net" in preview
    assert "status-blue.backout-demo.example.net" in preview
    request = console.request_approval(run)
    assert request is not None and request.required_roles == ["On-call"]
    console.approve(run)
    console.start(run)
    run = console.finish(run)

    assert_recorded(run, step_checks=[])
    route53 = aws_client(infra, "route53")
    records = route53.list_resource_record_sets(
        HostedZoneId=dns.target_config["hosted_zone_id"],
        StartRecordName=dns.target_config["record_name"],
        StartRecordType="CNAME",
        MaxItems="1",
    )["ResourceRecordSets"]
    assert records[0]["ResourceRecords"] == [{"Value": "status-blue.backout-demo.example.net"}]


def test_ecs_goes_back_to_the_good_task_definition(console, infra, health, incident, worker):
    ecs = seed_ecs(infra)
    service = console_service(ecs, health.url)
    worker()

    good = release(service, "v2.3.1")
    run = console.draft(incident(service), service, str(good.pk), {})
    assert "checkout:1" in console.dry_run(run)
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["task definition matches target", "running count"])
    described = aws_client(infra, "ecs").describe_services(
        cluster="storefront", services=["checkout"]
    )["services"][0]
    assert described["taskDefinition"] == good.artifact


def test_static_frontend_restores_the_chosen_build(console, infra, health, incident, worker):
    site = seed_static_frontend(infra)
    service = console_service(site, health.url)
    worker()

    run = console.draft(incident(service), service, "options", {"release": "v5.1.0"})
    preview = console.dry_run(run)
    assert "assets/chat.js" in preview
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=["live objects match release"])
    s3 = aws_client(infra, "s3")
    live = site.target_config["live_bucket"]
    script = s3.get_object(Bucket=live, Key="assets/app.js")["Body"].read().decode()
    assert script == "console.log('storefront v5.1.0');"
    cloudfront = aws_client(infra, "cloudfront")
    invalidations = cloudfront.list_invalidations(
        DistributionId=site.target_config["distribution_id"]
    )["InvalidationList"]
    assert invalidations["Quantity"] == 1


def test_rds_restores_a_snapshot_with_the_dba_approving(console, infra, health, incident, worker):
    database = seed_database(infra)
    service = console_service(database, health.url)
    worker()

    options = {"method": "snapshot", "snapshot": "orders-db-schema-41"}
    run = console.draft(incident(service), service, "options", options)
    preview = console.dry_run(run)
    assert "orders-db-schema-41" in preview
    request = console.request_approval(run)
    assert request is not None and request.status == ApprovalRequestStatus.PENDING
    assert sorted(request.required_roles) == ["DBA", "On-call"]
    console.approve(run)
    console.start(run)
    run = console.finish(run, timeout=90)

    assert_recorded(
        run,
        step_checks=["instance available", "connection points at new instance"],
        secrets=["demo-only-password"],
    )
    assert_secret_switched(infra)


ACKNOWLEDGEMENT = "データ損失を承認 🙏 אישור אובדן <b>orders</b> " + "x" * 900


def test_rds_point_in_time_past_the_rpo_needs_a_written_acknowledgement(
    console, infra, health, incident, worker
):
    database = seed_database(infra)
    service = console_service(database, health.url)
    opened = incident(service)
    Incident.objects.filter(pk=opened.pk).update(rpo=timedelta(0))  # any loss is too much
    worker()
    time.sleep(1.5)  # a restorable window at least a second wide, to the second
    instance = aws_client(infra, "rds").describe_db_instances(DBInstanceIdentifier="orders-db")
    latest = instance["DBInstances"][0]["LatestRestorableTime"].replace(microsecond=0)
    options = {"method": "point_in_time", "restore_time": latest.strftime("%Y-%m-%dT%H:%M:%SZ")}

    refused = console.draft_refused(opened, service, "options", options)
    assert refused.startswith("orders-db: acknowledge_loss: writes after"), refused
    assert "write an acknowledgement of the loss to go on" in refused
    too_early = {**options, "restore_time": "2020-01-01T00:00:00Z"}
    assert "restore_time" in console.draft_refused(opened, service, "options", too_early)
    assert not Run.objects.filter(incident=opened).exists()

    run = console.draft(
        opened, service, "options", {**options, "acknowledge_loss": ACKNOWLEDGEMENT}
    )
    drafted = TimelineEntry.objects.filter(incident=opened, body__contains="drafted").get()
    assert f"data loss acknowledged: “{ACKNOWLEDGEMENT}”" in drafted.body
    run = console.approve_and_run(run, timeout=90)

    assert_recorded(
        run,
        step_checks=["instance available", "connection points at new instance"],
        secrets=["demo-only-password"],
    )
    restored = run.steps.get().apply_facts
    assert "orders-db-restore" in json.dumps(restored)
