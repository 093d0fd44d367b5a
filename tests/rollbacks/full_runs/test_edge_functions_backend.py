"""Full runs of the Lambda@Edge backend against the moto server, seeded by the demo's own
seed (a function with three published versions, the distribution's default cache behaviour
on the last, bad one): the commander drafts in the console, previews, the on-call approver
approves, the commander types the confirmation, a Celery worker in its own process points
the behaviour back and waits for the distribution to deploy, and the step's checks and the
verification round decide, every stage on the timeline."""

from __future__ import annotations

import pytest

from devinfra.demo_edge import EDGE_FUNCTION, seed_edge_functions
from executors.aws import aws_client
from rollbacks.models import Run
from tests.rollbacks.full_runs.conftest import console_service
from tests.rollbacks.full_runs.console import assert_recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("policies"),
]
EDGE_CHECKS = ["function version associated", "distribution deployed", "function version active"]


def associated(infra, distribution_id: str) -> str:
    """The Lambda@Edge version the default cache behaviour runs on viewer requests."""
    config = aws_client(infra, "cloudfront").get_distribution_config(Id=distribution_id)
    items = config["DistributionConfig"]["DefaultCacheBehavior"]["LambdaFunctionAssociations"]
    return str(
        next(i["LambdaFunctionARN"] for i in items["Items"] if i["EventType"] == "viewer-request")
    )


def test_the_behaviour_goes_back_to_the_previous_version(console, infra, health, incident, worker):
    demo = seed_edge_functions(infra)
    service = console_service(demo, health.url)
    distribution_id = demo.target_config["distribution_id"]
    worker()

    run = console.draft(incident(service), service, "previous", {})
    preview = console.dry_run(run)
    assert f"{EDGE_FUNCTION}:3 → {EDGE_FUNCTION}:2" in preview
    assert associated(infra, distribution_id) == demo.live_version
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=EDGE_CHECKS)
    good = service.releases.get(version="auth-1.3.0")
    assert associated(infra, distribution_id) == good.artifact
    step = run.steps.get()
    assert step.reached_version == "auth-1.3.0"
    assert step.apply_facts["from_function_version"] == demo.live_version
    assert any(
        f"distribution {distribution_id}: Deployed" in line.line for line in step.log_lines.all()
    )


def test_the_behaviour_goes_back_to_a_chosen_release(console, infra, health, incident, worker):
    demo = seed_edge_functions(infra)
    service = console_service(demo, health.url)
    oldest = service.releases.get(version="auth-1.2.0")
    worker()

    run = console.draft(incident(service), service, str(oldest.pk), {})
    assert f"{EDGE_FUNCTION}:3 → {EDGE_FUNCTION}:1" in console.dry_run(run)
    run = console.approve_and_run(run)

    assert_recorded(run, step_checks=EDGE_CHECKS)
    assert associated(infra, demo.target_config["distribution_id"]) == oldest.artifact


def test_a_version_lambda_edge_cannot_run_is_refused_when_drafted(console, infra, health, incident):
    service = console_service(seed_edge_functions(infra), health.url)
    opened = incident(service)

    def refused(version: str) -> str:
        return console.draft_refused(opened, service, "options", {"function_version": version})

    assert refused("9") == (
        f"{service.name}: function_version: {EDGE_FUNCTION} has no published version 9 "
        "(published: 1, 2, 3)"
    )
    assert "needs a published version" in refused("$LATEST")
    assert "unqualified ARN" in refused(
        f"arn:aws:lambda:us-east-1:123456789012:function:{EDGE_FUNCTION}"
    )
    assert "must be a published version number" in refused("第二版 🚀")
    assert "must be at most 256 characters" in refused("1" * 300)
    assert not Run.objects.filter(incident=opened).exists()


def test_a_distribution_that_is_gone_is_refused_when_drafted(console, infra, health, incident):
    demo = seed_edge_functions(infra)
    service = console_service(demo, health.url)
    distribution_id = demo.target_config["distribution_id"]
    aws_client(infra, "cloudfront").delete_distribution(Id=distribution_id, IfMatch="any")
    opened = incident(service)

    refused = console.draft_refused(opened, service, "options", {})

    assert refused == (
        f"{service.name}: distribution_id: CloudFront distribution {distribution_id!r} not found"
    )
    assert not Run.objects.filter(incident=opened).exists()
